"""RetinaNet + FPN with a RAVLT-S backbone on COCO, 1x schedule (12 epochs, single scale).

Recipe: the official RALA config ``retinanet_s_1x`` (github.com/qhfan/RALA, ``detection/``, mmdet
2.11), ported to mmdet 3.x: FPN on strides 8-32 plus two extra convs on the stride-32 input
(mmdet's RetinaNet base), AdamW (lr 1e-4, betas 0.9/0.999, weight decay 1e-4 on every parameter),
drop path 0.15, SyncBN in the backbone, training at (1333, 800) with flip 0.5, learning rate x0.1
after epochs 8 and 11, 500-iteration linear warm-up from 0.001. The official runs used fp16 with a
static loss scale of 512: add ``--amp`` (dynamic scale) to come close.

The backbone still returns the stride-4 map, which the FPN ignores (``start_level=1``), so its
output norm gets no gradient: ``find_unused_parameters=True`` for DDP, as in the official config.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed). ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/ravlt_s_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_S.pth checkpoints/ravlt_s_in1k.pth``. Data: ``data/coco/``.

Paper (official README, COCO val2017): 34M params, 244G FLOPs; box AP 48.3 (AP50 69.8, AP75
52.1, APs 32.7, APm 52.8, APl 63.6).
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
        type='RAVLT',
        arch='s',
        drop_path_rate=0.15,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/ravlt_s_in1k.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4))
find_unused_parameters = True
