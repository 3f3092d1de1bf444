"""RAVLT backbone: official parity, variants, dense-prediction knobs, precision, registries."""
import copy
import doctest
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

import mmlinattn  # noqa: F401  (registers RAVLT)
from mmlinattn.models.backbones import base as base_module
from mmlinattn.models.backbones import ravlt as ravlt_module
from mmlinattn.models.backbones.ravlt import RAVLT
from mmlinattn.ops.rala import rank_augmented_linear_attention, rope_softmax_attention
from mmlinattn.utils.checkpoint import CheckpointMismatchError

DATA = osp.join(osp.dirname(osp.dirname(__file__)), 'data', 'official')
TOLERANCE = 1e-5  # max-normalised relative error


def rel_error(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def fixture_arch():
    with open(osp.join(DATA, 'ravlt_custom.json')) as f:
        kwargs = json.load(f)['detection_backbone']['kwargs']
    return dict(
        embed_dims=kwargs['embed_dims'], depths=kwargs['depths'], num_heads=kwargs['num_heads'])


SMALL_ARCH = dict(embed_dims=[16, 32, 48, 64], depths=[1, 2, 1, 1], num_heads=[2, 2, 4, 4])


@pytest.fixture(scope='module')
def io32():
    return torch.load(osp.join(DATA, 'ravlt_custom_io.pt'), weights_only=True)


@pytest.fixture(scope='module')
def io64():
    return torch.load(osp.join(DATA, 'ravlt_custom_io_fp64.pt'), weights_only=True)


@pytest.fixture(scope='module', params=['ravlt_custom_in1k.pth', 'ravlt_custom_det.pth'])
def official_model(request):
    """RAVLT loaded from an official file through init_cfg (i.e. through the converter)."""
    model = RAVLT(
        arch=fixture_arch(),
        init_cfg=dict(type='Pretrained', checkpoint=osp.join(DATA, request.param)))
    model.init_weights()
    return request.param, model.eval(), copy.deepcopy(model).double()


def run_with_stage_outputs(model, x):
    """Backbone outputs plus the raw (pre-output-norm) stage outputs."""
    captured = {}
    hooks = [
        stage.register_forward_hook(lambda mod, inp, out, i=i: captured.__setitem__(i, out))
        for i, stage in enumerate(model.stages)
    ]
    try:
        with torch.no_grad():
            outs = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return outs, [captured[i] for i in range(len(model.stages))]


@pytest.mark.parametrize('name', ['batch', 'single'])
def test_official_outputs_float32(official_model, io32, name):
    file, model, _ = official_model
    outs, stages = run_with_stage_outputs(model, io32[f'{name}/input'])
    for i in range(4):
        assert stages[i].shape == io32[f'{name}/stage{i}'].shape
        assert rel_error(stages[i], io32[f'{name}/stage{i}']) <= TOLERANCE, (file, i)
        if file == 'ravlt_custom_det.pth':  # the ImageNet file has no output norms
            assert rel_error(outs[i], io32[f'{name}/det_stage{i}']) <= TOLERANCE, (file, i)


@pytest.mark.parametrize('name', ['batch', 'single'])
def test_official_outputs_float64(official_model, io32, io64, name):
    file, _, model64 = official_model
    outs, stages = run_with_stage_outputs(model64, io32[f'{name}/input'].double())
    assert outs[0].dtype == torch.float64
    for i in range(4):
        assert rel_error(stages[i], io64[f'{name}/stage{i}']) <= 1e-12, (file, i)
        if file == 'ravlt_custom_det.pth':
            assert rel_error(outs[i], io64[f'{name}/det_stage{i}']) <= 1e-12, (file, i)


@pytest.mark.parametrize('arch,params', [('t', 13_347_328), ('s', 24_040_896), ('b', 46_691_296),
                                         ('l', 93_561_760)])
def test_parameter_counts_with_four_output_norms(arch, params):
    with torch.device('meta'):
        model = RAVLT(arch=arch)
    assert sum(p.numel() for p in model.parameters()) == params
    assert sorted(model.out_norms) == ['0', '1', '2', '3']


def test_variant_aliases_and_values():
    for short, long in [('t', 'tiny'), ('s', 'small'), ('b', 'base'), ('l', 'large')]:
        assert RAVLT.parse_arch(short) == RAVLT.parse_arch(long) == RAVLT.parse_arch(long.upper())
    base = RAVLT.parse_arch('b')
    assert base['embed_dims'] == [96, 192, 384, 512] and base['num_heads'] == [1, 2, 6, 8]
    assert base['layer_scale_init_values'] == [1.0, 1.0, 1e-6, 1e-6]
    assert RAVLT.parse_arch('l')['layer_scale_init_values'] == [1e-6] * 4
    assert RAVLT.parse_arch('s')['drop_path_rate'] == 0.15


@pytest.mark.parametrize('arch,error,message', [
    ('xl', ValueError, r"arch 'xl' unknown; choose one of \['b', 'base', 'l', 'large'"),
    (dict(embed_dims=[8] * 4, depths=[1] * 4), ValueError, r"missing \['num_heads'\]"),
    (dict(SMALL_ARCH, window=7), ValueError, r"unknown keys \['window'\]"),
    (dict(SMALL_ARCH, depths=[1, 1, 1]), ValueError, r"arch\['depths'\] must list 4 values"),
    (dict(SMALL_ARCH, num_heads=[3, 2, 4, 4]), ValueError, 'embed_dims 16 is not divisible by'),
    (dict(SMALL_ARCH, num_heads=[2, 2, 8, 4]), ValueError, r'head_dim = 48 / 8 = 6 must be '
     'divisible by 4'),
    (3, TypeError, 'arch must be a str or a dict'),
])
def test_arch_validation_messages(arch, error, message):
    with pytest.raises(error, match=message):
        RAVLT(arch=arch)


def test_knob_validation_messages():
    with pytest.raises(ValueError, match='attn_types must give one of'):
        RAVLT(arch=SMALL_ARCH, attn_types=('linear', 'softmax', 'softmax'))
    with pytest.raises(ValueError, match='attn_types must give one of'):
        RAVLT(arch=SMALL_ARCH, attn_types=('linear', 'linear', 'window', 'softmax'))
    with pytest.raises(ValueError, match=r'out_indices must be in \[0, 3\]'):
        RAVLT(arch=SMALL_ARCH, out_indices=(4, ))
    with pytest.raises(ValueError, match=r'frozen_stages must be an int in \[-1, 4\]'):
        RAVLT(arch=SMALL_ARCH, frozen_stages=5)


@pytest.mark.parametrize('size', [(32, 32), (33, 47), (71, 103), (40, 200)])
def test_any_input_size_ceil_halves(size):
    model = RAVLT(arch=SMALL_ARCH).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    height, width = size
    for i, out in enumerate(outs):
        for _ in range(2 if i == 0 else 1):  # every stride-2 conv maps n to ceil(n / 2)
            height, width = -(-height // 2), -(-width // 2)
        assert tuple(out.shape) == (1, SMALL_ARCH['embed_dims'][i], height, width)


def test_out_indices_select_outputs_and_norms():
    model = RAVLT(arch=SMALL_ARCH, out_indices=(1, -1)).eval()
    assert model.out_indices == (1, 3) and sorted(model.out_norms) == ['1', '3']
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 64, 96))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 12), (2, 64, 2, 3)]
    assert [k for k in model.state_dict() if k.startswith('out_norms.')] == \
        ['out_norms.1.weight', 'out_norms.1.bias', 'out_norms.3.weight', 'out_norms.3.bias']


