"""Mask R-CNN + FPN with a RAVLT-B backbone on COCO, 1x schedule (12 epochs, single scale).

Recipe: the official RALA config ``maskrcnn_m_1x`` (github.com/qhfan/RALA, ``detection/``; its
``m`` is RAVLT-B); it differs from ``maskrcnn_ravlt_s_coco.py``, which documents the full recipe,
only in the backbone: RAVLT-B, drop path 0.4.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed); ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/ravlt_b_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_B.pth checkpoints/ravlt_b_in1k.pth``. Data: ``data/coco/``.

Paper (official README, COCO val2017): 67M params, 372G FLOPs; box AP 51.2 (AP50 72.7, AP75 56.4),
mask AP 45.7 (AP50 69.9, AP75 49.5).
"""
_base_ = ['./maskrcnn_ravlt_s_coco.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='b', drop_path_rate=0.4, init_cfg=dict(checkpoint='checkpoints/ravlt_b_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 512]))
