"""UperNet with a SOFT++ Small backbone (SOFT-Small-Norm) on ADE20K, 160k iterations, 512 crops.

No official recipe exists: SOFT (github.com/fudan-zvg/SOFT) publishes ImageNet code only; its
README calls the UperNet schedule "1x" without details. This config uses the common Swin / PVT v2
UperNet recipe: UPerHead (channels 512) plus an FCN auxiliary head on stage 3 (loss weight 0.4),
SyncBN in backbone and heads, AdamW (lr 6e-5, weight decay 0.01, none on norm layers, position
tables and the cls token), drop path 0.1, poly decay (power 1.0, to 0) over 160k iterations with a
1500-iteration linear warm-up from 1e-6, mmseg's ADE20K pipeline (resize to 2048 x 512 with ratio
0.5-2.0, crop 512 with cat_max_ratio 0.75, flip, photometric distortion), single-scale
whole-image test at 2048 x 512, evaluation every 8k iterations keeping the best mIoU.

Backbone: SOFT++ with ``max_landmarks=256`` and ``pinv_mode='shifted_inverse'`` (see
``maskrcnn_soft_s_coco.py``). A 512 x 512 crop gives exactly 256 landmarks per stage, so training
crops use the official landmark grid; only larger test images are bounded.

Batch: 2 images per GPU x 8 GPUs = 16 (assumed).

Pretrained backbone: ``checkpoints/soft_norm_s_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py SOFT_Small_norm.pth checkpoints/soft_norm_s_in1k.pth``. Data:
``data/ade/ADEChallengeData2016``.

Paper (SOFT README, ADE20K val, recipe unpublished): 54M params, mIoU 46.2.
"""
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
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
    decode_head=dict(in_channels=[64, 128, 320, 512], num_classes=150),
    auxiliary_head=dict(in_channels=320, num_classes=150))

train_dataloader = dict(batch_size=2)

# No decay on any norm layer, position table or cls token; see maskrcnn_soft_s_coco_3x.py.
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.0),
            'cls_token': dict(decay_mult=0.0),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=160000),
]
train_cfg = dict(val_interval=8000)
default_hooks = dict(checkpoint=dict(save_best='mIoU'))
