"""Semantic FPN with a SOFT++ Large backbone on ADE20K, 80k iterations, 512 x 512 crops.

No official recipe exists (SOFT publishes ImageNet code only); this config uses the PVT-style
recipe documented in ``fpn_soft_s_ade20k.py`` (AdamW lr 1e-4, weight decay 1e-4, drop path 0.1,
poly decay over 80k iterations) with the SOFT++ Large (SOFT-Large-Norm) backbone,
``normalization='core'``,
``max_landmarks=256``, ``pinv_mode='shifted_inverse'``.

Batch: 2 images per GPU x 8 GPUs = 16 (assumed).

Pretrained backbone: ``checkpoints/soft_norm_l_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py SOFT_Large_norm.pth checkpoints/soft_norm_l_in1k.pth``. Data:
``data/ade/ADEChallengeData2016``.

Paper: no Semantic FPN result published.
"""
_base_ = ['./fpn_soft_s_ade20k.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(backbone=dict(arch='l', init_cfg=dict(checkpoint='checkpoints/soft_norm_l_in1k.pth')))
