"""RetinaNet + FPN with a RAVLT-L backbone on COCO, 1x schedule (12 epochs, single scale).

Recipe: the official RALA config ``retinanet_l_1x`` (github.com/qhfan/RALA, ``detection/``); it
differs from ``retinanet_ravlt_s_coco.py``, which documents the full recipe, only in the backbone:
RAVLT-L, drop path 0.55.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed); ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/ravlt_l_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_L.pth checkpoints/ravlt_l_in1k.pth``. Data: ``data/coco/``.

Paper (official README, COCO val2017): 104M params, 482G FLOPs; box AP 50.9 (AP50 72.2, AP75 55.0,
APs 34.7, APm 55.7, APl 65.4).
"""
_base_ = ['./retinanet_ravlt_s_coco.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='l', drop_path_rate=0.55, init_cfg=dict(checkpoint='checkpoints/ravlt_l_in1k.pth')),
    neck=dict(in_channels=[96, 192, 448, 640]))
