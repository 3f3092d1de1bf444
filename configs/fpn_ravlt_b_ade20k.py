"""Semantic FPN with a RAVLT-B backbone on ADE20K, 80k iterations, 512 x 512 crops.

Recipe: the official RALA config ``RALA_FPN_b_1x`` (github.com/qhfan/RALA, ``segmentation/``); it
differs from ``fpn_ravlt_s_ade20k.py``, which documents the full recipe, only in the backbone:
RAVLT-B, drop path 0.4.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed).

Pretrained backbone: ``checkpoints/ravlt_b_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_B.pth checkpoints/ravlt_b_in1k.pth``. Data:
``data/ade/ADEChallengeData2016``.

Paper (official README, ADE20K val, single scale presumably): 51M params, 292G FLOPs, mIoU 51.9.
"""
_base_ = ['./fpn_ravlt_s_ade20k.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='b', drop_path_rate=0.4, init_cfg=dict(checkpoint='checkpoints/ravlt_b_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 512]))
