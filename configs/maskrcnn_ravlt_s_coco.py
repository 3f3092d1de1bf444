"""Mask R-CNN + FPN with a RAVLT-S backbone on COCO, 1x schedule (12 epochs, single scale).

Recipe: the official RALA config ``maskrcnn_s_1x`` (github.com/qhfan/RALA, ``detection/``, mmdet
2.11), ported to mmdet 3.x: AdamW (lr 1e-4, betas 0.9/0.999, weight decay 0.05, none on norm
layers), drop path 0.15, SyncBN in the backbone's stem and downsamplers, training at (1333, 800)
with flip 0.5, learning rate x0.1 after epochs 8 and 11, 500-iteration linear warm-up from 0.001.
The official runs used fp16 with a dynamic loss scale: add ``--amp`` to ``tools/train.py`` to match.

Batch: 2 images per GPU x 8 GPUs = 16 (the official GPU count is not stated; 8 is assumed). For
another total batch, ``--auto-scale-lr`` scales the learning rate from ``base_batch_size=16``.

Pretrained backbone: ``checkpoints/ravlt_s_in1k.pth`` is a placeholder path. Produce it from the
official ImageNet file with ``python tools/convert_checkpoint.py RAVLT_S.pth
checkpoints/ravlt_s_in1k.pth``, or point elsewhere with ``--cfg-options
model.backbone.init_cfg.checkpoint=PATH``. Data: ``data/coco/`` (``--cfg-options
train_dataloader.dataset.data_root=...`` etc. to move it).

Paper (official README, COCO val2017): 44M params, 262G FLOPs; box AP 49.8 (AP50 71.3, AP75
54.5), mask AP 44.6 (AP50 68.5, AP75 48.2).
"""
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
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

# The official 'norm' key (decay 0) matched every LayerNorm ('norm1.norm', 'norm2.norm',
# 'extra_norms') and the downsamplers' BN ('downsample.norm'), but not the stem BNs or the layer
# scales. Same split with our names: 'norm' matches norm1, norm2 and out_norms, 'downsample.bn' the
# downsamplers' BN; stem.*.bn and layer_scale* keep their decay.
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'norm': dict(decay_mult=0.0),
        'downsample.bn': dict(decay_mult=0.0),
    }))
