"""Latency, memory and throughput measurements behind ``tools/analysis/benchmark.py``.

Everything here measures on the device it is given (CPU or CUDA) and reports raw numbers; ratios
are always taken against a baseline measured in the same run (see the tool).

Timing: ``warmup`` untimed calls, then the median of ``repeats`` timed calls (CUDA is
synchronised around each call).

Peak memory: the most bytes of tensor storage live at once during the call, above the level before
it. On CUDA that is ``torch.cuda.max_memory_allocated``. On CPU PyTorch keeps no allocator
statistics, so :func:`peak_memory` records the call with ``torch.profiler`` (``profile_memory``):
every allocation and free of PyTorch's CPU allocator is an event with its size and time, and the
peak is the maximum of their running sum - exact and deterministic, no sampling, and the same
quantity the CUDA path reports (allocator overhead and memory outside PyTorch's allocator, e.g.
the Python heap, are not counted). Checked against the resident-set peaks of a process whose glibc
mmap threshold was pinned to 1 MiB from its start (so the resident set follows live tensors):
Swin-T at 1024x1024, forward 343.8 vs 343.3 MiB, forward+backward 2338 vs 2334 MiB; RAVLT-S
272.8 vs 272.1 and 4428 vs 4387 MiB (sampling missed short peaks). Memory is measured in a separate
call from the timings, so the profiler's bookkeeping never slows a timed call, and timings run
with the allocator as a user's process has it.
"""
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = [
    'peak_memory', 'peak_of_allocations', 'time_call', 'matmul_rate', 'loglog_slope',
    'power_law_solve', 'BackboneSpec', 'BACKBONES', 'build_backbone', 'backbone_step', 'OpSpec',
    'OPS', 'make_op_inputs', 'op_step', 'MIB'
]

MIB = float(2**20)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


_WINDOW = 'mmlinattn.peak_memory.measured'


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes of tensor storage live during one call of ``fn``, above the level before it.

    On CUDA ``fn`` is called once and the caching allocator's statistics are read. On CPU the
    profiler records ``fn`` twice and only the second call counts: PyTorch's CPU allocator reports
    a free to the profiler only for blocks allocated while it records, so a call that frees what
    the previous call left (gradients set to ``None``, an optimiser's old buffers) would otherwise
    be charged for both generations at once.

    Args:
        fn (Callable[[], object]): a repeatable zero-argument call (e.g. one training step).
        device (torch.device): where ``fn`` computes.

    Returns:
        int: peak bytes above the level at the start of the (measured) call; 0 if it never rises.

    Example:
        >>> def step():
        ...     x = torch.ones(64, 2 ** 20)          # 256 MiB
        ...     y = x * 2                            # 256 MiB more while x lives
        >>> peak_memory(step, torch.device('cpu')) // 2 ** 20
        512
    """
    device = torch.device(device)
    if device.type == 'cuda':
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - start
    os.environ.setdefault('KINETO_LOG_LEVEL', '6')  # Kineto's default prints every start/stop
    profiler = torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
    with profiler:
        fn()  # what it allocates, later frees, is known
        with torch.profiler.record_function(_WINDOW):
            fn()
    events = profiler.profiler.kineto_results.events()
    window = next(e for e in events if e.name() == _WINDOW)
    return peak_of_allocations(
        (e.start_ns(), e.nbytes()) for e in events
        if e.name() == '[memory]' and e.device_type() == torch.autograd.DeviceType.CPU
        and window.start_ns() <= e.start_ns() <= window.end_ns())


def peak_of_allocations(events: Iterable[Tuple[int, int]]) -> int:
    """Highest running sum of allocation events, in bytes (0 if it never rises above the start).

    Args:
        events (Iterable[tuple[int, int]]): ``(time, bytes)`` pairs, positive bytes for an
            allocation and negative for a free; equal times keep their given order.

    Returns:
        int: the peak of live bytes above the level before the first event.
    """
    live = peak = 0
    for _, nbytes in sorted(events, key=lambda event: event[0]):
        live += nbytes
        peak = max(peak, live)
    return peak


def time_call(fn: Callable[[], object],
              device: torch.device,
              warmup: int = 1,
              repeats: int = 3) -> List[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones.

    Returns:
        list[float]: one wall-clock duration per timed call (CUDA synchronised around each).
    """
    device = torch.device(device)
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
    return size**3 / statistics.median(times)


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (the growth exponent)."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError('need at least two (x, y) points of equal count')
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    var = sum((a - mx)**2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / var


def power_law_solve(x0: float, y0: float, x1: float, y1: float,
                    target: float) -> Tuple[float, float]:
    """Extrapolate ``y = c x^e`` through two points to the ``x`` where ``y = target``.

    Returns:
        tuple[float, float]: ``(x, e)``.
    """
    exponent = math.log(y1 / y0) / math.log(x1 / x0)
    return x1 * (target / y1)**(1.0 / exponent), exponent


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


def _soft(arch, bounded=True, **kwargs):
    return dict(
        type='SOFT',
        arch=arch,
        normalization='core',
        drop_path_rate=0.0,
        max_landmarks=256 if bounded else None,
        **kwargs)


#: SOFT++ in the dense-prediction configs' mode (bounded landmarks, direct shifted inverse).
SOFT_CONFIG_MODE = dict(pinv_mode='shifted_inverse')
#: The previous configs' mode, as the previous op computed it (released evaluation order,
#: 20 per-matrix Newton steps): the "before" row of the performance comparison.
SOFT_PREVIOUS_MODE = dict(pinv_mode='newton', backend='released_order')
#: The ``'(exportable)'`` rows: 20 Newton steps with a scale per matrix, the mode SOFT++ was
#: exported with before ``'shifted_inverse'`` exported too (as a converged Newton-Schulz iteration,
#: :func:`mmlinattn.ops.soft.shifted_inverse_newton_steps`); kept so the recorded ONNX rows compare.
SOFT_EXPORT_MODE = dict(pinv_mode='newton')

_SWIN_T = dict(
    type='mmdet.SwinTransformer',
    embed_dims=96,
    depths=[2, 2, 6, 2],
    num_heads=[3, 6, 12, 24],
    window_size=7,
    drop_path_rate=0.0,
    out_indices=(0, 1, 2, 3))
_PVT_V2_B2 = dict(
    type='mmdet.PyramidVisionTransformerV2',
    embed_dims=64,
    num_layers=[3, 4, 6, 3],
    drop_path_rate=0.0)

#: Every backbone the tool knows; ``--models`` picks from these names.
BACKBONES: Dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        *(BackboneSpec(f'RAVLT-{v.upper()}', _ravlt(v)) for v in 'tsbl'),
        *(BackboneSpec(f'RAVLT-{v.upper()} (official alg.)', _ravlt(v), 'official',
                       f'RAVLT-{v.upper()}') for v in 'tsbl'),
        *(BackboneSpec(f'SOFT++-{v.upper()} (bounded)', _soft(v)) for v in 'tsml'),
        *(BackboneSpec(f'SOFT++-{v.upper()} (configs)', _soft(v, **SOFT_CONFIG_MODE))
          for v in 'tsml'),
        *(BackboneSpec(f'SOFT++-{v.upper()} (exportable)', _soft(v, **SOFT_EXPORT_MODE))
          for v in 'tsml'),
        *(BackboneSpec(f'SOFT++-{v.upper()} (previous)', _soft(v, **SOFT_PREVIOUS_MODE), 'peer')
          for v in 'tsml'),
        *(BackboneSpec(f'SOFT++-{v.upper()} (official alg.)', _soft(v, bounded=False), 'official',
                       f'SOFT++-{v.upper()} (bounded)') for v in 'tsml'),
        BackboneSpec('Swin-T', _SWIN_T, 'peer'),
        BackboneSpec('PVTv2-b2', _PVT_V2_B2, 'peer'),
    ]
}


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


