"""Mask R-CNN + FPN with a SOFT++ Tiny backbone on COCO, 1x schedule (12 epochs).

No official recipe exists (SOFT publishes ImageNet code only); this config uses the PVT-style
recipe documented in ``maskrcnn_soft_s_coco.py`` (AdamW lr 2e-4, weight decay 1e-4, drop path 0.1,
mmdet 1x schedule) with the SOFT++ Tiny (SOFT-Tiny-Norm) backbone, ``normalization='core'``,
``max_landmarks=256``, ``pinv_mode='shifted_inverse'``.

Batch: 2 images per GPU x 8 GPUs = 16 (assumed); ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/soft_norm_t_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py SOFT_Tiny_norm.pth checkpoints/soft_norm_t_in1k.pth``. Data:
``data/coco/``.

Paper (SOFT README, COCO val2017, recipe unpublished): 33M params; box AP 41.2, mask AP 38.2.
"""
_base_ = ['./maskrcnn_soft_s_coco.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(backbone=dict(arch='t', init_cfg=dict(checkpoint='checkpoints/soft_norm_t_in1k.pth')))
