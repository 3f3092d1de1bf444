"""Official SOFT / SOFT-Norm checkpoints -> SOFT keys: key map, inference, refusals, CLI."""
import argparse
import importlib.util
import os.path as osp

import pytest
import torch

import mmlinattn  # noqa: F401
from mmlinattn.converters import (CheckpointError, checkpoint_arch, convert_state_dict,
                                  detect_family, load_checkpoint_file, unwrap_state_dict)
from mmlinattn.converters.soft import convert_soft_state_dict, infer_soft_arch
from mmlinattn.models.backbones.soft import SOFT
from mmlinattn.utils.checkpoint import SETTINGS_KEY


def soft_checkpoint_weights(checkpoint):
    return unwrap_state_dict(checkpoint), checkpoint_arch(checkpoint)


def convert_soft(state_dict, **kwargs):
    return convert_state_dict(state_dict, family='soft', **kwargs)


DATA = osp.join(osp.dirname(osp.dirname(__file__)), 'data', 'official')
ROOT = osp.dirname(osp.dirname(osp.dirname(__file__)))
FIXTURE_ARCH = dict(embed_dims=[16, 24, 32, 48], depths=[1, 2, 2, 1], num_heads=[2, 2, 2, 3])


@pytest.fixture(scope='module')
def official():
    return load_checkpoint_file(osp.join(DATA, 'soft_custom_timm.pth'))


@pytest.fixture(scope='module')
def official_weights(official):
    return soft_checkpoint_weights(official)[0]


def test_key_map_is_complete_and_loads_strictly(official_weights):
    converted = convert_soft_state_dict(official_weights)
    # 155 official entries - head (2) - q/kv fused into qkv (2) + pos_embed4 split into two (1)
    assert len(official_weights) == 155 and len(converted) == 152
    assert 'head.weight' not in converted and 'norm.weight' in converted
    model = SOFT(arch=FIXTURE_ARCH, final_norm=True)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert missing == [SETTINGS_KEY] and unexpected == []  # the pure key map adds no record
    qkv = converted['stages.3.blocks.0.attn.qkv.weight']
    assert torch.equal(qkv[:48], official_weights['block4.0.attn.q.weight'])
    assert torch.equal(qkv[48:], official_weights['block4.0.attn.kv.weight'])
    pos = official_weights['pos_embed2']  # (1, 28 * 28, C)
    assert torch.equal(converted['stages.1.pos_embed'][0, :, 3, 5], pos[0, 3 * 28 + 5])
    assert torch.equal(converted['stages.3.cls_pos_embed'], official_weights['pos_embed4'][:, :1])


def test_key_map_is_idempotent(official_weights):
    converted = convert_soft_state_dict(official_weights)
    again = convert_soft_state_dict(converted)
    assert again.keys() == converted.keys()
    assert all(again[k] is converted[k] for k in converted)


def test_unknown_official_key_is_refused(official_weights):
    weights = dict(official_weights, **{'block1.0.att.mha.attn.extra.weight': torch.zeros(1)})
    with pytest.raises(KeyError, match='attn.extra.weight'):
        convert_soft_state_dict(weights)
    with pytest.raises(CheckpointError, match='not an official SOFT classifier'):
        convert_soft(weights)


def test_timm_file_prefers_ema_and_strips_module(official_weights):
    ema = {f'module.{k}': v + 1 for k, v in official_weights.items()}
    checkpoint = {
        'state_dict': official_weights,
        'state_dict_ema': ema,
        'arch': 'soft_norm_custom',
        'args': argparse.Namespace(model='x')
    }
    weights, arch = soft_checkpoint_weights(checkpoint)
    assert arch == 'soft_norm_custom'
    assert torch.equal(weights['cls_token'], official_weights['cls_token'] + 1)
    weights, arch = soft_checkpoint_weights({'model': official_weights})
    assert arch is None and weights.keys() == official_weights.keys()
    with pytest.raises(CheckpointError, match='no tensors found'):
        soft_checkpoint_weights({'epoch': 3})


