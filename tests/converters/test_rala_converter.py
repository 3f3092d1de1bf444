"""RALA checkpoint conversion: official layouts, refusals, safe and atomic file handling."""
import hashlib
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch

import mmlinattn  # noqa: F401
from mmlinattn.archs import RAVLT_ARCHS
from mmlinattn.converters import (CheckpointError, common, convert_state_dict, detect_family,
                                  load_checkpoint_file, load_pretrained, unwrap_state_dict)
from mmlinattn.models.backbones.ravlt import RAVLT
from mmlinattn.utils.checkpoint import SETTINGS_KEY

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DATA = osp.join(REPO, 'tests', 'data', 'official')
IN1K = osp.join(DATA, 'ravlt_custom_in1k.pth')
DET = osp.join(DATA, 'ravlt_custom_det.pth')
SOFT = osp.join(DATA, 'soft_custom_timm.pth')
ARCH = dict(embed_dims=[16, 32, 48, 64], depths=[2, 1, 2, 1], num_heads=[2, 2, 4, 4])

sys.path.insert(0, osp.join(REPO, 'tools'))
import convert_checkpoint  # noqa: E402


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_tool(*args):
    return convert_checkpoint.main([str(a) for a in args])


def official_state_dict(path):
    return unwrap_state_dict(load_checkpoint_file(path))


# ------------------------------------------------------------------------------------- layouts


def test_imagenet_file_to_backbone():
    result = convert_state_dict(official_state_dict(IN1K))
    assert (result.family, result.variant, result.source_format) == \
        ('rala', 'custom', 'official-imagenet')
    assert result.arch == dict(ARCH, mlp_ratios=[3.5] * 4)
    keys = set(result.state_dict)
    assert 'stem.0.conv.weight' in keys and 'stem.3.bn.running_var' in keys
    assert 'stages.1.downsample.conv.weight' in keys
    assert 'stages.0.downsample.conv.weight' not in keys
    assert 'stages.2.blocks.1.attn.qkvg.weight' in keys and 'stages.0.blocks.0.cpe.bias' in keys
    assert not any(k.startswith('layers.') for k in keys)
    # The classifier neck and head stay beside the backbone (for the timm classifier).
    assert result.classifier == sorted(
        k for k in official_state_dict(IN1K) if k.startswith(('proj.', 'norm.', 'head.')))
    assert len(result.classifier) == 9
    assert sorted(result.dropped) == [f'layers.{i}.RoPE.angle' for i in range(4)]
    assert (len(result.matched), len(result.missing), len(result.unexpected)) == (169, 8, 0)
    assert all(k.startswith('out_norms.') for k in result.missing)


def test_official_names_map_to_the_same_tensors():
    official = official_state_dict(IN1K)
    ours = convert_state_dict(official).state_dict
    pairs = {
        'patch_embed.proj.9.weight': 'stem.3.conv.weight',
        'patch_embed.proj.4.running_mean': 'stem.1.bn.running_mean',
        'layers.0.downsample.reduction.bias': 'stages.1.downsample.conv.bias',
        'layers.2.downsample.norm.weight': 'stages.3.downsample.bn.weight',
        'layers.1.blocks.0.gamma_2': 'stages.1.blocks.0.layer_scale2',
        'layers.3.blocks.0.norm1.norm.bias': 'stages.3.blocks.0.norm1.bias',
        'layers.0.blocks.1.attn.qkvo.weight': 'stages.0.blocks.1.attn.qkvg.weight',
        'layers.0.blocks.1.pos.weight': 'stages.0.blocks.1.cpe.weight',
        'layers.2.blocks.0.ffn.dwconv.weight': 'stages.2.blocks.0.ffn.dwconv.weight',
    }
    for old, new in pairs.items():
        assert torch.equal(official[old], ours[new]), old


def test_detector_file_backbone_only_and_whole_model():
    state_dict = official_state_dict(DET)
    backbone = convert_state_dict(state_dict)
    assert backbone.source_format == 'official-downstream'
    assert (len(backbone.matched), len(backbone.missing), len(backbone.unexpected)) == (177, 0, 0)
    assert 'neck.lateral_convs.0.conv.weight' in backbone.dropped
    assert torch.equal(backbone.state_dict['out_norms.2.weight'],
                       state_dict['backbone.extra_norms.2.norm.weight'])

    whole = convert_state_dict(state_dict, whole_model=True)
    keys = set(whole.state_dict)
    assert {'neck.lateral_convs.0.conv.weight', 'neck.lateral_convs.0.conv.bias'} <= keys
    assert torch.equal(whole.state_dict['neck.lateral_convs.0.conv.weight'],
                       state_dict['neck.lateral_convs.0.conv.weight'])
    assert 'backbone.stages.0.blocks.0.attn.qkvg.weight' in keys
    assert not any(
        k.startswith('backbone.layers.') or k.startswith('backbone.patch_embed') for k in keys)
    assert len(keys) == 177 + 2 + 1  # backbone, neck, the settings record
    assert (len(whole.matched), len(whole.missing), len(whole.unexpected)) == (177, 0, 0)


