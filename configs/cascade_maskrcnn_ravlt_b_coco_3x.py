"""Cascade Mask R-CNN + FPN with a RAVLT-B backbone on COCO, 3x schedule with multi-scale crops.

Recipe: the official RALA config ``casrcnn_m_3x`` (github.com/qhfan/RALA, ``detection/``; its ``m``
is RAVLT-B); it differs from ``cascade_maskrcnn_ravlt_s_coco_3x.py``, which documents the full
recipe, only in the backbone: RAVLT-B, drop path 0.4.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed); ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/ravlt_b_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_B.pth checkpoints/ravlt_b_in1k.pth``. Data: ``data/coco/``.

Paper (official README, COCO val2017): 105M params, 851G FLOPs; box AP 55.3 (AP50 73.8, AP75 60.1),
mask AP 47.7 (AP50 71.4, AP75 52.1).
"""
_base_ = ['./cascade_maskrcnn_ravlt_s_coco_3x.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='b', drop_path_rate=0.4, init_cfg=dict(checkpoint='checkpoints/ravlt_b_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 512]))
