"""UperNet with a RAVLT-T backbone on ADE20K, 160k iterations, 512 x 512 crops.

Recipe: not official: the official repository has neither a T UperNet config nor a T UperNet
result. It is the recipe of the official S/B/L configs (documented in
``upernet_ravlt_s_ade20k.py``) with RAVLT-T, drop path 0.1.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed).

Pretrained backbone: ``checkpoints/ravlt_t_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_T.pth checkpoints/ravlt_t_in1k.pth``. Data:
``data/ade/ADEChallengeData2016``.

Paper: no T UperNet result published.
"""
_base_ = ['./upernet_ravlt_s_ade20k.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='t', drop_path_rate=0.1, init_cfg=dict(checkpoint='checkpoints/ravlt_t_in1k.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
