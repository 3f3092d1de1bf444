"""Latency, memory and throughput measurements behind ``tools/analysis/benchmark.py``.

Everything here measures on the device it is given (CPU or CUDA) and reports raw numbers; ratios
are always taken against a baseline measured in the same run (see the tool).

Timing: ``warmup`` untimed calls, then the median of ``repeats`` timed calls (CUDA is
synchronised around each call).

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the level before the call. On CPU
PyTorch keeps no allocator statistics, so :class:`PeakMemory` samples the process's resident set
size (``/proc/self/statm``) from a background thread every ``interval`` seconds and reports the
highest value above the level before the call. For the resident size to follow live tensors,
freed memory must go back to the system at once, so inside :class:`PeakMemory` glibc's mmap
threshold is pinned to 1 MiB (``mallopt``; every larger tensor is its own ``mmap``, unmapped when
freed) and free heap memory is trimmed first; allocations that live for less than one interval
can be missed. **Timings run outside it** with glibc's usual converged setting (32 MiB, the top of
its dynamic threshold), because a pinned threshold makes every large temporary page-fault afresh:
measured here, RAVLT-S forward at 800x1344 took 5.6 s pinned vs 3.4 s unpinned. Memory is also
measured in a separate call from the timings so the sampler thread never slows a timed call.

Known problem (2026-11-21): after timings have run with the converged threshold, the peaks this
run-time switch reports on CPU are 2-4x those of a process pinned from its start (Swin-T 1024^2
forward 1362 vs 343 MiB), so CPU memory figures of this version are not to be trusted; the
committed memory numbers come from a run pinned from process start (see README, Benchmarks).
"""
import ctypes
import ctypes.util
import math
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ['PeakMemory', 'time_call', 'matmul_rate', 'loglog_slope', 'power_law_solve',
           'BackboneSpec', 'BACKBONES', 'build_backbone', 'backbone_step', 'OpSpec', 'OPS',
           'make_op_inputs', 'op_step', 'MIB']

MIB = float(2 ** 20)
_PAGE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * _PAGE


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3      # glibc mallopt() parameters
_PINNED_MMAP_THRESHOLD = 1 << 20                    # measuring memory: every tensor > 1 MiB mmap'd
_DEFAULT_MMAP_THRESHOLD = 32 << 20                  # timing: glibc's converged dynamic value


def _glibc():
    """The C library if it is glibc (has ``mallopt`` and ``malloc_trim``), else None."""
    name = ctypes.util.find_library('c')
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, 'mallopt') or not hasattr(libc, 'malloc_trim'):
        return None
    return libc


_LIBC = _glibc()


def _set_mmap_threshold(nbytes: int) -> None:
    """Set glibc's mmap and trim thresholds (no-op on other C libraries)."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, nbytes)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, 2 * nbytes)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class PeakMemory:
    """Context manager: peak memory allocated inside the block, in bytes, above the start level.

    Args:
        device (torch.device): CUDA uses the caching allocator's statistics (exact); CPU samples
            the resident set size (see the module docstring).
        interval (float): CPU sampling period in seconds. Defaults to 2e-4.

    Attributes:
        peak (int): bytes above the level at entry, set on exit.

    Example:
        >>> with PeakMemory(torch.device('cpu')) as mem:
        ...     x = torch.ones(64, 2 ** 20)          # 256 MiB
        ...     del x
        >>> mem.peak > 200 * 2 ** 20
        True
    """

    def __init__(self, device: torch.device, interval: float = 2e-4):
        self.device = torch.device(device)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> 'PeakMemory':
        if self.device.type == 'cuda':
            _sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            if not os.path.exists('/proc/self/statm'):
                raise RuntimeError('CPU peak memory needs /proc/self/statm (Linux)')
            _set_mmap_threshold(_PINNED_MMAP_THRESHOLD)
            if _LIBC is not None:
                _LIBC.malloc_trim(0)            # hand free heap pages back: a low, honest start
            self._start = self._max = _rss_bytes()
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == 'cuda':
            _sync(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._start
        else:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, _rss_bytes())
            self.peak = max(0, self._max - self._start)
            _set_mmap_threshold(_DEFAULT_MMAP_THRESHOLD)


def time_call(fn: Callable[[], object], device: torch.device, warmup: int = 1,
              repeats: int = 3) -> List[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones.

    On CPU glibc's mmap threshold is set to its converged default first (see the module
    docstring), whatever a previous :class:`PeakMemory` left.
    """
    device = torch.device(device)
    if device.type == 'cpu':
        _set_mmap_threshold(_DEFAULT_MMAP_THRESHOLD)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def matmul_rate(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Float32 multiply-adds per second of one ``size x size`` matmul (median of ``repeats``).

    Multiply-adds, not 2x: the same convention as the FLOP counter (one multiply-add = one flop),
    so achieved backbone rates divide by this directly.
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device)
    b = torch.randn(size, size, generator=gen).to(device)
    times = time_call(lambda: a @ b, device, warmup=2, repeats=repeats)
    return size ** 3 / statistics.median(times)


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (the growth exponent)."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError('need at least two (x, y) points of equal count')
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    var = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / var


