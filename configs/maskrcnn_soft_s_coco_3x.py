"""Mask R-CNN + FPN with a SOFT++ Small backbone on COCO, 3x schedule (36 epochs), multi-scale.

No official recipe exists: SOFT (github.com/fudan-zvg/SOFT) publishes ImageNet code only and
reports no 3x results. This config uses the PVT-family 3x recipe (PVT v2's
``mask_rcnn_pvt_v2_b2_fpn_3x_mstrain``, github.com/whai362/PVT, the same as RALA's): AdamW (lr
1e-4, weight decay 0.05, none on norm layers, position tables and the cls token), drop path 0.1,
DETR-style multi-scale training (``_base_/coco_instance_ms_3x.py``), x0.1 after epochs 27 and 33,
500-iteration linear warm-up from 0.001. SyncBN in the backbone. SOFT++ backbone with
``max_landmarks=256`` and ``pinv_mode='shifted_inverse'``: see ``maskrcnn_soft_s_coco.py``.

Batch: 2 images per GPU x 8 GPUs = 16 (assumed). ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/soft_norm_s_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py SOFT_Small_norm.pth checkpoints/soft_norm_s_in1k.pth``. Data:
``data/coco/``.

Paper: no 3x result published.
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

# norm_decay_mult covers every BN / LayerNorm (block norms, landmark norms, stem and downsampler
# BNs); 'pos_embed' also matches the cls token's position entry (cls_pos_embed).
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.0),
            'cls_token': dict(decay_mult=0.0),
        }))