@pytest.mark.parametrize('name,norm', [('soft_custom_timm.pth', False),
                                       ('soft_norm_custom_timm.pth', True)])
def test_soft_and_soft_norm_differ_only_in_the_arch_entry(name, norm):
    checkpoint = load_checkpoint_file(osp.join(DATA, name))
    weights, arch = soft_checkpoint_weights(checkpoint)
    assert arch.startswith('soft_norm') == norm
    result = convert_soft(weights, source_arch=arch)
    assert result.variant == 'custom' and result.arch == FIXTURE_ARCH
    assert result.settings['normalization'] == ('core' if norm else 'none')
    # The final norm belongs to the classifier: the official stage-3 map is taken before it.
    assert result.classifier == ['head.bias', 'head.weight', 'norm.bias', 'norm.weight']
    assert result.dropped == [] and not result.build_kwargs['final_norm']
    assert not result.missing and not result.unexpected and not result.mismatched


def test_released_variant_names_and_norm_suffix():
    with torch.device('meta'):
        ours = SOFT(arch='small').state_dict()
    ours.pop(SETTINGS_KEY)
    result = convert_soft(ours, source_arch='soft_norm_small')
    assert result.variant == 'small' and result.source_format == 'mmlinattn'
    assert result.settings['normalization'] == 'core'
    assert convert_soft(ours).settings.get('normalization') is None
    with pytest.raises(CheckpointError, match="arch entry 'rala_t' is not a SOFT model"):
        convert_soft(ours, source_arch='rala_t')


def test_depths_are_read_from_the_keys(official_weights):
    # Add a third stage-2 block (as in the official soft_small code config vs its README model).
    weights = dict(official_weights)
    weights.update({
        k.replace('block3.1.', 'block3.2.'): v
        for k, v in official_weights.items() if k.startswith('block3.1.')
    })
    arch, kwargs, settings = infer_soft_arch(convert_soft_state_dict(weights))
    assert arch['depths'] == [1, 2, 3, 1] and convert_soft(weights).variant == 'custom'
    assert kwargs['landmark_ratios'] == [8, 4, 2] and kwargs['local_kernel_sizes'] == [9, 5, 3]
    assert kwargs['pretrain_img_size'] == 224 and kwargs['final_norm']
    assert settings['num_heads'] == [2, 2, 2, None]


def test_incomplete_structure_is_refused(official_weights):
    weights = {k: v for k, v in official_weights.items() if not k.startswith('block2.0.')}
    with pytest.raises(CheckpointError, match='stage 1 has no complete block list'):
        convert_soft(weights)


def test_mixed_layouts_are_refused(official_weights):
    mixed = dict(official_weights, **{'stages.0.blocks.0.norm1.weight': torch.zeros(16)})
    with pytest.raises(CheckpointError, match='mixes official SOFT keys and mmlinattn SOFT keys'):
        convert_soft(mixed)


def test_family_detection_and_cross_family_refusals(official):
    soft_weights = unwrap_state_dict(official)
    assert detect_family(soft_weights) == 'soft'
    assert convert_state_dict(soft_weights).family == 'soft'
    rala_weights = unwrap_state_dict(load_checkpoint_file(osp.join(DATA, 'ravlt_custom_in1k.pth')))
    with pytest.raises(CheckpointError, match='this is a RALA checkpoint .* not SOFT'):
        convert_state_dict(rala_weights, family='soft')
    with pytest.raises(CheckpointError, match='this is a SOFT checkpoint .* not RALA'):
        convert_state_dict(soft_weights, family='rala')
    with pytest.raises(CheckpointError, match='this is a RALA checkpoint'):
        convert_soft(rala_weights)