def test_out_norm_cfg_changes_or_removes_the_output_norms():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 96)
    default = RAVLT(arch=SMALL_ARCH).eval()
    assert all(
        isinstance(n, ravlt_module.LayerNorm2d) and n.eps == 1e-6
        for n in default.out_norms.values())
    plain = RAVLT(arch=SMALL_ARCH, out_norm_cfg=None).eval()
    assert not any(k.startswith('out_norms.') for k in plain.state_dict())
    with pytest.raises(CheckpointMismatchError, match='8 tensor.* belong to no module'):
        plain.load_state_dict(default.state_dict(), strict=False)  # they would be dropped
    plain.load_state_dict({
        k: v
        for k, v in default.state_dict().items() if not k.startswith('out_norms.')
    })
    outs, stages = run_with_stage_outputs(plain, x)
    for out, stage in zip(outs, stages):
        assert torch.equal(out, stage)  # the raw stage outputs
    _, ref_stages = run_with_stage_outputs(default, x)
    for a, b in zip(stages, ref_stages):
        assert torch.equal(a, b)  # nothing else changed
    group = RAVLT(arch=SMALL_ARCH, out_norm_cfg=dict(type='GN', num_groups=4)).eval()
    assert isinstance(group.out_norms['0'], nn.GroupNorm) and group.out_norms['0'].num_groups == 4
    with torch.no_grad():
        out0 = group(x)[0]
    per_group = out0.reshape(2, 4, -1)
    assert per_group.mean(-1).abs().max() < 1e-5
    assert (per_group.var(-1, unbiased=False) - 1).abs().max() < 1e-3


