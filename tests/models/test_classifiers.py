"""The timm classifiers: names, official logits through timm's own API, features, both directions
between timm and mmdet / mmseg, and timm's model API."""
import json
import os.path as osp

import pytest
import timm
import torch

import mmlinattn  # noqa: F401  (registers the timm models)
from mmlinattn.models import RAVLT, SOFT
from mmlinattn.utils.checkpoint import CheckpointError, CheckpointMismatchError

DATA = osp.join(osp.dirname(osp.dirname(__file__)), 'data', 'official')
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def fixture_arch(case):
    with open(osp.join(DATA, f'{case}.json')) as f:
        kwargs = json.load(f)['constructor']['kwargs']
    return {k: kwargs[k] for k in ('embed_dims', 'depths', 'num_heads')}


#: case -> (timm name, official file, timm kwargs, float32 tolerance)
CASES = {
    'ravlt_custom': ('ravlt_t', 'ravlt_custom_in1k.pth', dict(projection=64), 1e-5),
    'soft_custom': ('soft_tiny', 'soft_custom_timm.pth', {}, 1e-4),
    'soft_norm_custom': ('soft_norm_tiny', 'soft_norm_custom_timm.pth', {}, 1e-4),
}


def rel_error(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def official_classifier(case, **kwargs):
    name, file, extra, _ = CASES[case]
    return timm.create_model(
        name,
        pretrained=True,
        num_classes=10,
        arch=fixture_arch(case),
        pretrained_cfg_overlay=dict(file=osp.join(DATA, file), num_classes=10),
        **extra,
        **kwargs).eval()


def test_every_official_name_is_registered():
    assert timm.list_models('ravlt*') == ['ravlt_b', 'ravlt_l', 'ravlt_s', 'ravlt_t']
    assert timm.list_models('RAVLT*') == ['RAVLT_B', 'RAVLT_L', 'RAVLT_S', 'RAVLT_T']
    sizes = ['huge', 'large', 'medium', 'small', 'tiny']
    assert timm.list_models('soft*') == sorted([f'soft_{s}'
                                                for s in sizes] + [f'soft_norm_{s}' for s in sizes])


# Exact parameter counts of the official classifiers: RALA's instantiated in the spec of the
# official code; SOFT's instantiated from the official code (its README rounds to 13/39/45/65/87 M).
OFFICIAL_PARAMS = {
    'ravlt_t': 14_897_768,
    'ravlt_s': 25_591_208,
    'ravlt_b': 48_241_288,
    'ravlt_l': 95_242_440,
}


@pytest.mark.parametrize('name', sorted(OFFICIAL_PARAMS))
def test_parameter_counts_equal_the_official_classifiers(name):
    with torch.device('meta'):
        model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]


@pytest.mark.parametrize('case', sorted(CASES))
def test_parameter_count_equals_the_official_checkpoint(case):
    """Same count (and tensor shapes) as the official classifier that wrote the fixture."""
    from mmlinattn.converters import load_checkpoint_file, unwrap_state_dict
    official = unwrap_state_dict(load_checkpoint_file(osp.join(DATA, CASES[case][1])))
    model = official_classifier(case)
    ours = {k: v for k, v in model.state_dict().items() if k != '_extra_state'}
    official = {k: v for k, v in official.items() if 'RoPE' not in k}  # fixed buffers we compute
    assert sum(v.numel() for v in ours.values()) == sum(v.numel() for v in official.values())
    assert sum(p.numel()
               for p in model.parameters()) == sum(v.numel() for k, v in official.items()
                                                   if v.is_floating_point() and 'running' not in k)


@pytest.mark.parametrize('case', sorted(CASES))
@pytest.mark.parametrize('name', ['batch', 'single'])
def test_official_logits_float32(case, name):
    io = torch.load(osp.join(DATA, f'{case}_io.pt'), weights_only=True)
    model = official_classifier(case)
    with torch.no_grad():
        logits = model(io[f'{name}/input'])
    assert logits.shape == io[f'{name}/logits'].shape
    assert rel_error(logits, io[f'{name}/logits']) < CASES[case][3]


