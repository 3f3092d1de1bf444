"""The demo UperNet around the small custom RAVLT of the official-layout fixture
(tests/data/official/ravlt_custom.json): the config of the README's "From official weights to a
deployed model" walk-through and of tests/test_journey.py.

Start it from the converted fixture with ``--cfg-options load_from=CONVERTED.pth`` (or set the
backbone's ``init_cfg=dict(type='Pretrained', checkpoint=CONVERTED.pth)``).
"""
_base_ = ['../../../configs/upernet_ravlt_t_demo.py']

embed_dims = [16, 32, 48, 64]
model = dict(
    backbone=dict(arch=dict(embed_dims=embed_dims, depths=[2, 1, 2, 1], num_heads=[2, 2, 4, 4])),
    decode_head=dict(in_channels=embed_dims, channels=16),
    auxiliary_head=dict(in_channels=embed_dims[2], channels=16))

max_iters = 20
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5)]
default_hooks = dict(checkpoint=dict(interval=max_iters))
