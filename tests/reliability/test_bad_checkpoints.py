"""Every bad checkpoint, through every entry point: one clear line, nothing touched, nothing run.

The corpus (:mod:`tests.reliability.corpus`) is generated at test time. Each file goes through the
converter (``tools/convert_checkpoint.py``, in process; the CLI itself is run as a subprocess in
``test_cli_*``), ``init_cfg=dict(type='Pretrained')`` and ``load_from`` (mmengine's
``load_checkpoint`` into a model with the backbone under ``backbone``, what ``Runner``,
``init_detector`` and ``init_model`` call).
"""
import hashlib
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.registry import MODELS
from mmengine.runner.checkpoint import load_checkpoint

import mmlinattn  # noqa: F401
from mmlinattn.utils import checkpoint as checkpoint_errors
from .corpus import build_corpus

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))
import convert_checkpoint  # noqa: E402

CASE_NAMES = [
    'empty.pth', 'truncated_10b.pth', 'truncated_third.pth', 'truncated_half.pth',
    'truncated_end.pth', 'random.pth', 'text.pth', 'pickle_exec.pth', 'torchzip_exec.pth',
    'wrong_family.pth', 'wrong_variant.pth', 'soft_as_softpp.pth', 'softpp_as_soft.pth',
    'official_softpp_as_soft.pth', 'wrong_shape.pth', 'missing_stage.pth'
]


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp('corpus')
    marker = str(folder / 'PAYLOAD_RAN')
    cases = build_corpus(str(folder), marker)
    assert sorted(cases) == sorted(CASE_NAMES)
    yield cases, marker
    assert not osp.exists(marker), 'a checkpoint payload was executed'


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def build(backbone, **extra):
    kind, kwargs = backbone
    return MODELS.build(dict(type=kind, **kwargs, **extra))


def assert_words(text, words):
    for word in words:
        assert word in text, f'{word!r} not in {text!r}'


@pytest.mark.parametrize('name', CASE_NAMES)
def test_converter(corpus, name, tmp_path, capsys):
    cases, marker = corpus
    case = cases[name]
    before = sha256(case.path)
    dst = tmp_path / 'out.pth'
    dst.write_bytes(b'the user\'s previous file')
    rc = convert_checkpoint.main([case.path, str(dst), '--force', *case.convert_args])
    captured = capsys.readouterr()
    assert sha256(case.path) == before
    assert not osp.exists(marker)
    if case.convert is None:  # readable: converted, and it says what it is
        assert rc == 0, captured.err
        meta = torch.load(dst, weights_only=True)['meta']
        for key, value in case.records.items():
            assert meta['settings'][key] == value
        return
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('convert_checkpoint: error: '), captured.err
    assert_words(lines[0], case.convert)
    assert dst.read_bytes() == b'the user\'s previous file'
    assert sorted(os.listdir(tmp_path)) == ['out.pth']  # no temporary file left


@pytest.mark.parametrize('name', CASE_NAMES)
def test_init_cfg_pretrained(corpus, name):
    cases, marker = corpus
    case = cases[name]
    before = sha256(case.path)
    torch.manual_seed(0)
    model = build(case.backbone, init_cfg=dict(type='Pretrained', checkpoint=case.path))
    error, words = case.init_cfg
    with pytest.raises(getattr(checkpoint_errors, error)) as info:
        model.init_weights()
    assert_words(str(info.value), words)
    assert '\n' not in str(info.value)
    assert sha256(case.path) == before and not osp.exists(marker)


class Wrapper(nn.Module):
    """A stand-in detector: the backbone under ``backbone`` and one module of its own."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.neck = nn.Conv2d(2, 2, 1)


@pytest.mark.parametrize('name', CASE_NAMES)
def test_load_from(corpus, name):
    cases, marker = corpus
    case = cases[name]
    before = sha256(case.path)
    torch.manual_seed(0)
    model = Wrapper(build(case.backbone))
    weights = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    error, words = case.load_from
    with pytest.raises(getattr(checkpoint_errors, error)) as info:
        load_checkpoint(model, case.path, map_location='cpu')
    assert_words(str(info.value), words)
    assert '\n' not in str(info.value)
    assert sha256(case.path) == before and not osp.exists(marker)
    for key, value in model.backbone.state_dict().items():  # the backbone is untouched
        assert torch.equal(value, weights[key]), key


@pytest.mark.parametrize('name', ['soft_as_softpp.pth', 'wrong_variant.pth'])
def test_explicit_override_loads_with_a_warning(corpus, name, monkeypatch):
    """``override_checkpoint_settings=True`` is the one deliberate way past a contradiction."""
    from mmlinattn.models.backbones import base
    logged = []
    monkeypatch.setattr(
        base, 'print_log', lambda msg, logger=None, level=20: logged.append((level, msg)))
    cases, _ = corpus
    case = cases[name]
    model = Wrapper(build(case.backbone, override_checkpoint_settings=True))
    load_checkpoint(model, case.path, map_location='cpu')
    assert any(level == 30 and 'because override_checkpoint_settings=True' in msg
               for level, msg in logged), logged


@pytest.mark.slow  # a fresh interpreter (imports mmdet/mmseg): ~5-8 s
def test_cli_one_line_exit_2(corpus, tmp_path):
    """The real command line: no traceback, one line, exit code 2, for a payload and a mismatch."""
    cases, marker = corpus
    for name in ('torchzip_exec.pth', 'wrong_shape.pth'):
        proc = subprocess.run([
            sys.executable, 'tools/convert_checkpoint.py', cases[name].path,
            str(tmp_path / 'out.pth')
        ],
                              cwd=ROOT,
                              capture_output=True,
                              text=True,
                              timeout=300)
        assert proc.returncode == 2 and 'Traceback' not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not osp.exists(marker) and not osp.exists(tmp_path / 'out.pth')
