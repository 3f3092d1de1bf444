"""Semantic FPN with a RAVLT-T backbone on ADE20K, 80k iterations, 512 x 512 crops.

Recipe: the official README reports T, but the repository has no T config; this is the recipe of
the official S/B/L configs ``RALA_FPN_{s,b,l}_1x`` (documented in ``fpn_ravlt_s_ade20k.py``) with
RAVLT-T, drop path 0.1.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed).

Pretrained backbone: ``checkpoints/ravlt_t_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_T.pth checkpoints/ravlt_t_in1k.pth``. Data:
``data/ade/ADEChallengeData2016``.

Paper (official README, ADE20K val, single scale presumably): 18M params, 136G FLOPs, mIoU 47.9.
"""
_base_ = ['./fpn_ravlt_s_ade20k.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='t', drop_path_rate=0.1, init_cfg=dict(checkpoint='checkpoints/ravlt_t_in1k.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
