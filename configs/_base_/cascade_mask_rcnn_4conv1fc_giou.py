"""Cascade Mask R-CNN + FPN whose three box heads are 4conv1fc heads with GIoU loss.

The head used by the official RALA Cascade Mask R-CNN 3x configs (as in Swin / ConvNeXt): 4 shared
3x3 convs with SyncBN and 1 fc, class-specific regression of decoded boxes with GIoU loss (weight
10). Everything else is mmdet's ``cascade-mask-rcnn_r50_fpn.py`` (RPN with SmoothL1, beta 1/9).
"""
_base_ = ['mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py']

model = dict(
    roi_head=dict(bbox_head=[
        dict(
            type='Shared4Conv1FCBBoxHead',
            in_channels=256,
            conv_out_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            norm_cfg=dict(type='SyncBN', requires_grad=True),
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
        # Tighter regression targets at each stage, as in mmdet's cascade base.
        for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
    ]))
