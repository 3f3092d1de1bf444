"""UperNet with a RAVLT-L backbone on ADE20K, 160k iterations, 512 x 512 crops.

Recipe: the official RALA config ``RALA_Uper_l_2x`` (github.com/qhfan/RALA, ``segmentation/``); it
differs from ``upernet_ravlt_s_ade20k.py``, which documents the full recipe, only in the backbone:
RAVLT-L, drop path 0.55.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed).

Pretrained backbone: ``checkpoints/ravlt_l_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_L.pth checkpoints/ravlt_l_in1k.pth``. Data:
``data/ade/ADEChallengeData2016``.

Paper (official README, ADE20K val, single scale presumably): 125M params, 1182G FLOPs, mIoU 53.2.
"""
_base_ = ['./upernet_ravlt_s_ade20k.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='l', drop_path_rate=0.55, init_cfg=dict(checkpoint='checkpoints/ravlt_l_in1k.pth')),
    decode_head=dict(in_channels=[96, 192, 448, 640]),
    auxiliary_head=dict(in_channels=448))
