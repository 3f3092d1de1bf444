"""UperNet with a SOFT++ Medium backbone on ADE20K, 160k iterations, 512 x 512 crops.

No official recipe exists (SOFT publishes ImageNet code only); this config uses the Swin / PVT v2
UperNet recipe documented in ``upernet_soft_s_ade20k.py`` (AdamW lr 6e-5, weight decay 0.01 except
norms, position tables and cls token, drop path 0.1, 1500-iteration warm-up, poly decay over 160k
iterations) with the SOFT++ Medium (SOFT-Medium-Norm) backbone, ``normalization='core'``,
``max_landmarks=256``, ``pinv_mode='shifted_inverse'``.

Batch: 2 images per GPU x 8 GPUs = 16 (assumed).

Pretrained backbone: ``checkpoints/soft_norm_m_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py SOFT_Medium_norm.pth checkpoints/soft_norm_m_in1k.pth``. Data:
``data/ade/ADEChallengeData2016``.

Paper (SOFT README, ADE20K val, "1x" schedule, recipe unpublished): 76M params, mIoU 48.0.
"""
_base_ = ['./upernet_soft_s_ade20k.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(arch='m', init_cfg=dict(checkpoint='checkpoints/soft_norm_m_in1k.pth')),
    decode_head=dict(in_channels=[64, 128, 288, 512]),
    auxiliary_head=dict(in_channels=288))
