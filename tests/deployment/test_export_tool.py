"""tools/deployment/export_onnx.py: a whole UperNet and the shipped SOFT configs exported and
verified; mistakes refused in one line with exit code 2; the speed-comparison helper."""
import glob
import importlib.util
import os.path as osp
import sys

import numpy as np
import pytest
import torch

from mmlinattn.deployment.onnx import benchmark_backbone, build_model, compare_outputs
from mmlinattn.models.backbones.ravlt import RAVLT
from mmlinattn.ops import soft
from mmlinattn.utils.run_config import UserInputError, load_config
from .conftest import RAVLT_TINY, TOLERANCE

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
UPERNET = osp.join(ROOT, 'configs', 'upernet_ravlt_t_demo.py')
SOFT_FPN = osp.join(ROOT, 'configs', 'fpn_soft_t_ade20k.py')
SOFT_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*soft*.py')))


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'export_onnx_tool', osp.join(ROOT, 'tools', 'deployment', 'export_onnx.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = load_tool()


def run(capsys, *argv):
    code = TOOL.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv):
    """Exit code 2 and exactly one line on stderr; returns that line."""
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('export_onnx: error: '), err
    return lines[0]


def assert_verified(out):
    """The tool's report: checked at the export size, at 83 x 55 (batch 2) and on the 400 x 600
    photograph, each within the tolerance, nothing traced as a constant."""
    assert 'traced as a constant' not in out
    checks = [line for line in out.splitlines() if 'max-normalised' in line and ': max abs' in line]
    assert [c.split(':')[0].strip()
            for c in checks] == ['random 1x3x64x64', 'random 2x3x83x55', 'coffee 1x3x400x600']
    for line in checks:
        assert float(line.rsplit(' ', 1)[1]) <= TOLERANCE, line
    assert out.rstrip().endswith('verify: ok')


@pytest.mark.slow  # the default suite exports segmentors whole in test_onnx_models.py
def test_upernet_whole_model_dynamic_verified(capsys, tmp_path):
    """Exported at 64 x 64 (and simplified), checked at two other sizes."""
    out_file = tmp_path / 'sub' / 'upernet.onnx'
    code, out, err = run(capsys, UPERNET, '--out', out_file, '--shape', 64, 64, '--dynamic',
                         '--part', 'model', '--verify', '--simplify')
    assert code == 0, err
    assert 'no --checkpoint: random weights (seed 0)' in out
    assert 'outputs: logits' in out
    assert_verified(out)


def test_shipped_soft_config_exports_verified(capsys, tmp_path):
    """The SOFT++ Tiny backbone of a shipped config as it was trained (pinv_mode='shifted_inverse',
    max_landmarks=256), random weights; the photograph has 216 landmarks in stage 0."""
    code, out, err = run(capsys, SOFT_FPN, '--out', tmp_path / 'soft.onnx', '--shape', 64, 64,
                         '--dynamic', '--verify')
    assert code == 0, err
    assert_verified(out)


@pytest.mark.slow
@pytest.mark.parametrize('config', SOFT_CONFIGS, ids=[osp.basename(c) for c in SOFT_CONFIGS])
def test_every_shipped_soft_config_exports_verified(config, capsys, tmp_path):
    """The backbone of each, as trained; 11-89 s per config (Large the slowest), about 17 min for
    all 24 on 2 shared cores."""
    assert len(SOFT_CONFIGS) == 24
    code, out, err = run(capsys, config, '--out', tmp_path / 'soft.onnx', '--shape', 64, 64,
                         '--dynamic', '--verify')
    assert code == 0, err
    assert_verified(out)


def test_verify_fails_above_the_tolerance(capsys, tmp_path):
    code, out, err = run(capsys, UPERNET, '--out', tmp_path / 'b.onnx', '--shape', 64, 64,
                         '--verify', '--tolerance', 1e-12)
    assert code == 1
    assert 'verify failed' in err and 'coffee 1x3x64x64' in out


def test_unknown_part(capsys, tmp_path):
    line = refused(capsys, UPERNET, '--out', tmp_path / 'x.onnx', '--part', 'head')
    assert "unknown --part 'head'; choose one of ['backbone', 'model']" in line


def test_config_without_backbone(capsys, tmp_path):
    config = tmp_path / 'no_backbone.py'
    config.write_text("default_scope = 'mmseg'\nmodel = dict(type='EncoderDecoder')\n")
    line = refused(capsys, config, '--out', tmp_path / 'x.onnx')
    assert 'defines no model.backbone' in line


