"""Two-GPU training with ``tools/dist_train.sh`` (torchrun, NCCL, DDP): both ranks end identical.

The CUDA twin of ``tests/tools/test_dist_scripts.py::test_two_process_training_ranks_agree`` (gloo
on the CPU), whose helpers it reuses: the demo UperNet config with SyncBN (as the real configs),
2 iterations on generated demo data, a hook that saves every rank's parameters after the run.
Asserts: exit status 0; world size 2, backend ``'nccl'``, model wrapped in mmengine's own
``MMDistributedDataParallel`` (none of the CPU stand-ins of :mod:`mmlinattn.utils.cpu`, SyncBN
kept); both ranks' parameters bitwise equal to each other and to the saved checkpoint; the
validation ran (``mIoU`` logged).
"""
import subprocess
import sys
import textwrap

import pytest
import torch
from cuda_test_utils import ROOT, load_test_module

DIST = load_test_module('tests/tools/test_dist_scripts.py', '_mmlinattn_dist_script_tests')
ITERS = 2


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason='needs 2 CUDA devices (torch.cuda.device_count() < 2)')
def test_two_gpu_nccl_training_ranks_agree(tmp_path):
    data = tmp_path / 'data'
    subprocess.run([
        sys.executable, f'{ROOT}/tools/make_demo_data.py', '--out',
        str(data), '--only', 'ade', '--num-train', '16', '--num-val', '4'
    ],
                   check=True,
                   capture_output=True,
                   timeout=300)
    (tmp_path / 'rank_dump_hook.py').write_text(DIST.RANK_DUMP_HOOK)
    ade = f'{data}/ade/'
    config = tmp_path / 'upernet_two_gpus.py'
    config.write_text(
        textwrap.dedent(f'''
        _base_ = ['{DIST.SEG_DEMO}']
        custom_imports = dict(imports=['mmlinattn', 'rank_dump_hook'], allow_failed_imports=False)
        syncbn_cfg = dict(type='SyncBN', requires_grad=True)
        model = dict(backbone=dict(norm_cfg=syncbn_cfg), decode_head=dict(norm_cfg=syncbn_cfg),
                     auxiliary_head=dict(norm_cfg=syncbn_cfg))
        train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                                dataset=dict(data_root='{ade}'))
        val_dataloader = dict(num_workers=0, persistent_workers=False,
                              dataset=dict(data_root='{ade}'))
        test_dataloader = val_dataloader
        train_cfg = dict(max_iters={ITERS}, val_interval={ITERS})
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval={ITERS}))
        custom_hooks = [dict(type='RankDumpHook')]
        randomness = dict(seed=0)
    '''))
    work = tmp_path / 'work'
    proc = DIST.run_script(
        'dist_train.sh',
        config,
        2,
        '--work-dir',
        work,
        env=dict(
            PORT=str(DIST._free_port()),
            PYTHONPATH=str(tmp_path),
            PYTHON=sys.executable,
            OMP_NUM_THREADS='1'))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    ranks = [torch.load(work / f'params_rank{r}.pth', weights_only=True) for r in (0, 1)]
    for dump in ranks:
        assert dump['world_size'] == 2 and dump['backend'] == 'nccl', dump['backend']
        assert dump['wrapper'] == 'MMDistributedDataParallel', dump['wrapper']
    saved = torch.load(work / f'iter_{ITERS}.pth', map_location='cpu', weights_only=False)
    assert saved['meta']['iter'] == ITERS
    names = sorted(ranks[0]['params'])
    assert names == sorted(ranks[1]['params']) and len(names) > 100
    for name in names:
        first, second = ranks[0]['params'][name].cpu(), ranks[1]['params'][name].cpu()
        assert torch.equal(first, second), name
        assert torch.equal(first, saved['state_dict'][name].cpu()), name
    assert 'SyncBN layers to BN' not in log and 'CUDA is not available' not in log
    assert 'mIoU' in log
