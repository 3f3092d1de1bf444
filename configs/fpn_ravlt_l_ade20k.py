"""Semantic FPN with a RAVLT-L backbone on ADE20K, 80k iterations, 512 x 512 crops.

Recipe: the official RALA config ``RALA_FPN_l_1x`` (github.com/qhfan/RALA, ``segmentation/``); it
differs from ``fpn_ravlt_s_ade20k.py``, which documents the full recipe, only in the backbone:
RAVLT-L, drop path 0.55.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed).

Pretrained backbone: ``checkpoints/ravlt_l_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_L.pth checkpoints/ravlt_l_in1k.pth``. Data:
``data/ade/ADEChallengeData2016``.

Paper (official README, ADE20K val, single scale presumably): 98M params, 424G FLOPs, mIoU 52.6.
"""
_base_ = ['./fpn_ravlt_s_ade20k.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='l', drop_path_rate=0.55, init_cfg=dict(checkpoint='checkpoints/ravlt_l_in1k.pth')),
    neck=dict(in_channels=[96, 192, 448, 640]))
