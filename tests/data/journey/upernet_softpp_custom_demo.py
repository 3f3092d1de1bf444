"""The demo UperNet around the small custom SOFT++ of the official-layout fixture
(tests/data/official/soft_norm_custom.json), built as the shipped SOFT++ configs build their
backbones (``normalization='core'``, ``max_landmarks=256``, ``pinv_mode='shifted_inverse'``): the
SOFT++ config of the README's "From official weights to a deployed model" walk-through and of
tests/test_journey.py.
"""
_base_ = ['./upernet_ravlt_custom_demo.py']  # the same heads, schedule and hooks

embed_dims = [16, 24, 32, 48]
model = dict(
    backbone=dict(
        _delete_=True,
        type='SOFT',
        arch=dict(embed_dims=embed_dims, depths=[1, 2, 2, 1], num_heads=[2, 2, 2, 3]),
        normalization='core',
        max_landmarks=256,
        pinv_mode='shifted_inverse',
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3),
        init_cfg=None),
    decode_head=dict(in_channels=embed_dims),
    auxiliary_head=dict(in_channels=embed_dims[2]))
