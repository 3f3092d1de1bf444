"""Mask R-CNN + FPN with a RAVLT-T backbone on COCO, 1x schedule (12 epochs, single scale).

Recipe: the official RALA config ``maskrcnn_t_1x`` (github.com/qhfan/RALA, ``detection/``); it
differs from ``maskrcnn_ravlt_s_coco.py``, which documents the full recipe, only in the backbone:
RAVLT-T, drop path 0.1.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed); ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/ravlt_t_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_T.pth checkpoints/ravlt_t_in1k.pth``. Data: ``data/coco/``.

Paper (official README, COCO val2017): 33M params, 219G FLOPs; box AP 47.3 (AP50 69.1, AP75 51.9),
mask AP 42.7 (AP50 66.2, AP75 46.0).
"""
_base_ = ['./maskrcnn_ravlt_s_coco.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='t', drop_path_rate=0.1, init_cfg=dict(checkpoint='checkpoints/ravlt_t_in1k.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
