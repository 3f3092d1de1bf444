"""RetinaNet + FPN with a RAVLT-B backbone on COCO, 1x schedule (12 epochs, single scale).

Recipe: the official RALA config ``retinanet_m_1x`` (github.com/qhfan/RALA, ``detection/``; its
``m`` is RAVLT-B); it differs from ``retinanet_ravlt_s_coco.py``, which documents the full recipe,
only in the backbone: RAVLT-B, drop path 0.4.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed); ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/ravlt_b_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_B.pth checkpoints/ravlt_b_in1k.pth``. Data: ``data/coco/``.

Paper (official README, COCO val2017): 57M params, 353G FLOPs; box AP 49.8 (AP50 71.2, AP75 54.0,
APs 34.0, APm 54.3, APl 64.9).
"""
_base_ = ['./retinanet_ravlt_s_coco.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='b', drop_path_rate=0.4, init_cfg=dict(checkpoint='checkpoints/ravlt_b_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 512]))
