"""tools/dist_train.sh, dist_test.sh (torchrun) and slurm_train.sh, slurm_test.sh (srun).

The fast tests check the commands the scripts build, with stand-ins for python and srun; the slow
test trains for real with 2 processes (gloo) and checks that both ranks end with the same weights.
"""
import json
import os
import os.path as osp
import socket
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(ROOT, 'tools')
SEG_DEMO = osp.join(ROOT, 'configs', 'upernet_ravlt_t_demo.py')

# Prints its command line and PYTHONPATH as JSON: stands in for python and for srun.
RECORDER = '#!/usr/bin/env python3\nimport json, os, sys\n' \
           'print(json.dumps(dict(argv=sys.argv[1:], pythonpath=os.environ.get("PYTHONPATH"))))\n'


@pytest.fixture
def recorder(tmp_path):
    path = tmp_path / 'bin' / 'recorder'
    path.parent.mkdir()
    path.write_text(RECORDER)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def run_script(name, *args, env=None):
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run(['bash', osp.join(TOOLS, name), *map(str, args)],
                          capture_output=True,
                          text=True,
                          env=full_env,
                          timeout=600,
                          cwd=ROOT)
    return proc


def recorded(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_dist_train_command(recorder):
    out = recorded(
        run_script(
            'dist_train.sh',
            SEG_DEMO,
            2,
            '--work-dir',
            'w',
            '--amp',
            env=dict(PYTHON=str(recorder), PYTHONPATH='/elsewhere')))
    assert out['argv'] == [
        '-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0', '--master_addr=127.0.0.1',
        '--master_port=29500', '--nproc_per_node=2',
        osp.join(TOOLS, 'train.py'), SEG_DEMO, '--launcher', 'pytorch', '--work-dir', 'w', '--amp'
    ]
    assert out['pythonpath'] == f'{ROOT}:/elsewhere'


def test_dist_test_command_multi_node(recorder, tmp_path):
    ckpt = tmp_path / 'model.pth'
    ckpt.write_bytes(b'')
    out = recorded(
        run_script(
            'dist_test.sh',
            SEG_DEMO,
            ckpt,
            4,
            '--show-dir',
            'vis',
            env=dict(
                PYTHON=str(recorder),
                NNODES='2',
                NODE_RANK='1',
                PORT='29512',
                MASTER_ADDR='10.0.0.7')))
    assert out['argv'] == [
        '-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1', '--master_addr=10.0.0.7',
        '--master_port=29512', '--nproc_per_node=4',
        osp.join(TOOLS, 'test.py'), SEG_DEMO,
        str(ckpt), '--launcher', 'pytorch', '--show-dir', 'vis'
    ]
    assert out['pythonpath'].split(':')[0] == ROOT


@pytest.mark.parametrize('name, args, message', [
    ('dist_train.sh', [SEG_DEMO], 'usage:'),
    ('dist_train.sh', [SEG_DEMO, 'two'], 'GPUS must be a positive number'),
    ('dist_train.sh', ['configs/nope.py', 2], "config file 'configs/nope.py' not found"),
    ('dist_test.sh', [SEG_DEMO, 'missing.pth', 2], "checkpoint 'missing.pth' does not exist"),
    ('slurm_train.sh', ['partition', 'job', SEG_DEMO], 'usage:'),
])
def test_argument_errors(name, args, message):
    proc = run_script(name, *args)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize('name, fourth, tool, extra', [
    ('slurm_train.sh', 'work_dirs/x', 'train.py', ['--work-dir', 'work_dirs/x']),
    ('slurm_test.sh', 'model.pth', 'test.py', ['model.pth']),
])
def test_slurm_commands(recorder, name, fourth, tool, extra):
    srun = recorder.parent / 'srun'
    recorder.rename(srun)
    path = f"{srun.parent}:{os.environ['PATH']}"
    out = recorded(
        run_script(
            name,
            'gpu-part',
            'ravlt',
            SEG_DEMO,
            fourth,
            '--cfg-options',
            'a=1',
            env=dict(PATH=path, GPUS='16', SRUN_ARGS='--qos=low', PYTHON='python3')))
    assert out['argv'] == [
        '-p', 'gpu-part', '--job-name=ravlt', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
        '--cpus-per-task=5', '--kill-on-bad-exit=1', '--qos=low', 'python3', '-u',
        osp.join(TOOLS, tool), SEG_DEMO, *extra, '--launcher', 'slurm', '--cfg-options', 'a=1'
    ]
    # a CPU partition: no GPU request, 2 processes
    out = recorded(
        run_script(
            name,
            'cpu-part',
            'ravlt',
            SEG_DEMO,
            fourth,
            env=dict(PATH=path, GPUS='2', GRES='', PYTHON='python3')))
    assert '--ntasks=2' in out['argv'] and '--ntasks-per-node=2' in out['argv']
    assert not any(arg.startswith('--gres') for arg in out['argv'])


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


RANK_DUMP_HOOK = '''
import os
import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankDumpHook(Hook):
    """Saves this rank's parameters after training: work_dir/params_rank<r>.pth."""

    def after_run(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        rank = dist.get_rank() if dist.is_initialized() else 0
        torch.save(dict(params={k: v.detach() for k, v in model.named_parameters()},
                        world_size=dist.get_world_size() if dist.is_initialized() else 1,
                        backend=dist.get_backend() if dist.is_initialized() else None,
                        wrapper=type(runner.model).__name__),
                   os.path.join(runner.work_dir, f'params_rank{rank}.pth'))
'''


def two_rank_seg_config(tmp_path, iters: int, data_timeout: int = 120):
    """Write what a two-rank training run of the demo UperNet needs into ``tmp_path``: generated
    ADE demo data, the :data:`RANK_DUMP_HOOK` module (put ``tmp_path`` on ``PYTHONPATH``) and a
    config with SyncBN (as the real configs), ``iters`` iterations and a checkpoint at the end.

    Returns:
        Path: the config file.
    """
    data = tmp_path / 'data'
    subprocess.run([
        sys.executable,
        osp.join(TOOLS, 'make_demo_data.py'), '--out',
        str(data), '--only', 'ade', '--num-train', '16', '--num-val', '4'
    ],
                   check=True,
                   capture_output=True,
                   timeout=data_timeout)
    (tmp_path / 'rank_dump_hook.py').write_text(RANK_DUMP_HOOK)
    ade = f'{data}/ade/'
    config = tmp_path / 'upernet_two_ranks.py'
    config.write_text(
        textwrap.dedent(f'''
        _base_ = ['{SEG_DEMO}']
        custom_imports = dict(imports=['mmlinattn', 'rank_dump_hook'], allow_failed_imports=False)
        syncbn_cfg = dict(type='SyncBN', requires_grad=True)  # as the real configs
        model = dict(backbone=dict(norm_cfg=syncbn_cfg), decode_head=dict(norm_cfg=syncbn_cfg),
                     auxiliary_head=dict(norm_cfg=syncbn_cfg))
        train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                                dataset=dict(data_root='{ade}'))
        val_dataloader = dict(num_workers=0, persistent_workers=False,
                              dataset=dict(data_root='{ade}'))
        test_dataloader = val_dataloader
        train_cfg = dict(max_iters={iters}, val_interval={iters})
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval={iters}))
        custom_hooks = [dict(type='RankDumpHook')]
        randomness = dict(seed=0)
    '''))
    return config


@pytest.mark.slow
def test_two_process_training_ranks_agree(tmp_path):
    config = two_rank_seg_config(tmp_path, iters=3)
    work = tmp_path / 'work'
    proc = run_script(
        'dist_train.sh',
        config,
        2,
        '--work-dir',
        work,
        env=dict(PORT=str(_free_port()), PYTHONPATH=str(tmp_path), OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    ranks = [torch.load(work / f'params_rank{r}.pth', weights_only=True) for r in (0, 1)]
    for dump in ranks:
        assert dump['world_size'] == 2 and dump['backend'] == 'gloo'
    saved = torch.load(work / 'iter_3.pth', map_location='cpu', weights_only=False)
    assert saved['meta']['iter'] == 3
    names = sorted(ranks[0]['params'])
    assert names == sorted(ranks[1]['params']) and len(names) > 100
    for name in names:
        assert torch.equal(ranks[0]['params'][name], ranks[1]['params'][name]), name
        assert torch.equal(ranks[0]['params'][name], saved['state_dict'][name]), name
    log = proc.stdout + proc.stderr
    assert 'SyncBN layers to BN' in log
    assert 'mIoU' in log  # validated at the end, results gathered from both ranks