@pytest.mark.parametrize('case', sorted(CASES))
def test_official_logits_float64_and_gradients_against_the_reference_ops(case):
    io = torch.load(osp.join(DATA, f'{case}_io.pt'), weights_only=True)
    io64 = torch.load(osp.join(DATA, f'{case}_io_fp64.pt'), weights_only=True)
    x = io['single/input'].double()
    fast = official_classifier(case).double()
    with torch.no_grad():
        assert rel_error(fast(x), io64['single/logits']) < 1e-10
    # Backward: the fast ops and the plain reference ops give the same input gradients. SOFT's
    # fast inverse differentiates the converged inverse, the reference its iterations, so its
    # comparison runs the Newton iteration to convergence (the official weights' 20 steps are not).
    kwargs = {} if case == 'ravlt_custom' else dict(newton_iters=80, pinv_mode='newton')
    grads = []
    for backend in ('torch', 'reference'):
        model = official_classifier(case, backend=backend, **kwargs).double()
        inp = x.clone().requires_grad_()
        model(inp).square().sum().backward()
        grads.append(inp.grad)
    assert rel_error(grads[0], grads[1]) < 1e-8


@pytest.mark.parametrize('case,backbone', [('ravlt_custom', RAVLT), ('soft_norm_custom', SOFT)])
def test_features_only_equals_the_mmdet_backbone(case, backbone, tmp_path):
    name, file, extra = CASES[case][:3]
    features = timm.create_model(
        name,
        features_only=True,
        arch=fixture_arch(case),
        pretrained=True,
        num_classes=10,
        **extra,
        pretrained_cfg_overlay=dict(file=osp.join(DATA, file), num_classes=10)).eval()
    assert features.feature_info.reduction() == [4, 8, 16, 32]
    kwargs = dict(out_norm_cfg=None) if backbone is RAVLT else dict(normalization='core')
    mmdet_backbone = backbone(
        arch=fixture_arch(case),
        **kwargs,
        init_cfg=dict(type='Pretrained', checkpoint=osp.join(DATA, file)))
    mmdet_backbone.init_weights()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ours, theirs = features(x), mmdet_backbone.eval()(x)
    assert features.feature_info.channels() == [t.shape[1] for t in theirs]
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_features_only_in_the_issue():
    model = timm.create_model('ravlt_s', features_only=True)
    assert model.feature_info.channels() == [64, 128, 320, 512]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 16, 24), (1, 128, 8, 12), (1, 320, 4, 6),
                                              (1, 512, 2, 3)]


@pytest.mark.parametrize('case', ['ravlt_custom', 'soft_custom'])
def test_timm_checkpoint_to_mmdet_backbone_round_trip(case, tmp_path):
    """A timm-trained classifier (timm's saver, with EMA) -> tools/convert_checkpoint.py ->
    init_cfg Pretrained of the mmdet backbone: identical stage outputs."""
    import argparse
    import sys
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import convert_checkpoint
    torch.manual_seed(0)
    name = CASES[case][0]
    model = timm.create_model(name, arch=fixture_arch(case), num_classes=10).eval()
    ema = {k: v.clone() for k, v in model.state_dict().items()}
    saved = tmp_path / 'checkpoint-3.pth.tar'
    torch.save(
        {
            'epoch': 3,
            'arch': name,
            'state_dict': {
                k: v * 0
                for k, v in ema.items()
            },
            'state_dict_ema': ema,
            'args': argparse.Namespace(model=name),
            'version': 2
        }, saved)
    # timm itself reloads it (EMA preferred), also through pretrained_cfg_overlay.
    again = timm.create_model(
        name,
        arch=fixture_arch(case),
        num_classes=10,
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(saved), num_classes=10)).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    out = tmp_path / 'backbone.pth'
    assert convert_checkpoint.main([str(saved), str(out), '--allow-custom']) == 0
    backbone_cls = RAVLT if case == 'ravlt_custom' else SOFT
    kwargs = dict(out_norm_cfg=None) if backbone_cls is RAVLT else {}
    backbone = backbone_cls(
        arch=fixture_arch(case), **kwargs, init_cfg=dict(type='Pretrained', checkpoint=str(out)))
    backbone.init_weights()
    with torch.no_grad():
        for a, b in zip(backbone.eval()(x), model.forward_intermediates(x,
                                                                        intermediates_only=True)):
            assert torch.equal(a, b)


