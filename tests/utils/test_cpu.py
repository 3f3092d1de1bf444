"""SyncBN, AMP and distributed runs on a machine without CUDA (mmlinattn.utils.cpu)."""
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import OPTIM_WRAPPERS

from mmlinattn.utils import cpu


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)


@pytest.fixture
def logged(monkeypatch):
    lines = []
    monkeypatch.setattr(cpu, 'print_log', lambda msg, **kwargs: lines.append(msg))
    return lines


def small_model():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.SyncBatchNorm(4), nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 1), nn.SyncBatchNorm(4)))


def test_revert_sync_batchnorm_if_no_cuda(no_cuda, logged):
    model = small_model()
    weight = model[1].weight
    model[1].running_mean.fill_(0.5)
    model = cpu.revert_sync_batchnorm_if_no_cuda(model)
    assert not cpu.has_sync_batchnorm(model)
    assert isinstance(model[1], nn.modules.batchnorm._BatchNorm)
    assert model[1].weight is weight and torch.all(model[1].running_mean == 0.5)
    assert len(logged) == 1 and 'converted 2 SyncBN layers to BN' in logged[0]

    again = cpu.revert_sync_batchnorm_if_no_cuda(model)  # nothing left: silent
    assert again is model and len(logged) == 1


def test_revert_sync_batchnorm_keeps_sync_bn_with_cuda(monkeypatch, logged):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    model = small_model()
    assert cpu.revert_sync_batchnorm_if_no_cuda(model) is model
    assert cpu.has_sync_batchnorm(model) and not logged


@pytest.mark.slow  # a fresh interpreter (imports mmdet/mmseg): ~5-8 s
def test_sync_bn_in_a_cpu_process_group(tmp_path):
    """SyncBN fails to train on the CPU once a process group exists; the helpers fix it."""
    script = tmp_path / 'group.py'
    script.write_text(
        textwrap.dedent('''
        import os, torch, torch.nn as nn, torch.distributed as dist
        from mmlinattn.utils import cpu
        cpu.init_cpu_process_group('slurm')           # world of 1, from SLURM_* variables
        assert dist.get_backend() == 'gloo' and dist.get_world_size() == 1
        assert os.environ['RANK'] == '0' and os.environ['LOCAL_RANK'] == '0'
        x = torch.randn(2, 3, 8, 8)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SyncBatchNorm(4)).train()
        try:
            model(x)
        except ValueError as err:
            print('plain SyncBN:', err)
        wrapped = cpu.CPUDistributedDataParallel(model, device_ids=[0])   # as the Runner calls it
        assert not cpu.has_sync_batchnorm(wrapped)
        wrapped(x).sum().backward()
        print('wrapped: trained')
    '''))
    env = dict(
        os.environ,
        SLURM_PROCID='0',
        SLURM_NTASKS='1',
        SLURM_LOCALID='0',
        SLURM_NODELIST='localhost',
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(_free_port()))
    proc = subprocess.run([sys.executable, str(script)],
                          capture_output=True,
                          text=True,
                          env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'plain SyncBN: SyncBatchNorm expected input tensor to be on GPU' in proc.stdout
    assert 'wrapped: trained' in proc.stdout


def test_cpu_amp_optim_wrapper_runs_bfloat16():
    model = nn.Linear(4, 2)
    wrapper = OPTIM_WRAPPERS.build(
        dict(
            type='CPUAmpOptimWrapper',
            loss_scale='dynamic',
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().pow(2).mean())
    assert not torch.equal(before, model.weight)
    with pytest.raises(ValueError, match='bfloat16'):
        cpu.CPUAmpOptimWrapper(dtype='float16', optimizer=torch.optim.SGD(model.parameters(), 1))


def run_cfg(**extra):
    return Config(
        dict(
            optim_wrapper=dict(
                type='AmpOptimWrapper', loss_scale='dynamic', optimizer=dict(type='AdamW',
                                                                             lr=1e-4)),
            env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='nccl', timeout=600)),
            **extra))


