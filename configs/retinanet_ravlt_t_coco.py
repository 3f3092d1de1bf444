"""RetinaNet + FPN with a RAVLT-T backbone on COCO, 1x schedule (12 epochs, single scale).

Recipe: the official RALA config ``retinanet_t_1x`` (github.com/qhfan/RALA, ``detection/``); it
differs from ``retinanet_ravlt_s_coco.py``, which documents the full recipe, only in the backbone:
RAVLT-T, drop path 0.1.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed); ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/ravlt_t_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_T.pth checkpoints/ravlt_t_in1k.pth``. Data: ``data/coco/``.

Paper (official README, COCO val2017): 24M params, 201G FLOPs; box AP 45.9 (AP50 67.4, AP75 49.4,
APs 28.5, APm 50.1, APl 60.8).
"""
_base_ = ['./retinanet_ravlt_s_coco.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='t', drop_path_rate=0.1, init_cfg=dict(checkpoint='checkpoints/ravlt_t_in1k.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
