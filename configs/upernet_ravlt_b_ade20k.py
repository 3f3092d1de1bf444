"""UperNet with a RAVLT-B backbone on ADE20K, 160k iterations, 512 x 512 crops.

Recipe: the official RALA config ``RALA_Uper_b_2x`` (github.com/qhfan/RALA, ``segmentation/``); it
differs from ``upernet_ravlt_s_ade20k.py``, which documents the full recipe, only in the backbone:
RAVLT-B, drop path 0.4.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed).

Pretrained backbone: ``checkpoints/ravlt_b_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_B.pth checkpoints/ravlt_b_in1k.pth``. Data:
``data/ade/ADEChallengeData2016``.

Paper (official README, ADE20K val, single scale presumably): 77M params, 1050G FLOPs, mIoU 52.5.
"""
_base_ = ['./upernet_ravlt_s_ade20k.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='b', drop_path_rate=0.4, init_cfg=dict(checkpoint='checkpoints/ravlt_b_in1k.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 512]),
    auxiliary_head=dict(in_channels=384))
