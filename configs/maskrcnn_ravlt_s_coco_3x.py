"""Mask R-CNN + FPN with a RAVLT-S backbone on COCO, 3x schedule (36 epochs) with multi-scale crops.

Recipe: the official RALA config ``maskrcnn_s_3x`` (github.com/qhfan/RALA, ``detection/``, mmdet
2.11), ported to mmdet 3.x: the model and optimizer of ``maskrcnn_ravlt_s_coco.py`` (AdamW lr 1e-4,
weight decay 0.05, none on norm layers, drop path 0.15, SyncBN in the backbone) with DETR-style
multi-scale training (short side 480-800, or 400-600 then a 384-600 crop, see
``_base_/coco_instance_ms_3x.py``), learning rate x0.1 after epochs 27 and 33, 500-iteration linear
warm-up from 0.001. The official runs used fp16: add ``--amp`` to match.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed). ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/ravlt_s_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_S.pth checkpoints/ravlt_s_in1k.pth``. Data: ``data/coco/``.

Paper (official README, COCO val2017): 44M params, 262G FLOPs; box AP 51.4 (AP50 72.3, AP75
56.5), mask AP 45.5 (AP50 69.7, AP75 48.8).
"""
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/coco_instance_ms_3x.py',
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

# No decay on norm layers; see maskrcnn_ravlt_s_coco.py for how the official 'norm' key maps to
# our parameter names.
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'norm': dict(decay_mult=0.0),
        'downsample.bn': dict(decay_mult=0.0),
    }))