def test_attention_types_per_stage():
    default = RAVLT(arch=SMALL_ARCH)
    ops = [stage.blocks[0].attn.attn_op for stage in default.stages]
    assert ops == [rank_augmented_linear_attention] * 2 + [rope_softmax_attention] * 2
    linear = RAVLT(arch=SMALL_ARCH, attn_types=('linear', ) * 4)
    assert all(b.attn.attn_op is rank_augmented_linear_attention for s in linear.stages
               for b in s.blocks)
    # Same parameters, but another function: loading needs the explicit override.
    with pytest.raises(
            CheckpointMismatchError,
            match=r"set attn_types=\('linear', 'linear', "
            r"'softmax', 'softmax'\) in the backbone config"):
        linear.load_state_dict(default.state_dict())
    linear.override_checkpoint_settings = True
    linear.load_state_dict(default.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = default.eval()(x), linear.eval()(x)
    assert torch.equal(a[1], b[1]) and not torch.allclose(a[3], b[3])


def test_rope_is_not_in_the_state_dict():
    keys = RAVLT(arch=SMALL_ARCH).state_dict()
    assert not [k for k in keys if 'rope' in k.lower() or 'angle' in k]


def test_frozen_stages():
    model = RAVLT(arch=SMALL_ARCH, frozen_stages=2)
    model.train()
    frozen = [model.stem, model.stages[0], model.stages[1]]
    for module in frozen:
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    for module in [model.stages[2], model.stages[3], model.out_norms]:
        assert all(p.requires_grad for p in module.parameters())
        assert all(m.training for m in module.modules())
    # frozen BN statistics do not move in a training forward
    before = model.stem[0].bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(model.stem[0].bn.running_mean, before)
    assert not model.stages[2].downsample.bn.running_mean.eq(0).all()
    stem_only = RAVLT(arch=SMALL_ARCH, frozen_stages=0).train()
    assert not any(p.requires_grad for p in stem_only.stem.parameters())
    assert all(p.requires_grad for p in stem_only.stages[0].parameters())


@pytest.mark.parametrize('norm_type', ['BN', 'SyncBN'])
def test_norm_eval_covers_bn_and_syncbn(norm_type):
    model = RAVLT(arch=SMALL_ARCH, norm_cfg=dict(type=norm_type), norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert len(bns) == 4 + 3
    if norm_type == 'SyncBN':
        assert all(isinstance(m, nn.SyncBatchNorm) for m in bns)
    assert all(not m.training for m in bns)
    assert model.training and model.stages[0].blocks[0].training
    with torch.no_grad():  # SyncBN in eval needs no process group
        before = bns[0].running_mean.clone()
        model(torch.randn(1, 3, 64, 64))
    assert torch.equal(bns[0].running_mean, before)
    plain = RAVLT(arch=SMALL_ARCH, norm_cfg=dict(type=norm_type)).train()
    assert all(m.training for m in plain.modules() if isinstance(m, _BatchNorm))


def test_with_cp_gives_identical_gradients(monkeypatch):
    calls = []
    checkpoint = base_module.cp.checkpoint

    def counting_checkpoint(*args, **kwargs):
        calls.append(kwargs.get('use_reentrant'))
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr(base_module.cp, 'checkpoint', counting_checkpoint)
    torch.manual_seed(0)
    model = RAVLT(arch=SMALL_ARCH, drop_path_rate=0.3)
    model.init_weights()
    checkpointed = RAVLT(arch=SMALL_ARCH, drop_path_rate=0.3, with_cp=True)
    checkpointed.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 48, 64)
    grads = []
    for m in (model, checkpointed):
        m.train()
        torch.manual_seed(1)  # same drop-path draws
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in m(x))
        loss.backward()
        grads.append({k: p.grad for k, p in m.named_parameters()})
    assert calls == [False] * sum(SMALL_ARCH['depths'])  # every block, non-reentrant
    assert grads[0].keys() == grads[1].keys()
    for key in grads[0]:
        torch.testing.assert_close(grads[1][key], grads[0][key], rtol=1e-5, atol=1e-7, msg=key)


