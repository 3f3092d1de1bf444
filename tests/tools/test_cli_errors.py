"""Mistakes before a run starts: one line naming what is missing and the command that fixes it."""
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET_DEMO = osp.join(ROOT, 'configs', 'maskrcnn_ravlt_t_demo.py')
SEG_DEMO = osp.join(ROOT, 'configs', 'upernet_ravlt_t_demo.py')


def run_tool(tool, *args):
    """Run a tool's ``main`` in this process (the command-line path is exercised by
    ``test_command_line_is_one_line``); returns (exit code, stdout, stderr)."""
    import contextlib
    import importlib.util
    import io
    spec = importlib.util.spec_from_file_location(f'cli_{osp.basename(tool)[:-3]}',
                                                  osp.join(ROOT, tool))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = module.main(list(args))
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.slow  # a fresh interpreter (imports mmdet/mmseg): ~5-8 s
def test_command_line_is_one_line():
    proc = subprocess.run([sys.executable, 'tools/train.py', 'configs/maskrcnn_ravlt_t_dmeo.py'],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert_one_line_error(proc.returncode, proc.stderr, 'not found')


def assert_one_line_error(rc, err, *needles):
    assert rc == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith('error: ')
    assert 'Traceback' not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_config_typo_suggests_the_right_name():
    rc, _, err = run_tool('tools/train.py', 'configs/maskrcnn_ravlt_t_dmeo.py')
    assert_one_line_error(rc, err, 'not found', 'maskrcnn_ravlt_t_demo.py')


@pytest.mark.parametrize('config', [DET_DEMO, SEG_DEMO], ids=['det', 'seg'])
def test_missing_data_root_names_the_generator(tmp_path, config):
    missing = str(tmp_path / 'nowhere' / 'demo') + '/'
    rc, _, err = run_tool('tools/train.py', config, '--work-dir', str(tmp_path / 'w'),
                          '--cfg-options', f'train_dataloader.dataset.data_root={missing}')
    assert_one_line_error(rc, err, 'does not exist', 'tools/make_demo_data.py')


def test_missing_coco_names_the_download(tmp_path):
    rc, _, err = run_tool('tools/train.py', DET_DEMO, '--work-dir', str(tmp_path / 'w'),
                          '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path}/coco/')
    assert_one_line_error(rc, err, 'does not exist', 'COCO')


def test_unset_dataset(tmp_path):
    cfg = tmp_path / 'no_data.py'
    cfg.write_text("default_scope = 'mmdet'\nmodel = dict(type='MaskRCNN')\n"
                   "train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)\n")
    rc, _, err = run_tool('tools/train.py', str(cfg), '--work-dir', str(tmp_path / 'w'))
    assert_one_line_error(rc, err, 'train_dataloader', 'configs/*_demo.py')


def test_test_tool_missing_checkpoint(tmp_path):
    rc, _, err = run_tool('tools/test.py', DET_DEMO, str(tmp_path / 'none.pth'))
    assert_one_line_error(rc, err, 'does not exist', 'tools/train.py')
