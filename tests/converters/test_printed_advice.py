"""Advice that works when pasted: every backbone / arch line that the converter CLI, the
``init_cfg`` loader and timm's checkpoint filter print builds the model, loads the file it was
printed for and gives the official stage outputs.

The sources are the official fixtures and custom-arch variants of them: the arch entry dropped or
renamed to a released variant's name, a stage with one block fewer, a converted file whose
settings record was stripped (RAVLT heads cannot be read from the weights: the line uses the
documented default and says so).
"""
import ast
import os.path as osp
import sys

import pytest
import timm
import torch
from mmengine.registry import MODELS

import mmlinattn  # noqa: F401  (registers the backbones and the timm models)
from mmlinattn.converters import convert_state_dict, load_checkpoint_file, unwrap_state_dict
from mmlinattn.utils.checkpoint import SETTINGS_KEY, CheckpointError, CheckpointMismatchError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DATA = osp.join(ROOT, 'tests', 'data', 'official')
sys.path.insert(0, osp.join(ROOT, 'tools'))
import convert_checkpoint  # noqa: E402

SOFT_ARCH = dict(embed_dims=[16, 24, 32, 48], depths=[1, 2, 2, 1], num_heads=[2, 2, 2, 3])
RAVLT_ARCH = dict(embed_dims=[16, 32, 48, 64], depths=[2, 1, 2, 1], num_heads=[2, 2, 4, 4])
# Max-normalised, as the fixture parity tests (tests/models/test_soft.py, test_ravlt.py).
TOLERANCE = {'none': 1e-4, 'core': 1e-5, 'rala': 1e-5}

SOFT_NORM = dict(type='SOFT', arch=SOFT_ARCH, normalization='core')
SOFT_PLAIN = dict(SOFT_NORM, normalization='none')
RAVLT_CFG = dict(type='RAVLT', arch=RAVLT_ARCH)
#: case -> (source fixture, edit, true backbone config, whether the file is a classifier)
# yapf: disable
CASES = {
    'soft': ('soft_custom_timm.pth', None, SOFT_PLAIN, True),
    'soft_norm': ('soft_norm_custom_timm.pth', None, SOFT_NORM, True),
    'soft_no_arch_entry': ('soft_custom_timm.pth', 'drop_entry', SOFT_PLAIN, True),
    'soft_norm_entry_of_released_variant':
        ('soft_norm_custom_timm.pth', 'entry_soft_norm_tiny', SOFT_NORM, True),
    'soft_norm_stage2_one_block':
        ('soft_norm_custom_timm.pth', 'drop_block3.1.',
         dict(SOFT_NORM, arch=dict(SOFT_ARCH, depths=[1, 2, 1, 1])), True),
    'ravlt': ('ravlt_custom_in1k.pth', None, RAVLT_CFG, True),
    'ravlt_det': ('ravlt_custom_det.pth', None, RAVLT_CFG, False),
    'ravlt_stage2_one_block':
        ('ravlt_custom_in1k.pth', 'drop_layers.2.blocks.1.',
         dict(RAVLT_CFG, arch=dict(RAVLT_ARCH, depths=[2, 1, 1, 1])), True),
    'ravlt_no_record': ('ravlt_custom_in1k.pth', 'ours_without_record', RAVLT_CFG, False),
}
# yapf: enable
#: The cases the default suite runs (the reported bugs: SOFT's None heads and final_norm, and a
#: custom RAVLT stage); the slow suite runs every case.
FAST_CASES = {'soft', 'soft_norm', 'soft_norm_stage2_one_block', 'ravlt_stage2_one_block'}


def cases(names):
    return [
        pytest.param(name, marks=() if name in FAST_CASES else pytest.mark.slow, id=name)
        for name in sorted(names)
    ]


#: Cases whose weights cannot show the heads: the line assumes them and says so.
HEADS_ASSUMED = {'ravlt_no_record'}
#: timm model of each kind of weights (the one a user would try first)
TIMM_NAME = {'none': 'soft_tiny', 'core': 'soft_norm_tiny', 'rala': 'ravlt_t'}


def kind(case):
    truth = CASES[case][2]
    return truth.get('normalization', 'rala')


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
    """case -> path of its source file (the fixture itself, or an edited copy)."""
    folder = tmp_path_factory.mktemp('sources')
    paths = {}
    for case, (fixture, edit, _, _) in CASES.items():
        path = osp.join(DATA, fixture)
        if edit is not None:
            checkpoint = load_checkpoint_file(path)
            weights = unwrap_state_dict(checkpoint)
            if edit == 'drop_entry':
                checkpoint = {k: v for k, v in checkpoint.items() if k != 'arch'}
            elif edit.startswith('entry_'):
                checkpoint = dict(checkpoint, arch=edit[len('entry_'):])
            elif edit.startswith('drop_'):
                prefix = edit[len('drop_'):]
                weights = {k: v for k, v in weights.items() if not k.startswith(prefix)}
                checkpoint = {
                    k: v
                    for k, v in checkpoint.items() if k not in ('state_dict', 'state_dict_ema')
                }
                checkpoint['model' if 'model' in checkpoint else 'state_dict_ema'] = weights
            elif edit == 'ours_without_record':
                converted = convert_state_dict(weights).state_dict
                checkpoint = {
                    'state_dict': {
                        k: v
                        for k, v in converted.items() if k != SETTINGS_KEY
                    }
                }
            path = str(folder / f'{case}.pth')
            torch.save(checkpoint, path)
        paths[case] = path
    return paths


