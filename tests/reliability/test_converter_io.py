"""The converter's inputs and outputs: a directory, write failures, and the printed backbone."""
import ast
import errno
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.registry import MODELS

import mmlinattn  # noqa: F401
from mmlinattn.converters import common

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DATA = osp.join(ROOT, 'tests', 'data', 'official')
sys.path.insert(0, osp.join(ROOT, 'tools'))
import convert_checkpoint  # noqa: E402

SRC = osp.join(DATA, 'soft_norm_custom_timm.pth')


def refusal(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('convert_checkpoint: error: '), err
    return err[0]


def test_source_is_a_directory(tmp_path, capsys):
    assert convert_checkpoint.main([str(tmp_path), str(tmp_path / 'out.pth')]) == 2
    assert 'is a directory; give the checkpoint file inside it' in refusal(capsys)


def test_destination_is_a_directory_even_with_force(tmp_path, capsys):
    (tmp_path / 'out').mkdir()
    assert convert_checkpoint.main([SRC, str(tmp_path / 'out'), '--allow-custom', '--force']) == 2
    assert 'is a directory; give a file name for the output' in refusal(capsys)
    assert os.listdir(tmp_path / 'out') == []


@pytest.mark.parametrize('dst', ['/proc/mmlinattn/out.pth', 'FILE/sub/out.pth'])
def test_destination_that_cannot_be_created(tmp_path, capsys, dst):
    (tmp_path / 'FILE').write_text('a file, not a folder')
    dst = dst.replace('FILE', str(tmp_path / 'FILE'))
    assert convert_checkpoint.main([SRC, dst, '--allow-custom']) == 2
    assert f'cannot write {dst}' in refusal(capsys)
    assert not osp.exists(dst)


@pytest.mark.parametrize('failure', ['permission', 'disk_full'])
def test_write_failure_leaves_no_trace(tmp_path, capsys, monkeypatch, failure):
    dst = tmp_path / 'out.pth'
    dst.write_bytes(b'previous contents')
    real_save = torch.save

    def failing_save(obj, f):
        if failure == 'permission':
            raise PermissionError(errno.EACCES, 'Permission denied')
        f.write(b'half a checkpoint')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(common.torch, 'save', failing_save)
    assert convert_checkpoint.main([SRC, str(dst), '--allow-custom', '--force']) == 2
    message = refusal(capsys)
    assert ('Permission denied' if failure == 'permission' else 'no space left on the device') \
        in message and 'nothing was written' in message
    assert dst.read_bytes() == b'previous contents'
    assert os.listdir(tmp_path) == ['out.pth']
    monkeypatch.setattr(common.torch, 'save', real_save)


@pytest.mark.parametrize('name', ['ravlt_custom_in1k.pth', 'soft_norm_custom_timm.pth'])
def test_printed_backbone_builds_and_loads_when_pasted(name, tmp_path, capsys):
    """The converter's ``backbone: {...}`` line is a config entry that works as printed (it used
    to lack num_heads for our own files)."""
    first, second = tmp_path / 'first.pth', tmp_path / 'second.pth'
    assert convert_checkpoint.main([osp.join(DATA, name), str(first), '--allow-custom']) == 0
    capsys.readouterr()
    # Converting our own file again: the record keeps what the shapes cannot show.
    assert convert_checkpoint.main([str(first), str(second), '--allow-custom']) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith('backbone: '))
    config = ast.literal_eval(line[len('backbone: '):])
    assert 'num_heads' in config['arch']
    model = MODELS.build(dict(config, init_cfg=dict(type='Pretrained', checkpoint=str(second))))
    model.init_weights()
    saved = torch.load(second, weights_only=True)['state_dict']
    for key, value in model.state_dict().items():
        if key in saved and key != '_extra_state':
            assert torch.equal(value, saved[key]), key


def test_setup_script_help_prints_usage_and_runs_nothing():
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'setup_env.sh'), '--help'],
                          capture_output=True,
                          text=True,
                          timeout=60,
                          env=dict(os.environ, PYTHON='/nonexistent/python'))
    assert proc.returncode == 0 and proc.stdout.startswith('usage: bash tools/setup_env.sh')
    assert '[setup]' not in proc.stderr
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'setup_env.sh'), '--bogus'],
                          capture_output=True,
                          text=True,
                          timeout=60)
    assert proc.returncode == 2 and "unknown argument '--bogus'" in proc.stderr


def test_inference_apis_refuse_an_unsafe_file_and_name_the_global(tmp_path, demo_checkpoints):
    from mmdet.apis import init_detector
    from mmseg.apis import init_model

    from mmlinattn.utils.checkpoint import UnsafeCheckpointError
    unsafe = tmp_path / 'unsafe.pth'
    torch.save({'state_dict': {}, 'run': os.system}, unsafe)
    for init, task in ((init_detector, 'det'), (init_model, 'seg')):
        with pytest.raises(UnsafeCheckpointError, match='references posix.system'):
            init(demo_checkpoints[task][0], str(unsafe), device='cpu')