def test_init_weights_from_scratch():
    arch = dict(SMALL_ARCH, layer_scale_init_values=[1.0, 1.0, 1e-6, 1e-6])
    model = RAVLT(arch=arch, init_cfg=None)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3.0)
    model.init_weights()
    qkvg = model.stages[0].blocks[0].attn.qkvg
    assert 0.015 < qkvg.weight.std().item() < 0.025
    assert torch.equal(qkvg.bias, torch.zeros_like(qkvg.bias))
    assert torch.equal(model.out_norms['0'].weight, torch.ones(16))
    assert torch.equal(model.stages[1].blocks[1].layer_scale2, torch.ones(1, 32, 1, 1))
    assert torch.equal(model.stages[2].blocks[0].layer_scale1, torch.full((1, 48, 1, 1), 1e-6))


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_small_input(dtype):
    model = RAVLT(arch=SMALL_ARCH).eval()
    model.init_weights()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outs = model(x)
    for out, r in zip(outs, ref):
        assert torch.isfinite(out).all()
        assert rel_error(out, r) < 5e-2


def _autocast_1333x800(dtype):
    torch.manual_seed(0)
    model = RAVLT(arch='t').eval()
    model.init_weights()
    with torch.no_grad(), torch.autocast('cpu', dtype=dtype):
        outs = model(torch.randn(1, 3, 800, 1333))
    assert [tuple(o.shape[2:]) for o in outs] == [(200, 334), (100, 167), (50, 84), (25, 42)]
    for out in outs:
        assert torch.isfinite(out).all()


@pytest.mark.slow  # the narrow-model autocast test covers the default suite
def test_autocast_bf16_1333x800_ravlt_t():
    """~2 s on 2 idle CPU cores."""
    _autocast_1333x800(torch.bfloat16)


@pytest.mark.slow
def test_autocast_fp16_1333x800_ravlt_t():
    """15-40 s on 2 CPU cores: float16 conv2d on CPU runs aten's slow im2col kernel
    (``_slow_conv2d_forward``, no oneDNN path); slow, not unsupported. Small-input float16
    autocast is covered by ``test_autocast_small_input`` in the default suite."""
    _autocast_1333x800(torch.float16)


def test_docstring_example():
    finder = doctest.DocTestFinder()
    tests = [t for t in finder.find(ravlt_module.RAVLT) if t.name.endswith('RAVLT')]
    runner = doctest.DocTestRunner()
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0 and runner.summarize().attempted >= 5
