"""Cascade Mask R-CNN + FPN with a RAVLT-S backbone on COCO, 3x schedule with multi-scale crops.

Recipe: the official RALA config ``casrcnn_s_3x`` (github.com/qhfan/RALA, ``detection/``, mmdet
2.11), ported to mmdet 3.x: three 4conv1fc box heads with SyncBN and GIoU loss
(``_base_/cascade_mask_rcnn_4conv1fc_giou.py``), AdamW (lr 1e-4, betas 0.9/0.999, weight decay
0.05, none on any norm layer: the official ``norm_decay_mult=0``), drop path 0.15, SyncBN in the
backbone, DETR-style multi-scale training (``_base_/coco_instance_ms_3x.py``), learning rate x0.1
after epochs 27 and 33, 500-iteration linear warm-up from 0.001. The official runs used fp16: add
``--amp`` to match.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed). ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/ravlt_s_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_S.pth checkpoints/ravlt_s_in1k.pth``. Data: ``data/coco/``.

Paper (official README, COCO val2017): 82M params, 741G FLOPs; box AP 54.2 (AP50 72.9, AP75
58.7), mask AP 46.8 (AP50 70.5, AP75 50.9).
"""
_base_ = [
    './_base_/cascade_mask_rcnn_4conv1fc_giou.py',
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

# norm_decay_mult covers every BN / LayerNorm of the model (the stem BNs included), which is what
# the official norm_decay_mult=0 plus its 'norm' key amounted to.
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0))