def power_law_solve(x0: float, y0: float, x1: float, y1: float, target: float) -> Tuple[float,
                                                                                      float]:
    """Extrapolate ``y = c x^e`` through two points to the ``x`` where ``y = target``.

    Returns:
        tuple[float, float]: ``(x, e)``.
    """
    exponent = math.log(y1 / y0) / math.log(x1 / x0)
    return x1 * (target / y1) ** (1.0 / exponent), exponent


# ----------------------------------------------------------------------------------------------
# Backbones


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone in the resolution sweep.

    Attributes:
        name (str): row label.
        cfg (dict): config built with the mmdet registry (our types are in the root registry).
        role (str): ``'ours'``, ``'official'`` (our weights on the released code's algorithm,
            see :mod:`mmlinattn.analysis.official`) or ``'peer'``.
        official_of (str): for ``role='official'``, the name of the row it is the reference of.
    """
    name: str
    cfg: Dict = field(hash=False)
    role: str = 'ours'
    official_of: Optional[str] = None


def _ravlt(arch):
    return dict(type='RAVLT', arch=arch, drop_path_rate=0.0)


def _soft(arch, bounded=True):
    return dict(type='SOFT', arch=arch, norm=True, drop_path_rate=0.0,
                max_landmarks=256 if bounded else None)


_SWIN_T = dict(type='mmdet.SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2],
               num_heads=[3, 6, 12, 24], window_size=7, drop_path_rate=0.0,
               out_indices=(0, 1, 2, 3))
_PVT_V2_B2 = dict(type='mmdet.PyramidVisionTransformerV2', embed_dims=64,
                  num_layers=[3, 4, 6, 3], drop_path_rate=0.0)

#: Every backbone the tool knows; ``--models`` picks from these names.
BACKBONES: Dict[str, BackboneSpec] = {spec.name: spec for spec in [
    *(BackboneSpec(f'RAVLT-{v.upper()}', _ravlt(v)) for v in 'tsbl'),
    *(BackboneSpec(f'RAVLT-{v.upper()} (official alg.)', _ravlt(v), 'official',
                   f'RAVLT-{v.upper()}') for v in 'tsbl'),
    *(BackboneSpec(f'SOFT++-{v.upper()} (bounded)', _soft(v)) for v in 'tsml'),
    *(BackboneSpec(f'SOFT++-{v.upper()} (official alg.)', _soft(v, bounded=False), 'official',
                   f'SOFT++-{v.upper()} (bounded)') for v in 'tsml'),
    BackboneSpec('Swin-T', _SWIN_T, 'peer'),
    BackboneSpec('PVTv2-b2', _PVT_V2_B2, 'peer'),
]}


def build_backbone(spec: BackboneSpec, device: torch.device, seed: int = 0) -> nn.Module:
    """Build and initialise one backbone (from scratch, seeded) on ``device``.

    An ``'official'`` row is built with the same seed as the row it references, so both hold the
    same weights.
    """
    from mmdet.registry import MODELS
    import mmlinattn  # noqa: F401  (registers RAVLT and SOFT)
    torch.manual_seed(seed)
    model = MODELS.build(dict(spec.cfg))
    model.init_weights()
    return model.to(device)


def backbone_step(model: nn.Module, image: torch.Tensor, backward: bool) -> Callable[[], None]:
    """A zero-argument callable: one forward (eval, no grad) or one forward+backward (train)."""
    if not backward:
        model.eval()

        def forward():
            with torch.no_grad():
                model(image)
        return forward

    model.train()

    def forward_backward():
        outs = model(image)
        loss = sum(o.float().mean() for o in outs)
        loss.backward()
        for p in model.parameters():
            p.grad = None
    return forward_backward


# ----------------------------------------------------------------------------------------------
# Attention ops


@dataclass(frozen=True)
class OpSpec:
    """One attention op in the token sweep.

    Attributes:
        name (str): row label.
        fn (callable): ``fn(inputs) -> Tensor`` with ``inputs`` from :func:`make_op_inputs`.
        role (str): ``'ours'``, ``'official'`` or ``'baseline'``.
        quadratic_memory (bool): materialises an ``N x N`` matrix (guarded by the memory limit).
    """
    name: str
    fn: Callable = field(hash=False)
    role: str = 'ours'
    quadratic_memory: bool = False


def _landmarks(q: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` landmarks by average-pooling consecutive query groups (shape ``(B, h, m, d)``)."""
    b, h, n, d = q.shape
    group = n // count
    return q[:, :, :group * count].reshape(b, h, count, group, d).mean(3)