def _soft_op(max_landmarks: Optional[int],
             pinv_mode: str = 'newton_batch_scaled',
             backend: str = 'torch'):
    from ..ops import get_op
    op = get_op('softmax_free', backend)

    def fn(t):
        n = t['q'].shape[-2]
        count = n // 64 if max_landmarks is None else min(n // 64, max_landmarks)
        q = t['q'] * t['q'].shape[-1]**-0.25
        return op(
            q, _landmarks(q, max(count, 1)), t['v'], normalization='core', pinv_mode=pinv_mode)

    return fn


def _ops() -> Dict[str, OpSpec]:
    import torch.nn.functional as F

    from ..ops import rank_augmented_linear_attention, rope_softmax_attention
    from ..ops.rala import rope_softmax_attention_explicit as rope_softmax_attention_official
    return {
        spec.name: spec
        for spec in [
            OpSpec(
                'RALA', lambda t: rank_augmented_linear_attention(t['q'], t['k'], t['v'], t['sin'],
                                                                  t['cos'])),
            OpSpec('SOFT++ attention (m<=256)', _soft_op(256)),
            OpSpec('SOFT++ attention (m<=256, configs)', _soft_op(256, 'shifted_inverse')),
            OpSpec('SOFT++ attention (m<=256, previous)', _soft_op(256, 'newton', 'released_order'),
                   'peer'),
            OpSpec('SOFT++ attention (official m=N/64)', _soft_op(None), 'official'),
            OpSpec('RoPE softmax via SDPA (ours; RAVLT stages 3-4)',
                   lambda t: rope_softmax_attention(t['q'], t['k'], t['v'], t['sin'], t['cos'])),
            OpSpec(
                'RoPE softmax explicit (official)', lambda t: rope_softmax_attention_official(
                    t['q'], t['k'], t['v'], t['sin'], t['cos']), 'official', True),
            OpSpec('softmax attention via SDPA (baseline)',
                   lambda t: F.scaled_dot_product_attention(t['q'], t['k'], t['v']), 'baseline'),
        ]
    }


#: Op rows known to the tool (built lazily so importing this module stays light).
OPS: Callable[[], Dict[str, OpSpec]] = _ops


def make_op_inputs(tokens: int,
                   batch: int,
                   heads: int,
                   head_dim: int,
                   device: torch.device,
                   requires_grad: bool,
                   seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random q/k/v ``(batch, heads, tokens, head_dim)`` on a near-square grid, with RoPE tables."""
    from ..ops import rope_sin_cos
    height = int(math.sqrt(tokens))
    while tokens % height:
        height -= 1
    gen = torch.Generator().manual_seed(seed)
    qkv = {
        k: (torch.randn(batch, heads, tokens, head_dim, generator=gen) * 0.5).to(device)
        for k in 'qkv'
    }
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
