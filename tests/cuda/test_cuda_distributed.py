"""Two-GPU training with ``tools/dist_train.sh`` (torchrun, NCCL, DDP): both ranks end identical.

The CUDA twin of ``tests/tools/test_dist_scripts.py::test_two_process_training_ranks_agree`` (gloo
on the CPU), whose helpers it reuses: the demo UperNet config with SyncBN (as the real configs),
2 iterations on generated demo data, a hook that saves every rank's parameters after the run.
Asserts: exit status 0; world size 2, backend ``'nccl'``, model wrapped in mmengine's own
``MMDistributedDataParallel`` (none of the CPU stand-ins of :mod:`mmlinattn.utils.cpu`, SyncBN
kept); both ranks' parameters bitwise equal to each other and to the saved checkpoint; the
validation ran (``mIoU`` logged).
"""
import sys

import pytest
import torch
from cuda_test_utils import load_test_module

DIST = load_test_module('tests/tools/test_dist_scripts.py', '_mmlinattn_dist_script_tests')
ITERS = 2


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason='needs 2 CUDA devices (torch.cuda.device_count() < 2)')
def test_two_gpu_nccl_training_ranks_agree(tmp_path):
    config = DIST.two_rank_seg_config(tmp_path, iters=ITERS, data_timeout=300)
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
