"""Mask R-CNN + FPN with a RAVLT-T backbone on COCO, 3x schedule (36 epochs) with multi-scale crops.

Recipe: ours, not official: the official repository has neither a T 3x config nor a T 3x result. It
is the recipe of the official S/B/L 3x configs (documented in ``maskrcnn_ravlt_s_coco_3x.py``) with
RAVLT-T, drop path 0.1.

Batch: 2 images per GPU x 8 GPUs = 16 (GPU count assumed); ``--auto-scale-lr`` rescales from
``base_batch_size=16``.

Pretrained backbone: ``checkpoints/ravlt_t_in1k.pth`` (placeholder), from ``python
tools/convert_checkpoint.py RAVLT_T.pth checkpoints/ravlt_t_in1k.pth``. Data: ``data/coco/``.

Paper: no T 3x result published.
"""
_base_ = ['./maskrcnn_ravlt_s_coco_3x.py']
custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='t', drop_path_rate=0.1, init_cfg=dict(checkpoint='checkpoints/ravlt_t_in1k.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