def test_whole_model_tool_output_loads_with_backbone_prefix(tmp_path):
    dst = tmp_path / 'det.pth'
    assert run_tool(DET, dst, '--whole-model', '--allow-custom') == 0
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['whole_model'] is True
    model = RAVLT(arch=ARCH, init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()  # finds the backbone. part by itself
    converted = convert_state_dict(official_state_dict(DET)).state_dict
    for key, value in model.state_dict().items():
        assert torch.equal(value, converted[key]), key


def test_our_own_files_are_returned_unchanged(tmp_path):
    dst = tmp_path / 'ours.pth'
    assert run_tool(IN1K, dst, '--allow-custom') == 0
    ours = torch.load(dst, weights_only=True)
    assert ours['meta']['family'] == 'rala' and ours['meta']['variant'] == 'custom'
    assert ours['meta']['converter_version'] == common.CONVERTER_VERSION
    assert ours['meta']['source'] == IN1K
    again = convert_state_dict(ours['state_dict'])
    assert again.source_format == 'mmlinattn' and again.dropped == []
    assert again.state_dict.keys() == ours['state_dict'].keys()
    assert all(again.state_dict[k] is ours['state_dict'][k] for k in again.state_dict
               if k != SETTINGS_KEY)
    assert again.settings == ours['meta']['settings']


@pytest.mark.parametrize('variant', ['t', 's', 'b', 'l'])
def test_variant_inferred_from_shapes(variant):
    with torch.device('meta'):
        state_dict = RAVLT(arch=variant).state_dict()
    result = convert_state_dict(state_dict)
    assert result.variant == variant
    assert result.arch['embed_dims'] == RAVLT_ARCHS.get(variant)['embed_dims']
    assert len(result.matched) == len(state_dict) - 1 and not result.missing  # - the record


def test_detect_family():
    assert detect_family(official_state_dict(IN1K)) == 'rala'
    assert detect_family(official_state_dict(DET)) == 'rala'
    assert detect_family(official_state_dict(SOFT)) == 'soft'
    with pytest.raises(CheckpointError, match='no known model family'):
        detect_family({'conv.weight': torch.zeros(1)})


# ------------------------------------------------------------------------------------ refusals


def refused(capsys, *args):
    code = run_tool(*args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and '\n' not in err and 'Traceback' not in err
    return err


def test_refuses_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    text = tmp_path / 'notes.pth'
    text.write_text('these are not weights\n')
    assert 'not a PyTorch checkpoint' in refused(capsys, text, tmp_path / 'out.pth')
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    assert 'empty file (0 bytes)' in refused(capsys, empty, tmp_path / 'out.pth')
    assert 'no such file' in refused(capsys, tmp_path / 'missing.pth', tmp_path / 'out.pth')
    assert not (tmp_path / 'out.pth').exists()


def test_refuses_a_truncated_file(tmp_path, capsys):
    truncated = tmp_path / 'truncated.pth'
    data = open(IN1K, 'rb').read()
    truncated.write_bytes(data[:len(data) // 2])
    assert 'truncated or corrupt' in refused(capsys, truncated, tmp_path / 'out.pth')


def test_refuses_pickled_code(tmp_path, capsys):
    import argparse
    unsafe = tmp_path / 'unsafe.pth'
    torch.save({'model': {'w': torch.zeros(1)}, 'parser': argparse.ArgumentParser}, unsafe)
    message = refused(capsys, unsafe, tmp_path / 'out.pth')
    assert 'unsafe checkpoint: it references argparse.ArgumentParser' in message


def test_refuses_a_soft_file_given_as_rala(tmp_path, capsys):
    err = refused(capsys, SOFT, tmp_path / 'out.pth', '--family', 'rala')
    assert 'this is a SOFT checkpoint' in err and 'not RALA' in err and '--family soft' in err
    with pytest.raises(CheckpointError, match='SOFT checkpoint'):
        load_pretrained(RAVLT(arch=ARCH), SOFT, family='rala')


def test_refuses_an_unknown_variant(tmp_path, capsys):
    err = refused(capsys, IN1K, tmp_path / 'out.pth')
    assert 'unknown variant' in err and '--allow-custom' in err and "'embed_dims': [16, 32" in err
    incomplete = {
        k: v
        for k, v in official_state_dict(IN1K).items() if not k.startswith('layers.3.blocks')
    }
    path = tmp_path / 'incomplete.pth'
    torch.save({'model': incomplete}, path)
    err = refused(capsys, path, tmp_path / 'out.pth', '--allow-custom')
    assert 'unknown variant: stage 3 has no complete block list' in err


def test_refuses_a_foreign_rope_buffer(tmp_path, capsys):
    state_dict = official_state_dict(IN1K)
    state_dict['layers.1.RoPE.angle'] = 1.0 / 10000**(torch.arange(8) // 2 / 4)  # i/m schedule
    path = tmp_path / 'other_rope.pth'
    torch.save({'model': state_dict}, path)
    err = refused(capsys, path, tmp_path / 'out.pth', '--allow-custom')
    assert 'layers.1.RoPE.angle does not hold the RoPE frequencies' in err


def test_refuses_whole_model_for_an_imagenet_file(tmp_path, capsys):
    err = refused(capsys, IN1K, tmp_path / 'out.pth', '--whole-model', '--allow-custom')
    assert '--whole-model needs a detector/segmentor checkpoint' in err


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    dst = tmp_path / 'out.pth'
    dst.write_bytes(b'precious')
    assert 'exists; pass --force' in refused(capsys, IN1K, dst, '--allow-custom')
    assert dst.read_bytes() == b'precious'
    assert run_tool(IN1K, dst, '--allow-custom', '--force') == 0
    assert 'stem.0.conv.weight' in torch.load(dst, weights_only=True)['state_dict']
    assert 'is the source file' in refused(capsys, dst, dst, '--allow-custom', '--force')


@pytest.mark.slow  # a fresh interpreter (imports mmdet/mmseg): ~5-8 s
def test_refusal_is_one_line_from_the_command_line(tmp_path):
    out = subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools', 'convert_checkpoint.py'), SOFT,
        str(tmp_path / 'out.pth'), '--family', 'rala'
    ],
                         capture_output=True,
                         text=True,
                         timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().count('\n') == 0 and 'SOFT checkpoint' in out.stderr


# -------------------------------------------------------------------------- files and loading


def test_source_is_never_modified(tmp_path):
    src = tmp_path / 'src.pth'
    shutil.copy(IN1K, src)
    before, mtime = sha256(src), os.stat(src).st_mtime_ns
    assert run_tool(src, tmp_path / 'out.pth', '--allow-custom') == 0
    load_pretrained(RAVLT(arch=ARCH), str(src))
    assert sha256(src) == before and os.stat(src).st_mtime_ns == mtime


def test_write_is_atomic(tmp_path, monkeypatch):
    dst = tmp_path / 'out.pth'
    dst.write_bytes(b'old contents')

    def failing_save(obj, f):
        f.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(common.torch, 'save', failing_save)
    with pytest.raises(CheckpointError, match='cannot write .*disk full; nothing was written'):
        common.save_checkpoint(str(dst), {'w': torch.zeros(1)}, {}, force=True)
    assert dst.read_bytes() == b'old contents'
    assert sorted(os.listdir(tmp_path)) == ['out.pth']  # no temporary file left behind
    monkeypatch.undo()
    common.save_checkpoint(str(dst), {'w': torch.ones(2)}, {'family': 'rala'}, force=True)
    saved = torch.load(dst, weights_only=True)
    assert torch.equal(saved['state_dict']['w'], torch.ones(2)) and sorted(os.listdir(tmp_path)) \
        == ['out.pth']


def test_unwrap_order_and_module_prefix():
    w = torch.zeros(1)
    assert unwrap_state_dict({'model': {'a': w}, 'state_dict': {'b': w}}).keys() == {'a'}
    assert unwrap_state_dict({'state_dict_ema': {'module.c': w}}).keys() == {'c'}
    assert unwrap_state_dict({'x.weight': w}).keys() == {'x.weight'}
    with pytest.raises(CheckpointError, match='no tensors found'):
        unwrap_state_dict({'epoch': 3})


def test_init_cfg_pretrained_loads_the_official_imagenet_file():
    model = RAVLT(arch=ARCH, init_cfg=dict(type='Pretrained', checkpoint=IN1K))
    model.init_weights()
    converted = convert_state_dict(official_state_dict(IN1K)).state_dict
    for key, value in model.state_dict().items():
        if key.startswith('out_norms.'):  # not in ImageNet files: from-scratch init
            expected = torch.ones_like(value) if key.endswith('weight') else torch.zeros_like(value)
            assert torch.equal(value, expected), key
        else:
            assert torch.equal(value, converted[key]), key


def test_init_cfg_pretrained_refuses_another_variant():
    model = RAVLT(
        arch=dict(ARCH, embed_dims=[16, 32, 48, 96]),
        init_cfg=dict(type='Pretrained', checkpoint=IN1K))
    with pytest.raises(CheckpointError, match=r'does not fit this RAVLT: .* differ in shape'):
        model.init_weights()
