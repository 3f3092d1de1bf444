"""Mask R-CNN + FPN with a SOFT++ Large backbone on COCO, 3x schedule, multi-scale crops.

No official recipe exists (SOFT publishes ImageNet code only); this config uses the PVT-family 3x
recipe documented in ``maskrcnn_soft_s_coco_3x.py`` (AdamW lr 1e-4, weight decay 0.05 except norms,
position tables and cls token, drop path 0.1, DETR-style multi-scale, 36 epochs) with the SOFT++
Large (SOFT-Large-Norm) backbone, ``normalization='core'``, ``max_landmarks=256``,
``pinv_mode='shifted_inverse'``.

Batch: 2 images per GPU x 8 GPUs = 16 (assumed); ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/soft_norm_l_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py SOFT_Large_norm.pth checkpoints/soft_norm_l_in1k.pth``. Data:
``data/coco/``.

Paper: no 3x result published.
"""
_base_ = ['./maskrcnn_soft_s_coco_3x.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(backbone=dict(arch='l', init_cfg=dict(checkpoint='checkpoints/soft_norm_l_in1k.pth')))
