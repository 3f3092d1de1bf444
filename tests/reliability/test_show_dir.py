"""``tools/test.py CONFIG CKPT --show-dir vis`` (the README's command) works on every demo config
and writes drawn predictions."""
import glob
import importlib.util
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*_demo.py')))


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo_data')
    subprocess.run(
        [sys.executable,
         osp.join(ROOT, 'tools', 'make_demo_data.py'), '--out',
         str(out)],
        check=True,
        capture_output=True,
        timeout=300)
    return str(out)


def test_every_demo_config_is_covered(demo_checkpoints):
    assert sorted(config for config, _ in demo_checkpoints.values()) == DEMO_CONFIGS


@pytest.mark.parametrize('task', [pytest.param('det', marks=pytest.mark.slow), 'seg'])
def test_show_dir(task, demo_checkpoints, data_root, tmp_path, capsys):
    config, checkpoint = demo_checkpoints[task]
    spec = importlib.util.spec_from_file_location('mmlinattn_test_tool',
                                                  osp.join(ROOT, 'tools', 'test.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    root = osp.join(data_root, 'coco' if task == 'det' else 'ade') + '/'
    options = [
        f'test_dataloader.dataset.data_root={root}', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False', 'test_dataloader.dataset.indices=2'
    ]
    if task == 'det':
        options.append(f'test_evaluator.ann_file={root}annotations/instances_val.json')
    work = tmp_path / 'work'
    assert tool.main([
        config, checkpoint, '--work-dir',
        str(work), '--show-dir', 'vis', '--cfg-options', *options
    ]) == 0
    folder = capsys.readouterr().out.split('drawn predictions: ')[1].strip()
    assert folder.startswith(str(work)) and 'vis' in folder
    assert len(glob.glob(osp.join(folder, '*.png'))) == 2  # the two test images
