"""Semantic FPN with a SOFT++ Small backbone (SOFT-Small-Norm) on ADE20K, 80k iterations, 512 crops.

No official recipe exists: SOFT (github.com/fudan-zvg/SOFT) publishes ImageNet code only and
reports no Semantic FPN results. This config uses the PVT-style recipe (PVT v1's
``fpn_pvt_s_ade20k_40k``, github.com/whai362/PVT, which trains 40k iterations at batch 32 and lr
2e-4, i.e. 80k at batch 16 and lr 1e-4): FPN (out 256, 4 levels) and FPNHead (channels 128,
dropout 0.1, SyncBN), SyncBN in the backbone, AdamW (lr 1e-4, weight decay 1e-4 on every
parameter), drop path 0.1, poly decay (power 0.9, to 0) over 80k iterations without warm-up,
mmseg's ADE20K pipeline (resize to 2048 x 512 with ratio 0.5-2.0, crop 512 with cat_max_ratio
0.75, flip, photometric distortion), single-scale whole-image test at 2048 x 512. SOFT++ backbone
with ``max_landmarks=256`` and ``pinv_mode='shifted_inverse'``: see ``upernet_soft_s_ade20k.py``.

Batch: 2 images per GPU x 8 GPUs = 16 (assumed).

Pretrained backbone: ``checkpoints/soft_norm_s_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py SOFT_Small_norm.pth checkpoints/soft_norm_s_in1k.pth``. Data:
``data/ade/ADEChallengeData2016``.

Paper: no Semantic FPN result published.
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
        type='SOFT',
        arch='s',
        normalization='core',
        max_landmarks=256,
        pinv_mode='shifted_inverse',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/soft_norm_s_in1k.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]),
    decode_head=dict(num_classes=150))

train_dataloader = dict(batch_size=2)

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=0, end=80000),
]
