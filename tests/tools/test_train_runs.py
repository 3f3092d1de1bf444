"""End-to-end runs of tools/train.py and tools/test.py on the generated demo data (slow).

* every demo config trains a few iterations, validates, and tools/test.py evaluates the result;
* ``--amp`` trains;
* a run killed (SIGKILL) after iteration N and resumed with ``--resume`` ends with the same
  weights, optimizer state and learning rates as an uninterrupted run.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = {
    'det': osp.join(ROOT, 'configs', 'maskrcnn_ravlt_t_demo.py'),
    'seg': osp.join(ROOT, 'configs', 'upernet_ravlt_t_demo.py')
}
TRAIN_PY = osp.join(ROOT, 'tools', 'train.py')
pytestmark = pytest.mark.slow


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


def data_options(task, data_root):
    """--cfg-options pointing every loader (and COCO evaluator) at the generated data, with no
    worker processes (deterministic order, light on a shared machine)."""
    root = osp.join(data_root, 'coco' if task == 'det' else 'ade') + '/'
    options = []
    for split in ('train', 'val', 'test'):
        options += [
            f'{split}_dataloader.dataset.data_root={root}', f'{split}_dataloader.num_workers=0',
            f'{split}_dataloader.persistent_workers=False'
        ]
    if task == 'det':
        ann = root + 'annotations/instances_val.json'
        options += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    return options


def run(tool, *args, timeout=900):
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', tool), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout)
    return proc, proc.stdout + proc.stderr


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_demo_config_trains_and_evaluates(task, data_root, tmp_path):
    work = tmp_path / 'work'
    proc, log = run('train.py', CONFIGS[task], '--work-dir', work, '--cfg-options',
                    'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                    'default_hooks.checkpoint.interval=2', *data_options(task, data_root))
    assert proc.returncode == 0, log[-4000:]
    assert (work / 'iter_2.pth').is_file()
    metric = 'coco/segm_mAP' if task == 'det' else 'mIoU'
    assert 'Iter(val)' in log and metric in log

    proc, log = run('test.py', CONFIGS[task], work / 'iter_2.pth', '--work-dir', tmp_path / 'test',
                    '--cfg-options', *data_options(task, data_root))
    assert proc.returncode == 0, log[-4000:]
    metrics = eval(proc.stdout.strip().splitlines()[-1])  # the dict tools/test.py prints
    keys = {'coco/bbox_mAP', 'coco/segm_mAP'} if task == 'det' else {'mIoU', 'aAcc'}
    assert keys <= set(metrics) and all(0 <= metrics[k] <= 100 for k in keys)


def test_amp(data_root, tmp_path):
    work = tmp_path / 'work'
    proc, log = run('train.py', CONFIGS['seg'], '--amp', '--work-dir', work, '--cfg-options',
                    'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                    'default_hooks.checkpoint.interval=2', *data_options('seg', data_root))
    assert proc.returncode == 0, log[-4000:]
    if not torch.cuda.is_available():
        assert 'bfloat16 autocast on the CPU' in log and "type='CPUAmpOptimWrapper'" in log
    assert (work / 'iter_2.pth').is_file()


KILL_HOOK = '''
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillAfterIterHook(Hook):
    """SIGKILLs its own process after iteration ``iters``, once the checkpoint is written."""
    priority = 'LOWEST'      # after CheckpointHook

    def __init__(self, iters):
        self.iters = iters

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iters:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def scalars(work_dir):
    """{iter: logged scalars} from the newest run in work_dir."""
    path = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))[-1]
    rows = [json.loads(line) for line in open(path)]
    return {row['iter']: row for row in rows if 'lr' in row}


def test_killed_and_resumed_run_equals_uninterrupted(data_root, tmp_path):
    n, total = 2, 4
    ade = osp.join(data_root, 'ade') + '/'
    loaders = '\n'.join(f"{split}_dataloader = dict(num_workers=0, persistent_workers=False, "
                        f"dataset=dict(data_root='{ade}'))" for split in ('train', 'val', 'test'))
    run_config = tmp_path / 'resume_run.py'
    run_config.write_text(
        textwrap.dedent(f'''
        _base_ = ['{CONFIGS['seg']}']
        # no dropout: mmengine does not checkpoint RNG states, so a resumed run can only match
        # when training draws no random numbers in the model (data randomness is replayed)
        model = dict(decode_head=dict(dropout_ratio=0.0), auxiliary_head=dict(dropout_ratio=0.0))
        train_cfg = dict(max_iters={total}, val_interval={total})
        default_hooks = dict(logger=dict(interval=1),
                             checkpoint=dict(interval={n}, max_keep_ckpts=3))
        randomness = dict(seed=0, deterministic=True)
    ''') + loaders + '\n')
    (tmp_path / 'kill_hook.py').write_text(KILL_HOOK)
    kill_config = tmp_path / 'resume_kill.py'
    kill_config.write_text(
        textwrap.dedent(f'''
        _base_ = ['./resume_run.py']
        custom_imports = dict(imports=['mmlinattn', 'kill_hook'], allow_failed_imports=False)
        custom_hooks = [dict(type='KillAfterIterHook', iters={n})]
    '''))
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'

    proc, log = run('train.py', run_config, '--work-dir', straight)
    assert proc.returncode == 0, log[-4000:]

    proc = subprocess.run([sys.executable, TRAIN_PY,
                           str(kill_config), '--work-dir',
                           str(resumed)],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=900,
                          env=dict(os.environ, PYTHONPATH=str(tmp_path)))  # finds kill_hook.py
    assert proc.returncode == -9, (proc.stdout + proc.stderr)[-4000:]  # SIGKILL
    assert (resumed / f'iter_{n}.pth').is_file() and not (resumed / f'iter_{total}.pth').exists()

    proc, log = run('train.py', run_config, '--work-dir', resumed, '--resume')
    assert proc.returncode == 0, log[-4000:]
    assert f'resumed epoch: 0, iter: {n}' in log
    assert f'Advance dataloader {n} steps' in log

    logged_a, logged_b = scalars(straight), scalars(resumed)
    assert sorted(logged_b) == list(range(n + 1, total + 1))  # the resumed run starts at N + 1
    for it in range(n + 1, total + 1):
        assert logged_a[it]['lr'] == logged_b[it]['lr']
        assert logged_a[it]['loss'] == logged_b[it]['loss']

    a = torch.load(straight / f'iter_{total}.pth', map_location='cpu', weights_only=False)
    b = torch.load(resumed / f'iter_{total}.pth', map_location='cpu', weights_only=False)
    assert a['meta']['iter'] == b['meta']['iter'] == total
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
    assert [g['lr'] for g in a['optimizer']['param_groups']] == \
        [g['lr'] for g in b['optimizer']['param_groups']]
    for index, state in a['optimizer']['state'].items():
        for name, value in state.items():
            assert torch.equal(value, b['optimizer']['state'][index][name]), (index, name)
    assert a['param_schedulers'] == b['param_schedulers']


def test_compiled_training_equals_eager(data_root, tmp_path):
    """``compile=True`` (inductor) trains the demo UperNet with the losses of eager training: same
    seed, same data, no dropout; the backbone, neck and decode heads run compiled."""
    losses = {}
    for name, extra in (('eager', []), ('compiled', ['compile=True'])):
        work = tmp_path / name
        proc, log = run(
            'train.py',
            CONFIGS['seg'],
            '--work-dir',
            work,
            '--cfg-options',
            'train_cfg.max_iters=3',
            'train_cfg.val_interval=100',
            'default_hooks.checkpoint.interval=100',
            'default_hooks.logger.interval=1',
            'randomness.seed=0',
            'model.decode_head.dropout_ratio=0.0',
            'model.auxiliary_head.dropout_ratio=0.0',
            *extra,
            *data_options('seg', data_root),
            timeout=3000)
        assert proc.returncode == 0, log[-4000:]
        rows = [row for _, row in sorted(scalars(work).items())]
        losses[name] = [row['loss'] for row in rows]
        print(f'\n{name}: iteration times {[round(row["time"], 2) for row in rows]} s, losses '
              f'{losses[name]}')
        if name == 'compiled':
            assert "of the model's backbone, decode_head, auxiliary_head" in log
    assert len(losses['eager']) == 3
    for eager, compiled in zip(losses['eager'], losses['compiled']):
        assert abs(eager - compiled) <= 1e-3 * abs(eager), losses
