"""Mask R-CNN + FPN with a RAVLT-B backbone on COCO, 3x schedule (36 epochs) with multi-scale crops.

Recipe: the official RALA config ``maskrcnn_m_3x`` (github.com/qhfan/RALA, ``detection/``; its
``m`` is RAVLT-B); it differs from ``maskrcnn_ravlt_s_coco_3x.py``, which documents the full
recipe, in the backbone: RAVLT-B, drop path 0.4.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed); ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/ravlt_b_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_B.pth checkpoints/ravlt_b_in1k.pth``. Data: ``data/coco/``.

Paper (official README, COCO val2017): 67M params, 372G FLOPs; box AP 52.7 (AP50 73.5, AP75 57.7),
mask AP 46.4 (AP50 70.6, AP75 50.2).
"""
_base_ = ['./maskrcnn_ravlt_s_coco_3x.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='b', drop_path_rate=0.4, init_cfg=dict(checkpoint='checkpoints/ravlt_b_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 512]))