def test_prepare_cpu_run_distributed(no_cuda, logged, monkeypatch):
    calls = []
    monkeypatch.setattr(cpu, 'init_cpu_process_group', lambda *args: calls.append(args))
    monkeypatch.setattr(cpu.torch_dist, 'get_world_size', lambda: 2)
    cfg = run_cfg(launcher='pytorch', find_unused_parameters=True)
    changes = cpu.prepare_cpu_run(cfg)
    assert cfg.optim_wrapper.type == 'CPUAmpOptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper and cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert calls == [('pytorch', 600)]
    assert cfg.model_wrapper_cfg == dict(
        type='CPUDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=True)
    assert len(changes) == 2 and logged == changes
    OPTIM_WRAPPERS.build(
        dict(cfg.optim_wrapper, optimizer=torch.optim.SGD(nn.Linear(1, 1).parameters(),
                                                          lr=1)))  # the rewritten config builds


def test_prepare_cpu_run_single_process(no_cuda, logged, monkeypatch):
    monkeypatch.setattr(cpu, 'init_cpu_process_group', lambda *args: pytest.fail('no group'))
    cfg = run_cfg(launcher='none')
    cfg.optim_wrapper.type = 'OptimWrapper'
    assert cpu.prepare_cpu_run(cfg) == [] and not logged
    assert cfg.env_cfg.dist_cfg.backend == 'nccl' and 'model_wrapper_cfg' not in cfg


def test_prepare_cpu_run_is_a_no_op_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = run_cfg(launcher='pytorch')
    before = cfg.to_dict()
    assert cpu.prepare_cpu_run(cfg) == [] and cfg.to_dict() == before


# ---------------------------------------------------------------------------------------------
# With CUDA present every workaround above is inert: the reverse of the tests above, with CUDA
# availability mocked (torch.cuda.is_available() True, 2 devices), as on a GPU machine.

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_CONFIGS = {
    'det': os.path.join(ROOT, 'configs', 'maskrcnn_ravlt_t_demo.py'),
    'seg': os.path.join(ROOT, 'configs', 'upernet_ravlt_t_demo.py'),
}
CPU_STAND_INS = ('CPUAmpOptimWrapper', 'CPUDistributedDataParallel', 'gloo')


@pytest.fixture
def with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)


@pytest.fixture
def no_process_group(monkeypatch):
    """Fails the test if a process group is created (the Runner's own NCCL set-up must do it)."""

    def refuse(*args, **kwargs):
        pytest.fail(f'a process group was created: {args} {kwargs}')

    monkeypatch.setattr(cpu, 'init_cpu_process_group', refuse)
    monkeypatch.setattr(cpu.torch_dist, 'init_process_group', refuse)


def assert_untouched(cfg, changes, logged, before, env_before):
    assert changes == [] and not logged
    assert cfg.to_dict() == before
    assert dict(os.environ) == env_before  # e.g. no RANK / MASTER_ADDR from the slurm variables
    assert not any(name in str(cfg.to_dict()) for name in CPU_STAND_INS)


@pytest.mark.parametrize('launcher', ['none', 'pytorch', 'slurm', 'mpi'])
@pytest.mark.parametrize('amp', [None, 'float16', 'bfloat16', 'off'])
def test_prepare_cpu_run_changes_nothing_with_cuda(with_cuda, no_process_group, logged, launcher,
                                                   amp, monkeypatch):
    monkeypatch.setenv('SLURM_PROCID', '0')  # as srun sets them: still not read
    monkeypatch.setenv('SLURM_NTASKS', '2')
    cfg = run_cfg(launcher=launcher, model_wrapper_cfg=dict(type='MMDistributedDataParallel'))
    if amp == 'off':
        cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4))
    elif amp is not None:
        cfg.optim_wrapper.dtype = amp
    before, env_before = cfg.to_dict(), dict(os.environ)
    changes = cpu.prepare_cpu_run(cfg)
    assert_untouched(cfg, changes, logged, before, env_before)
    if amp not in ('off', None):
        assert cfg.optim_wrapper.dtype == amp and cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel')


@pytest.mark.parametrize('task', sorted(DEMO_CONFIGS))
def test_prepare_cpu_run_leaves_a_real_amp_distributed_config_alone_with_cuda(
        with_cuda, no_process_group, logged, task):
    """The demo config as ``tools/train.py --amp --launcher pytorch`` hands it over."""
    cfg = Config.fromfile(DEMO_CONFIGS[task])
    cfg.launcher = 'pytorch'
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'
    before, env_before = cfg.to_dict(), dict(os.environ)
    changes = cpu.prepare_cpu_run(cfg)
    assert_untouched(cfg, changes, logged, before, env_before)
    assert cfg.env_cfg.dist_cfg.backend == 'nccl' and 'model_wrapper_cfg' not in cfg
    wrapper = OPTIM_WRAPPERS.get(cfg.optim_wrapper.type)
    assert wrapper.__module__.startswith('mmengine.')  # mmengine's AmpOptimWrapper, not ours


def test_sync_bn_of_a_real_model_is_kept_with_cuda(with_cuda, logged):
    """SyncBN in a model built from a config (as the real configs use it) is not converted."""
    from mmengine.registry import MODELS, init_default_scope

    import mmlinattn  # noqa: F401
    cfg = Config.fromfile(DEMO_CONFIGS['seg'])
    sync_bn = dict(type='SyncBN', requires_grad=True)
    cfg.model.backbone.norm_cfg = sync_bn
    cfg.model.decode_head.norm_cfg = sync_bn
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    count = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert count > 0
    assert cpu.revert_sync_batchnorm_if_no_cuda(model) is model and not logged
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules()) == count
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    bare = nn.SyncBatchNorm(4)  # a bare layer is returned as it is, not a BN copy
    assert cpu.revert_sync_batchnorm_if_no_cuda(bare) is bare