def test_whole_model_keeps_neck_and_heads():
    with torch.device('meta'):
        backbone = SOFT(arch='tiny').state_dict()
    detector = {
        **{
            f'backbone.{k}': v
            for k, v in backbone.items()
        }, 'neck.lateral_convs.0.conv.weight': torch.zeros(1)
    }
    assert detect_family(detector) == 'soft'
    result = convert_soft(detector, whole_model=True)
    assert 'neck.lateral_convs.0.conv.weight' in result.state_dict
    assert result.variant == 'tiny' and not result.missing and not result.unexpected
    result = convert_soft(detector)
    assert result.dropped == ['neck.lateral_convs.0.conv.weight']
    with pytest.raises(CheckpointError, match='--whole-model needs a detector/segmentor'):
        convert_soft(backbone, whole_model=True)


def test_pretrained_rala_file_is_refused_by_soft():
    model = SOFT(
        arch=FIXTURE_ARCH,
        init_cfg=dict(type='Pretrained', checkpoint=osp.join(DATA, 'ravlt_custom_in1k.pth')))
    with pytest.raises(CheckpointError, match='RALA checkpoint'):
        model.init_weights()


def test_pretrained_variant_mismatch_is_refused():
    model = SOFT(
        arch='tiny',
        init_cfg=dict(type='Pretrained', checkpoint=osp.join(DATA, 'soft_custom_timm.pth')))
    with pytest.raises(CheckpointError, match='does not fit this SOFT'):
        model.init_weights()


def _convert_tool():
    spec = importlib.util.spec_from_file_location('convert_checkpoint',
                                                  osp.join(ROOT, 'tools', 'convert_checkpoint.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_converts_official_file(tmp_path, capsys):
    tool = _convert_tool()
    src, dst = osp.join(DATA, 'soft_norm_custom_timm.pth'), str(tmp_path / 'soft.pth')
    assert tool.main([src, dst]) == 2  # custom arch needs --allow-custom
    assert 'unknown variant' in capsys.readouterr().err
    assert tool.main([src, dst, '--allow-custom']) == 0
    assert tool.main([src, dst, '--family', 'rala']) == 2
    assert 'this is a SOFT checkpoint' in capsys.readouterr().err
    model = SOFT(arch=FIXTURE_ARCH, norm=True, init_cfg=dict(type='Pretrained', checkpoint=dst))
    model.init_weights()
    io = torch.load(osp.join(DATA, 'soft_norm_custom_io.pt'), weights_only=True)
    with torch.no_grad():
        out = model.eval()(io['single/input'])[2]
    assert ((out - io['single/stage2']).abs().max() / io['single/stage2'].abs().max()) < 1e-4


def test_shared_path_uses_ema_weights_and_the_arch_entry(tmp_path, official_weights):
    """The tool and init_cfg go through unwrap_state_dict/convert_state_dict: EMA and arch count."""
    from mmlinattn.converters import checkpoint_arch, load_pretrained
    plain = {k: torch.zeros_like(v) for k, v in official_weights.items()}
    path = tmp_path / 'timm_saver.pth'
    torch.save(
        {
            'state_dict': plain,
            'state_dict_ema': official_weights,
            'arch': 'soft_norm_custom',
            'args': argparse.Namespace(model='soft_norm_custom')
        }, path)
    loaded = load_checkpoint_file(str(path))
    assert checkpoint_arch(loaded) == 'soft_norm_custom'
    result = convert_state_dict(unwrap_state_dict(loaded), source_arch=checkpoint_arch(loaded))
    key = 'stages.3.blocks.0.attn.qkv.weight'
    assert torch.equal(result.state_dict[key][:48], official_weights['block4.0.attn.q.weight'])
    model = SOFT(arch=FIXTURE_ARCH, final_norm=True, norm=True)
    load_pretrained(model, str(path))
    torch.testing.assert_close(model.state_dict()[key][:48],
                               official_weights['block4.0.attn.q.weight'])
    rala = unwrap_state_dict(load_checkpoint_file(osp.join(DATA, 'ravlt_custom_in1k.pth')))
    with pytest.raises(CheckpointError, match='not a RAVLT'):
        convert_state_dict(rala, source_arch='soft_norm_custom')
