"""RetinaNet + FPN with a SOFT++ Small backbone (SOFT-Small-Norm) on COCO, 1x schedule (12 epochs).

No official recipe exists: SOFT (github.com/fudan-zvg/SOFT) publishes ImageNet code only; its
detection settings are unpublished. This config uses the PVT-style recipe (PVT v1's
``retinanet_pvt_s_fpn_1x_coco``, github.com/whai362/PVT): FPN on strides 8-32 plus two extra convs
on the stride-32 input (mmdet's RetinaNet base), AdamW (lr 1e-4, weight decay 1e-4 on every
parameter), drop path 0.1, training at (1333, 800) with flip 0.5, mmdet's 1x schedule (x0.1 after
epochs 8 and 11, 500-iteration linear warm-up from 0.001). SyncBN in the backbone. SOFT++ backbone
with ``max_landmarks=256`` and ``pinv_mode='shifted_inverse'``: see ``maskrcnn_soft_s_coco.py``.

Batch: 2 images per GPU x 8 GPUs = 16 (assumed, as PVT). ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/soft_norm_s_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py SOFT_Small_norm.pth checkpoints/soft_norm_s_in1k.pth``. Data:
``data/coco/``.

Paper (SOFT README, COCO val2017, recipe unpublished): 34M params; box AP 42.8.
"""
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='SOFT',
        arch='s',
        normalization='core',
        max_landmarks=256,
        pinv_mode='shifted_inverse',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/soft_norm_s_in1k.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4))
