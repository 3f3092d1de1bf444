"""What mmengine 0.10.7 lacks to train and test on a machine without CUDA.

Measured on this project's CPU machine (torch 2.13 CPU wheel, mmengine 0.10.7):

* ``--launcher pytorch`` (``tools/dist_train.sh``): ``mmengine.dist.init_dist`` calls
  ``torch.cuda.set_device(local_rank)`` before creating the process group, which fails on the CPU
  wheel (``AttributeError: module 'torch._C' has no attribute '_cuda_setDevice'``); the configs'
  ``env_cfg.dist_cfg.backend`` is ``'nccl'``, which a CPU build does not have; and the Runner wraps
  the model in DDP with ``device_ids=[LOCAL_RANK]``, which DDP refuses for a CPU module.
* SyncBN (``nn.SyncBatchNorm``) raises ``ValueError: SyncBatchNorm expected input tensor to be
  on GPU ...`` in training once a process group exists, whatever its size. Without a process
  group, and in eval mode, it behaves as BN. The Runner reverts SyncBN to BN only when it is
  *not* distributed; ``mmdet.apis.init_detector`` reverts it, ``mmseg.apis.init_model`` does not.
* ``--amp``: ``AmpOptimWrapper.__init__`` asserts ``is_cuda_available() or ...``
  ("``AmpOptimizerWrapper`` is only available training on gpu, npu, mlu or musa"), although
  mmengine's own ``autocast`` supports the CPU (bfloat16).

:func:`prepare_cpu_run` fixes all three for a config about to be given to ``Runner.from_cfg``
(``tools/train.py`` and ``tools/test.py`` call it); it does nothing when CUDA is available.
"""
import atexit
import datetime
import os
import subprocess
from contextlib import contextmanager
from typing import List, Optional, Union

import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmengine.registry import MODEL_WRAPPERS, OPTIM_WRAPPERS

__all__ = [
    'has_sync_batchnorm', 'revert_sync_batchnorm_if_no_cuda', 'CPUAmpOptimWrapper',
    'CPUDistributedDataParallel', 'init_cpu_process_group', 'prepare_cpu_run'
]

_DEFAULT_PORT = '29500'
_EXIT_BARRIER_S = 120


def _sync_bn_types() -> tuple:
    types = [nn.SyncBatchNorm]
    try:
        from mmcv.ops import SyncBatchNorm as MMCVSyncBatchNorm
        types.append(MMCVSyncBatchNorm)
    except ImportError:  # mmcv without compiled ops
        pass
    return tuple(types)