def _soft_op(max_landmarks: Optional[int]):
    from ..ops import softmax_free_attention

    def fn(t):
        n = t['q'].shape[-2]
        count = n // 64 if max_landmarks is None else min(n // 64, max_landmarks)
        q = t['q'] * t['q'].shape[-1] ** -0.25
        return softmax_free_attention(q, _landmarks(q, max(count, 1)), t['v'],
                                      normalization='core', pinv_mode='official_norm')
    return fn


def _ops() -> Dict[str, OpSpec]:
    import torch.nn.functional as F
    from ..ops import rank_augmented_linear_attention, rope_softmax_attention
    from .official import rope_softmax_attention_official
    return {spec.name: spec for spec in [
        OpSpec('RALA', lambda t: rank_augmented_linear_attention(t['q'], t['k'], t['v'], t['sin'],
                                                                 t['cos'])),
        OpSpec('SOFT++ attention (m<=256)', _soft_op(256)),
        OpSpec('SOFT++ attention (official m=N/64)', _soft_op(None), 'official'),
        OpSpec('RoPE softmax via SDPA (ours; RAVLT stages 3-4)',
               lambda t: rope_softmax_attention(t['q'], t['k'], t['v'], t['sin'], t['cos'])),
        OpSpec('RoPE softmax explicit (official)',
               lambda t: rope_softmax_attention_official(t['q'], t['k'], t['v'], t['sin'],
                                                         t['cos']), 'official', True),
        OpSpec('softmax attention via SDPA (baseline)',
               lambda t: F.scaled_dot_product_attention(t['q'], t['k'], t['v']), 'baseline'),
    ]}


#: Op rows known to the tool (built lazily so importing this module stays light).
OPS: Callable[[], Dict[str, OpSpec]] = _ops


def make_op_inputs(tokens: int, batch: int, heads: int, head_dim: int, device: torch.device,
                   requires_grad: bool, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random q/k/v ``(batch, heads, tokens, head_dim)`` on a near-square grid, with RoPE tables."""
    from ..ops import rope_sin_cos
    height = int(math.sqrt(tokens))
    while tokens % height:
        height -= 1
    gen = torch.Generator().manual_seed(seed)
    qkv = {k: (torch.randn(batch, heads, tokens, head_dim, generator=gen) * 0.5).to(device)
           for k in 'qkv'}
    for t in qkv.values():
        t.requires_grad_(requires_grad)
    sin, cos = rope_sin_cos(height, tokens // height, head_dim, device=device)
    return dict(qkv, sin=sin, cos=cos)


def op_step(spec: OpSpec, inputs: Dict[str, torch.Tensor], backward: bool) -> Callable[[], None]:
    """A zero-argument callable running the op forward (no grad) or forward+backward."""
    if not backward:
        def forward():
            with torch.no_grad():
                spec.fn(inputs)
        return forward

    def forward_backward():
        spec.fn(inputs).float().mean().backward()
        for key in 'qkv':
            inputs[key].grad = None
    return forward_backward
