"""UperNet with a RAVLT-S backbone on ADE20K, 160k iterations, 512 x 512 crops.

Recipe: the official RALA config ``RALA_Uper_s_2x`` (github.com/qhfan/RALA, ``segmentation/``,
mmseg 0.13), ported to mmseg 1.x: UPerHead (channels 512) plus an FCN auxiliary head on stage 3
(loss weight 0.4), SyncBN in backbone and heads, AdamW (lr 6e-5, betas 0.9/0.999, weight decay
0.01, none on norm layers), drop path 0.15, poly decay (power 1.0, to 0) over 160k iterations with
a 1500-iteration linear warm-up from 1e-6 (the warm-up multiplies the decay, as in mmcv 1.x),
mmseg's ADE20K pipeline (resize to 2048 x 512 with ratio 0.5-2.0, crop 512 with cat_max_ratio
0.75, flip, photometric distortion), single-scale whole-image test at 2048 x 512, evaluation every
8k iterations keeping the best mIoU. The official runs used fp16 (loss scale 512): add ``--amp``.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed).

Pretrained backbone: ``checkpoints/ravlt_s_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_S.pth checkpoints/ravlt_s_in1k.pth``. Data:
``data/ade/ADEChallengeData2016`` (``--cfg-options train_dataloader.dataset.data_root=...`` etc.).

Paper (official README, ADE20K val, single scale presumably): 55M params, 937G FLOPs, mIoU 50.7.
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
        type='RAVLT',
        arch='s',
        drop_path_rate=0.15,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/ravlt_s_in1k.pth')),
    decode_head=dict(in_channels=[64, 128, 320, 512], num_classes=150),
    auxiliary_head=dict(in_channels=320, num_classes=150))

train_dataloader = dict(batch_size=2)

# No decay on norm layers; see maskrcnn_ravlt_s_coco.py for how the official 'norm' key maps to
# our parameter names.
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={
        'norm': dict(decay_mult=0.0),
        'downsample.bn': dict(decay_mult=0.0),
    }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=160000),
]
train_cfg = dict(val_interval=8000)
default_hooks = dict(checkpoint=dict(save_best='mIoU'))
