"""COCO instance data with DETR-style multi-scale training and the 3x schedule (36 epochs).

Shared by the ``*_coco_3x.py`` configs; mmdet 3.x ships this pipeline only inside backbone-specific
configs (Swin, ConvNeXt), so it lives here. Training picks one of two policies per image:

1. resize (keep ratio) to a short side of 480, 512, ..., 800 (step 32), long side at most 1333;
2. resize to a short side of 400, 500 or 600, crop an absolute (384-600) x (384-600) patch, then
   resize as in policy 1.

Test: single scale (1333, 800), from ``coco_instance.py``. Schedule: linear warm-up over 500
iterations from 0.001, learning rate x0.1 after epochs 27 and 33.
"""
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
]

short_sides = [(side, 1333) for side in range(480, 801, 32)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=short_sides, keep_ratio=True)],
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[(400, 1333), (500, 1333), (600, 1333)],
                    keep_ratio=True),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=short_sides, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