def test_wrong_family_and_soft_vs_softpp_are_the_converters_errors():
    with pytest.raises(CheckpointError, match='this is a SOFT checkpoint .* not RALA'):
        timm.create_model(
            'ravlt_t',
            pretrained=True,
            pretrained_cfg_overlay=dict(file=osp.join(DATA, 'soft_custom_timm.pth')))
    # The official SOFT-Norm file's 'arch' entry says SOFT++: not into a SOFT (soft_tiny).
    with pytest.raises(CheckpointMismatchError, match="set normalization='core'"):
        timm.create_model(
            'soft_tiny',
            pretrained=True,
            num_classes=10,
            arch=fixture_arch('soft_norm_custom'),
            pretrained_cfg_overlay=dict(
                file=osp.join(DATA, 'soft_norm_custom_timm.pth'), num_classes=10))
    with pytest.raises(CheckpointMismatchError, match='depths'):
        timm.create_model(
            'ravlt_t',
            pretrained=True,
            num_classes=10,
            projection=64,
            pretrained_cfg_overlay=dict(
                file=osp.join(DATA, 'ravlt_custom_in1k.pth'), num_classes=10))


@pytest.mark.parametrize('name', ['ravlt_t', 'soft_norm_tiny'])
def test_timm_model_api(name):
    model = timm.create_model(name, num_classes=7, drop_rate=0.1, drop_path_rate=0.05)
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 7)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == \
        (2, model.num_features)
    assert model.get_classifier().out_features if hasattr(model.get_classifier(),
                                                          'out_features') else True
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)
    model.set_grad_checkpointing(True)
    assert all(stage.with_cp for stage in model.stages)
    groups = timm.models.group_parameters(model, model.group_matcher())
    assert len(groups) > 4 and sum(len(g)
                                   for g in groups.values()) == len(list(model.named_parameters()))
    final, intermediates = model.forward_intermediates(x)
    assert len(intermediates) == 4 and intermediates[-1].shape[1] == model.embed_dims[-1]
    cfg = model.pretrained_cfg
    assert cfg['input_size'] == (3, 224, 224) and cfg['interpolation'] == 'bicubic'
    assert cfg['crop_pct'] == (0.875 if name.startswith('ravlt') else 0.9)


def test_soft_small_is_the_official_code_and_the_readme_model_is_one_argument_away():
    with torch.device('meta'):
        code = timm.create_model('soft_small')
        readme = timm.create_model('soft_small', arch='small')
    assert code.arch['depths'] == [1, 3, 20, 4] and readme.arch['depths'] == [1, 3, 7, 4]


@pytest.mark.slow  # a fresh interpreter (imports mmdet/mmseg): ~5-8 s
def test_timm_script_wrapper_registers_the_models_before_the_script_runs(tmp_path):
    """timm's train.py / validate.py only know ``--model ravlt_s`` through tools/timm_script.py."""
    import subprocess
    import sys
    script = tmp_path / 'train.py'
    script.write_text('import sys, timm\n'
                      'model = timm.create_model(sys.argv[sys.argv.index("--model") + 1])\n'
                      'print(type(model).__name__, sys.argv[1:])\n')
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'timm_script.py'),
        str(script), '--model', 'soft_norm_tiny'
    ],
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == 'SOFTClassifier' and "'--model'" in proc.stdout


@pytest.mark.parametrize('name', ['ravlt_t', 'soft_tiny'])
def test_pretrained_without_a_file_names_the_overlay(name):
    """Before: timm's 'No pretrained weights exist ... use pretrained=False' and nothing else."""
    from mmlinattn.models.classifiers.common import NoPretrainedFileError
    with pytest.raises(
            NoPretrainedFileError,
            match=r"pretrained_cfg_overlay=dict\(file='path/to/checkpoint.pth'\)"):
        timm.create_model(name, pretrained=True)