@pytest.fixture(scope='module')
def io():
    return {
        name: torch.load(osp.join(DATA, f'{name}_io.pt'), weights_only=True)
        for name in ('soft_custom', 'soft_norm_custom', 'ravlt_custom')
    }


def rel_error(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def literal_after(text, marker):
    """The Python literal that starts right after ``marker`` in ``text``."""
    assert marker in text, (marker, text)
    start = text.index(marker) + len(marker)
    for end in range(start + 1, len(text) + 1):
        if text[end - 1] in '}])\'"':
            try:
                return ast.literal_eval(text[start:end])
            except (SyntaxError, ValueError):
                continue
    raise AssertionError(f'no literal after {marker!r} in {text!r}')


def call_after(text, marker='timm.create_model('):
    """``(args, kwargs)`` of the printed call ``marker ... )``, evaluated as literals."""
    assert marker in text, (marker, text)
    start = text.index(marker) + len(marker)
    for end in range(start, len(text)):
        if text[end] != ')':
            continue
        try:
            call = ast.parse('f(' + text[start:end + 1], mode='eval').body
        except SyntaxError:
            continue
        return ([ast.literal_eval(a) for a in call.args], {
            k.arg: ast.literal_eval(k.value)
            for k in call.keywords
        })
    raise AssertionError(f'no call after {marker!r} in {text!r}')


def stage_outputs(model, x):
    """(backbone outputs, raw stage maps before any output norm)."""
    captured = {}
    hooks = [
        stage.register_forward_hook(lambda mod, inp, out, i=i: captured.__setitem__(i, out))
        for i, stage in enumerate(model.stages)
    ]
    try:
        with torch.no_grad():
            outs = model.eval()(x)
    finally:
        for hook in hooks:
            hook.remove()
    return list(outs), [captured[i] for i in range(len(model.stages))]


def build_backbone(config, checkpoint):
    model = MODELS.build(dict(config, init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
    model.init_weights()
    return model


_REFERENCE = {}


def expected(case, sources, io):
    """(input, backbone outputs or None, raw stage maps) the official code gives for the case.

    Edited stage lists have no official run: there the reference is the backbone of the true
    arch loaded from the same file (the official parity of that path is tested elsewhere)."""
    fixture, edit, truth, _ = CASES[case]
    data = io['ravlt_custom' if truth['type'] == 'RAVLT' else fixture[:-len('_timm.pth')]]
    x = data['single/input']
    if edit is not None and edit.startswith('drop_'):
        if case not in _REFERENCE:
            _REFERENCE[case] = stage_outputs(build_backbone(truth, sources[case]), x)
        return (x, ) + _REFERENCE[case]
    maps = [data[f'single/stage{i}'] for i in range(4)]
    if truth['type'] == 'SOFT':
        return x, maps, maps  # SOFT returns the official stage maps themselves
    if fixture == 'ravlt_custom_det.pth':
        return x, [data[f'single/det_stage{i}'] for i in range(4)], maps
    return x, None, maps  # an ImageNet file has no output norms: only the stage maps are official


def assert_backbone_matches(case, config, checkpoint, sources, io):
    """The printed config builds, loads ``checkpoint`` and gives the official outputs (where the
    file cannot show the heads: once they are set to the true ones)."""
    x, outs_ref, maps_ref = expected(case, sources, io)
    model = build_backbone(config, checkpoint)
    if case in HEADS_ASSUMED:
        config = dict(
            config, arch=dict(config['arch'], num_heads=CASES[case][2]['arch']['num_heads']))
        model = build_backbone(config, checkpoint)
    outs, maps = stage_outputs(model, x)
    tolerance = TOLERANCE[kind(case)]
    for i in range(4):
        assert rel_error(maps[i], maps_ref[i]) < tolerance, (case, 'stage', i)
        if outs_ref is not None:
            assert rel_error(outs[i], outs_ref[i]) < tolerance, (case, 'output', i)


def printed(capsys, prefix):
    out = capsys.readouterr().out.splitlines()
    line = next(x for x in out if x.startswith(prefix))
    return line, out


@pytest.mark.parametrize('case', cases(CASES))
def test_cli_refusal_advice_builds_and_loads_the_source(case, sources, io, tmp_path, capsys):
    """Without --allow-custom the tool refuses, naming the backbone to build: it loads the
    source file itself (init_cfg converts on the fly)."""
    assert convert_checkpoint.main([sources[case], str(tmp_path / 'out.pth')]) == 2
    message = capsys.readouterr().err
    assert 'pass --allow-custom' in message
    if case in HEADS_ASSUMED:
        assert all(f'num_heads[{i}]=' in message for i in range(4)) and 'assumed' in message
    config = literal_after(message, 'build the backbone as ')
    assert_backbone_matches(case, config, sources[case], sources, io)


@pytest.mark.parametrize('case', cases(CASES))
def test_cli_backbone_line_builds_and_loads_the_output(case, sources, io, tmp_path, capsys):
    first, second = str(tmp_path / 'first.pth'), str(tmp_path / 'second.pth')
    assert convert_checkpoint.main([sources[case], first, '--allow-custom']) == 0
    line, out = printed(capsys, 'backbone: ')
    config = ast.literal_eval(line[len('backbone: '):])
    assert 'final_norm' not in config  # the official stage-3 map is taken before that norm
    assert_backbone_matches(case, config, first, sources, io)
    if case in HEADS_ASSUMED:  # heads are not in the weights: the default is named as such
        note = next(x for x in out if x.startswith('check: '))
        assert all(f'num_heads[{i}]' in note for i in range(4)), note
    if case == 'soft_no_arch_entry':
        assert any(x.startswith('check: ') and 'SOFT++' in x for x in out), out
    # The converted file again: the settings record keeps what the shapes cannot show.
    assert convert_checkpoint.main([first, second, '--allow-custom']) == 0
    config = ast.literal_eval(printed(capsys, 'backbone: ')[0][len('backbone: '):])
    assert_backbone_matches(case, config, second, sources, io)


def _timm_advice(name, checkpoint, widths):
    """The error of a first try: the right widths, the wrong depths (a small model to build)."""
    wrong = dict(embed_dims=widths, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1])
    with pytest.raises(CheckpointMismatchError) as info:
        timm.create_model(
            name,
            arch=wrong,
            pretrained=True,
            num_classes=10,
            pretrained_cfg_overlay=dict(file=checkpoint, num_classes=10))
    return str(info.value)


@pytest.mark.parametrize('case', cases(c for c in CASES if CASES[c][3]))
def test_timm_filter_advice_builds_and_loads(case, sources, io, tmp_path, capsys):
    """timm's filter names the create_model call for the file (the official one and ours)."""
    converted = str(tmp_path / 'converted.pth')
    assert convert_checkpoint.main([sources[case], converted, '--allow-custom']) == 0
    capsys.readouterr()
    x, _, maps_ref = expected(case, sources, io)
    for checkpoint in (sources[case], converted):
        message = _timm_advice(TIMM_NAME[kind(case)], checkpoint,
                               CASES[case][2]['arch']['embed_dims'])
        args, kwargs = call_after(message)
        model = timm.create_model(
            *args,
            **kwargs,
            pretrained=True,
            num_classes=10,
            pretrained_cfg_overlay=dict(file=checkpoint, num_classes=10)).eval()
        with torch.no_grad():
            maps = model.forward_intermediates(x, intermediates_only=True)
        for i in range(4):
            assert rel_error(maps[i], maps_ref[i]) < TOLERANCE[kind(case)], (checkpoint, i)


@pytest.mark.parametrize('case', ['soft', 'soft_norm_stage2_one_block', 'ravlt'])
def test_backbone_loader_advice_builds_and_loads(case, sources, io):
    """init_cfg into a backbone of another arch: the error's config / arch fix works as pasted
    (shapes that differ: load_pretrained's message; one stage block too many: the settings
    record's)."""
    truth = CASES[case][2]
    other = 'tiny' if truth['type'] == 'SOFT' else 't'
    with pytest.raises(CheckpointError) as info:
        build_backbone(dict(truth, arch=other), sources[case])
    config = literal_after(str(info.value), 'build the backbone as ')
    assert_backbone_matches(case, config, sources[case], sources, io)
    deeper = dict(
        truth['arch'], depths=[d + (i == 2) for i, d in enumerate(truth['arch']['depths'])])
    with pytest.raises(CheckpointMismatchError) as info:
        build_backbone(dict(truth, arch=deeper), sources[case])
    arch = literal_after(str(info.value), 'set arch=')
    assert_backbone_matches(case, dict(truth, arch=arch), sources[case], sources, io)


def test_stage3_heads_come_from_a_released_arch_entry_else_are_named_as_assumed():
    with torch.device('meta'):
        weights = MODELS.build(dict(type='SOFT', arch='small')).state_dict()
    weights.pop(SETTINGS_KEY)
    named = convert_state_dict(weights, source_arch='soft_norm_small')
    assert named.settings['num_heads'] == [2, 4, 10, 16] and not named.assumed
    assert named.variant == 'small'
    unnamed = convert_state_dict(weights)
    assert unnamed.settings['num_heads'] == [2, 4, 10, None] and unnamed.variant == 'small'
    assert unnamed.assumed.startswith('num_heads[3]=16 (the head size of stage 2, 32) is not')
