"""Cascade Mask R-CNN + FPN with a RAVLT-L backbone on COCO, 3x schedule with multi-scale crops.

Recipe: the official RALA config ``casrcnn_l_3x`` (github.com/qhfan/RALA, ``detection/``); it
differs from ``cascade_maskrcnn_ravlt_s_coco_3x.py``, which documents the full recipe, only in the
backbone: RAVLT-L, drop path 0.55.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed); ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/ravlt_l_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_L.pth checkpoints/ravlt_l_in1k.pth``. Data: ``data/coco/``.

Paper (official README, COCO val2017): 152M params, 979G FLOPs; box AP 55.6 (AP50 74.1, AP75 60.5),
mask AP 48.0 (AP50 71.8, AP75 52.3).
"""
_base_ = ['./cascade_maskrcnn_ravlt_s_coco_3x.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='l', drop_path_rate=0.55, init_cfg=dict(checkpoint='checkpoints/ravlt_l_in1k.pth')),
    neck=dict(in_channels=[96, 192, 448, 640]))