def test_checkpoint_that_does_not_fit(capsys, tmp_path):
    other = RAVLT(arch=RAVLT_TINY)  # the demo config's RAVLT is wider
    checkpoint = tmp_path / 'other.pth'
    torch.save({'state_dict': {
        f'backbone.{k}': v
        for k, v in other.state_dict().items()
    }}, checkpoint)
    line = refused(capsys, UPERNET, '--checkpoint', checkpoint, '--out', tmp_path / 'x.onnx')
    assert str(checkpoint) in line


def test_checkpoints_whole_model_and_backbone(tmp_path):
    cfg = load_config(UPERNET)
    trained, _ = build_model(cfg, seed=1)
    whole, backbone = tmp_path / 'whole.pth', tmp_path / 'backbone.pth'
    torch.save({'state_dict': trained.state_dict()}, whole)
    torch.save({'state_dict': trained.backbone.state_dict()}, backbone)
    model, source = build_model(cfg, str(whole))
    assert source.endswith('whole model')
    expected = trained.state_dict()
    assert all(
        torch.equal(v, expected[k]) for k, v in model.state_dict().items()
        if not k.endswith('_extra_state'))
    model, source = build_model(cfg, str(backbone))
    assert 'backbone weights' in source
    assert torch.equal(model.backbone.stem[0].conv.weight, trained.backbone.stem[0].conv.weight)
    # weights of another head: one line naming the first tensor that does not fit
    other = load_config(UPERNET, {'model.decode_head.num_classes': 7})
    with pytest.raises(UserInputError, match='does not fit the config.s model: .*conv_seg'):
        build_model(other, str(whole))


def test_missing_checkpoint_file(capsys, tmp_path):
    line = refused(capsys, UPERNET, '--checkpoint', tmp_path / 'nope.pth', '--out',
                   tmp_path / 'x.onnx')
    assert 'does not exist' in line


def test_missing_onnxruntime_names_the_extra(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # import onnxruntime -> ImportError
    line = refused(capsys, UPERNET, '--out', tmp_path / 'x.onnx')
    assert 'onnxruntime is not installed' in line and 'pip install -e .[deploy]' in line


def test_landmarks_beyond_the_exported_inverse_are_refused(capsys, tmp_path, monkeypatch):
    """pinv_mode='shifted_inverse' exports as a Newton-Schulz iteration converged up to 4096
    landmarks; with the bound lowered to 8, the 9 landmarks of a 96 x 96 input are refused,
    naming the config key that bounds them."""
    monkeypatch.setattr(soft, 'SHIFTED_INVERSE_EXPORT_MAX_SIZE', 8)
    line = refused(capsys, SOFT_FPN, '--out', tmp_path / 'x.onnx', '--shape', 96, 96)
    assert 'covers up to 8 landmarks, and this input has 9' in line
    assert 'model.backbone.max_landmarks' in line
    assert not (tmp_path / 'x.onnx').exists()


def test_comparison_counts_nan_as_a_mismatch():
    reference = [torch.tensor([1.0, float('nan'), 3.0])]
    assert compare_outputs(reference, [np.array([1.0, np.nan, 3.0])]).max_normalised == 0
    worst = compare_outputs(reference, [np.array([np.nan, np.nan, 3.0])]).max_normalised
    assert worst == float('inf') and worst > TOLERANCE


def test_benchmark_helper_times_both_and_profiles(tmp_path):
    backbone = RAVLT(arch=RAVLT_TINY).eval()
    result = benchmark_backbone(
        backbone, (64, 96),
        threads=1,
        repeats=2,
        warmup=1,
        top_ops=5,
        profile=True,
        workdir=str(tmp_path))
    assert result.shape == (64, 96) and result.threads == 1
    assert len(result.torch_runs) == len(result.ort_runs) == 2
    assert result.torch_s > 0 and result.ort_s > 0 and result.ratio > 0
    assert result.max_normalised <= TOLERANCE
    ops = [op for op, _, _ in result.top_ops]
    assert 0 < len(ops) <= 5 and ('Conv' in ops or 'MatMul' in ops)
    assert all(seconds >= 0 and 0 <= share <= 1 for _, seconds, share in result.top_ops)
    assert torch.get_num_threads() >= 1


@pytest.mark.parametrize('argv', [['--shape', '16', '64']])
def test_too_small_shape(capsys, tmp_path, argv):
    line = refused(capsys, UPERNET, '--out', tmp_path / 'x.onnx', *argv)
    assert 'at least 32 px' in line
