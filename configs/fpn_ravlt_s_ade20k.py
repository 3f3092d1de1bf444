"""Semantic FPN with a RAVLT-S backbone on ADE20K, 80k iterations, 512 x 512 crops.

Recipe: the official RALA config ``RALA_FPN_s_1x`` ("1x" = 80k iterations; github.com/qhfan/RALA,
``segmentation/``, mmseg 0.13), ported to mmseg 1.x: FPN (out 256, 4 levels) and FPNHead (channels
128, dropout 0.1, SyncBN), SyncBN in the backbone, AdamW (lr 1e-4, betas 0.9/0.999, weight decay
1e-4 on every parameter), drop path 0.15, poly decay (power 0.9, to 1e-6) over 80k iterations
without warm-up, mmseg's ADE20K pipeline (resize to 2048 x 512 with ratio 0.5-2.0, crop 512 with
cat_max_ratio 0.75, flip, photometric distortion), single-scale whole-image test at 2048 x 512.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed).

Pretrained backbone: ``checkpoints/ravlt_s_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_S.pth checkpoints/ravlt_s_in1k.pth``. Data:
``data/ade/ADEChallengeData2016``.

Paper (official README, ADE20K val, single scale presumably): 28M params, 180G FLOPs, mIoU 49.5.
"""
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='RAVLT',
        arch='s',
        drop_path_rate=0.15,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/ravlt_s_in1k.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]),
    decode_head=dict(num_classes=150))

train_dataloader = dict(batch_size=2)

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=1e-6, by_epoch=False, begin=0, end=80000),
]
