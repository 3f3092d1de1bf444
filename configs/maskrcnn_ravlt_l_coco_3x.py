"""Mask R-CNN + FPN with a RAVLT-L backbone on COCO, 3x schedule (36 epochs) with multi-scale crops.

Recipe: the official RALA config ``maskrcnn_l_3x`` (github.com/qhfan/RALA, ``detection/``); it
differs from ``maskrcnn_ravlt_s_coco_3x.py``, which documents the full recipe, in the backbone:
RAVLT-L, drop path 0.55; and in the batch (below).

Batch: 1 image per GPU x 8 GPUs = 8, as the official config is written (S and B use 2 per GPU; the
GPU count is assumed). The learning rate stays 1e-4, so ``--auto-scale-lr`` rescales from
``base_batch_size=8``.

Pretrained backbone: ``checkpoints/ravlt_l_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_L.pth checkpoints/ravlt_l_in1k.pth``. Data: ``data/coco/``.

Paper (official README, COCO val2017): 114M params, 501G FLOPs; box AP 53.6 (AP50 74.4, AP75 58.9),
mask AP 47.3 (AP50 71.6, AP75 51.2).
"""
_base_ = ['./maskrcnn_ravlt_s_coco_3x.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='l', drop_path_rate=0.55, init_cfg=dict(checkpoint='checkpoints/ravlt_l_in1k.pth')),
    neck=dict(in_channels=[96, 192, 448, 640]))

train_dataloader = dict(batch_size=1)
auto_scale_lr = dict(base_batch_size=8)