def has_sync_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` contains a torch or mmcv SyncBatchNorm layer."""
    types = _sync_bn_types()
    return any(isinstance(m, types) for m in model.modules())


def _is_main_process() -> bool:
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_rank() == 0
    return os.environ.get('RANK', '0') == '0'


def revert_sync_batchnorm_if_no_cuda(model: nn.Module) -> nn.Module:
    """Convert every SyncBN layer of ``model`` to BN when CUDA is not available.

    Weights and running statistics are kept (mmengine's ``revert_sync_batchnorm``). Logs one line
    when something was converted; returns ``model`` untouched when CUDA is available or there is
    no SyncBN.

    Args:
        model (nn.Module): a model, e.g. from ``init_detector`` / ``init_model`` / ``MODELS.build``.

    Returns:
        nn.Module: the model to use from now on (the converted copy of a bare SyncBN layer, else
        ``model`` itself, converted in place).
    """
    if torch.cuda.is_available() or not has_sync_batchnorm(model):
        return model
    types = _sync_bn_types()
    count = sum(isinstance(m, types) for m in model.modules())
    model = revert_sync_batchnorm(model)
    if _is_main_process():
        print_log(
            f'CUDA is not available: converted {count} SyncBN layers to BN '
            '(statistics are per process)',
            logger='current')
    return model


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """Mixed precision on CPU: the forward and loss run under ``torch.autocast('cpu', bfloat16)``.

    Stands in for ``AmpOptimWrapper``, which refuses to be built without CUDA. No loss scaling:
    bfloat16 has float32's exponent range, so gradients do not underflow the way float16's do.

    Args:
        dtype (str | torch.dtype): autocast dtype; CPU autocast supports only ``'bfloat16'``.
            Defaults to ``'bfloat16'``.
        loss_scale: accepted so that an ``AmpOptimWrapper`` config converts by changing only its
            type; ignored.
        **kwargs: :class:`mmengine.optim.OptimWrapper` arguments (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self,
                 dtype: Union[str, torch.dtype] = 'bfloat16',
                 loss_scale: Optional[object] = None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
        if dtype != torch.bfloat16:
            raise ValueError(f'CPU autocast supports only bfloat16, got dtype={dtype!r}')
        self.cast_dtype = dtype

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for a model on the CPU (gloo process group).

    The Runner passes ``device_ids=[LOCAL_RANK]``, which DDP refuses for a CPU module: it is
    dropped. SyncBN layers are converted to BN first (:func:`revert_sync_batchnorm_if_no_cuda`),
    since SyncBN cannot train on the CPU once a process group exists; BN statistics are then
    per process, as with plain BN on GPUs.
    """

    def __init__(self, module: nn.Module, device_ids: Optional[List[int]] = None, **kwargs):
        module = revert_sync_batchnorm_if_no_cuda(module)
        super().__init__(module=module, device_ids=None, **kwargs)


def _first_host(node_list: str) -> str:
    out = subprocess.run(['scontrol', 'show', 'hostname', node_list],
                         capture_output=True,
                         text=True,
                         check=True).stdout
    return out.split()[0]


def init_cpu_process_group(launcher: str, timeout_s: Optional[float] = None) -> None:
    """Create the default process group with the gloo backend (no CUDA calls).

    Reads the environment each launcher sets, as ``mmengine.dist.init_dist`` does:

    * ``'pytorch'`` (torchrun): ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``.
    * ``'slurm'`` (srun): ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``; the master is the
      first host of ``SLURM_NODELIST`` unless ``MASTER_ADDR`` is set; port ``MASTER_PORT`` or 29500.
    * ``'mpi'`` (Open MPI): ``OMPI_COMM_WORLD_RANK`` / ``_SIZE`` / ``_LOCAL_RANK``; ``MASTER_ADDR``
      defaults to localhost.

    Does nothing if a process group already exists. The group is destroyed when the interpreter
    exits: a gloo group left to the interpreter's teardown aborts the process now and then
    ("terminate called without an active exception") after a successful run.
    """
    if torch_dist.is_initialized():
        return
    if launcher == 'slurm':
        os.environ['RANK'] = os.environ['SLURM_PROCID']
        os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
        os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
        if 'MASTER_ADDR' not in os.environ:
            os.environ['MASTER_ADDR'] = _first_host(os.environ['SLURM_NODELIST'])
        os.environ.setdefault('MASTER_PORT', _DEFAULT_PORT)
    elif launcher == 'mpi':
        os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
        os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
        os.environ['LOCAL_RANK'] = os.environ['OMPI_COMM_WORLD_LOCAL_RANK']
        os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
        os.environ.setdefault('MASTER_PORT', _DEFAULT_PORT)
    elif launcher != 'pytorch':
        raise ValueError(f"launcher {launcher!r} unknown; choose one of 'pytorch', 'slurm', 'mpi'")
    kwargs = {}
    if timeout_s is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout_s)
    torch_dist.init_process_group(backend='gloo', **kwargs)
    atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    if not torch_dist.is_initialized():
        return
    try:  # every rank done with its collectives before any tears its side down
        torch_dist.monitored_barrier(timeout=datetime.timedelta(seconds=_EXIT_BARRIER_S))
    except RuntimeError:  # a rank failed: torchrun reports it; just leave
        pass
    torch_dist.destroy_process_group()


def prepare_cpu_run(cfg) -> List[str]:
    """Adapt a Runner config to a machine without CUDA; a no-op when CUDA is available.

    Call it after the config is final and before ``Runner.from_cfg(cfg)``. It

    1. replaces ``optim_wrapper.type='AmpOptimWrapper'`` (``--amp``) by
       :class:`CPUAmpOptimWrapper` (bfloat16 autocast);
    2. when ``cfg.launcher`` is not ``'none'``: creates the gloo process group
       (:func:`init_cpu_process_group`; the Runner then skips its own CUDA-only set-up), records
       ``env_cfg.dist_cfg.backend='gloo'`` and wraps the model with
       :class:`CPUDistributedDataParallel` (keeping any ``model_wrapper_cfg`` arguments), which also
       turns SyncBN into BN.

    Without a launcher the Runner already reverts SyncBN to BN itself.

    Args:
        cfg (mmengine.Config): the run's config (modified in place).

    Returns:
        list[str]: what was changed, one line each (also logged on rank 0).
    """
    if torch.cuda.is_available():
        return []
    changes = []
    optim_wrapper = cfg.get('optim_wrapper')
    if isinstance(optim_wrapper, dict) and optim_wrapper.get('type') == 'AmpOptimWrapper':
        optim_wrapper['type'] = 'CPUAmpOptimWrapper'
        optim_wrapper.pop('loss_scale', None)
        if optim_wrapper.get('dtype') in (None, 'float16', torch.float16):
            optim_wrapper['dtype'] = 'bfloat16'
        changes.append('CUDA is not available: mixed precision runs as bfloat16 autocast on the '
                       'CPU (CPUAmpOptimWrapper, no loss scaling)')
    launcher = cfg.get('launcher', 'none') or 'none'
    if launcher != 'none':
        if cfg.get('env_cfg') is None:
            cfg.env_cfg = dict()
        if cfg.env_cfg.get('dist_cfg') is None:
            cfg.env_cfg.dist_cfg = dict()
        dist_cfg = cfg.env_cfg.dist_cfg
        dist_cfg.backend = 'gloo'
        init_cpu_process_group(launcher, dist_cfg.get('timeout'))
        wrapper_cfg = cfg.get('model_wrapper_cfg') or {}
        if wrapper_cfg.get('type', 'MMDistributedDataParallel') == 'MMDistributedDataParallel':
            wrapper_cfg = dict(wrapper_cfg, type='CPUDistributedDataParallel')
            wrapper_cfg.setdefault('broadcast_buffers', False)  # as the Runner's default DDP
            wrapper_cfg.setdefault('find_unused_parameters', cfg.get('find_unused_parameters',
                                                                     False))
            cfg.model_wrapper_cfg = wrapper_cfg
        changes.append(f'CUDA is not available: distributed run ({launcher}) on the CPU with the '
                       f'gloo backend, {torch_dist.get_world_size()} processes')
    if _is_main_process():
        for line in changes:
            print_log(line, logger='current')
    return changes
