"""``torch.compile`` of both backbones: one whole graph (``fullgraph=True``) in eval and train,
forward and backward, for every attention kind, normalization and pinv mode, with eager's
numerics; and one compiled graph for every input size (at most one recompilation after the first
call, dynamo's automatic dynamic shapes).

The default suite traces with dynamo's ``eager`` / ``aot_eager`` backends (seconds); inductor,
which generates and compiles C++ (minutes on 2 cores), is compared with eager in the slow part.
"""
import itertools

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from mmlinattn.models import RAVLT, SOFT
from mmlinattn.ops.soft import NORMALIZATIONS, PINV_MODES

RAVLT_ARCH = dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1], num_heads=[2, 2, 4, 4])
SOFT_ARCH = dict(embed_dims=[16, 24, 32, 48], depths=[1, 1, 1, 1], num_heads=[2, 2, 2, 3])

#: (family, kwargs, mode) of the default suite: each family, a train (aot_eager, backward) and an
#: eval (eager) trace, the host-synchronising modes of eager (shifted_inverse's fallback,
#: newton_batch_scaled's search); the slow suite runs every family, attention kind,
#: normalization and pinv mode in both modes.
FAST_CASES = [
    ('ravlt', dict(), 'eval'),
    ('soft', dict(normalization='core', pinv_mode='shifted_inverse', max_landmarks=16), 'train'),
    ('soft', dict(normalization='core', pinv_mode='newton_batch_scaled'), 'eval'),
]
SLOW_CASES = [(family, kwargs, mode) for mode in ('eval', 'train') for family, kwargs in [
    ('ravlt', dict()),
    ('ravlt', dict(attn_types=('linear', ) * 4)),
] + [('soft', dict(normalization=n, pinv_mode=p, max_landmarks=16))
     for n, p in itertools.product(NORMALIZATIONS, PINV_MODES)] + [
         ('soft', dict(normalization='none', pinv_mode='newton_shifted')),
     ]]


def build(family, kwargs):
    torch.manual_seed(0)
    if family == 'ravlt':
        return RAVLT(arch=RAVLT_ARCH, drop_path_rate=0.0, **kwargs)
    return SOFT(arch=SOFT_ARCH, drop_path_rate=0.0, **kwargs)


def case_id(case):
    family, kwargs = case[:2]
    words = [family] + [str(v if not isinstance(v, tuple) else v[0]) for v in kwargs.values()]
    return '-'.join(words + list(case[2:]))


def max_rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def run_whole_graph(family, kwargs, mode, backend):
    model = build(family, kwargs)
    model.train(mode == 'train')
    x = torch.randn(2, 3, 96, 128)
    torch._dynamo.reset()  # every test starts with empty caches (the counts are per test)
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    weights = None

    def loss(outs):  # random weights: a mean of squares through BatchNorm has ~0 input gradient
        nonlocal weights
        weights = weights or [torch.randn_like(o) for o in outs]
        return sum((o * w).sum() for o, w in zip(outs, weights))

    eager = model(xe)  # each forward runs its backward before the next one updates BN buffers
    if mode == 'train':
        loss(eager).backward()
        eager_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
    out = compiled(xc)
    if mode == 'train':
        loss(out).backward()
        assert max_rel(xc.grad, xe.grad) <= 1e-4
        # Max-normalised over all parameter gradients together: a conv bias before a BatchNorm has
        # an analytic gradient of 0, where both sides hold only rounding noise.
        names = sorted(eager_grads)
        compiled_grads = torch.cat(
            [dict(model.named_parameters())[n].grad.flatten() for n in names])
        assert max_rel(compiled_grads, torch.cat([eager_grads[n].flatten() for n in names])) <= 1e-4
    assert counter.frame_count == 1  # fullgraph: a break would have raised
    for a, b in zip(out, eager):
        assert max_rel(a.detach(), b.detach()) <= 1e-5


def backend_for(mode):
    return 'eager' if mode == 'eval' else 'aot_eager'  # aot_eager traces the backward too


@pytest.mark.parametrize('case', FAST_CASES, ids=case_id)
def test_whole_graph_matches_eager(case):
    family, kwargs, mode = case
    run_whole_graph(family, kwargs, mode, backend_for(mode))


@pytest.mark.slow
@pytest.mark.parametrize('case', SLOW_CASES, ids=case_id)
def test_whole_graph_every_mode(case):
    family, kwargs, mode = case
    run_whole_graph(family, kwargs, mode, backend_for(mode))


@pytest.mark.parametrize('case', [
    pytest.param(('ravlt', dict()), id='ravlt'),
    pytest.param(('soft', dict(normalization='core', pinv_mode='shifted_inverse', max_landmarks=4)),
                 marks=pytest.mark.slow,
                 id='soft-bounded'),
])
def test_one_graph_for_every_size(case):
    """Three input sizes (batch, height and width all change): the first call compiles for its
    shape, the second marks the sizes dynamic (one recompilation), the third reuses it. (A size
    sweep that crosses a SOFT backbone's max_landmarks bound, from grids under it to grids over
    it, recompiles once more at the crossing: the bound is a guard of the graph.)"""
    model = build(*case).eval()
    torch._dynamo.reset()
    counter = CompileCounterWithBackend('eager')
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    for batch, height, width in ((1, 64, 96), (2, 96, 128), (3, 128, 160)):
        x = torch.randn(batch, 3, height, width)
        for a, b in zip(compiled(x), model(x)):
            assert max_rel(a, b) <= 1e-5
    assert counter.frame_count <= 2, counter.frame_count


@pytest.mark.slow
def test_inductor_timm_classifier_at_any_size():
    """Before: ``torch.compile(timm.create_model('soft_tiny'))`` was right at 224^2 and raised
    ``ValueRangeError: Invalid ranges [0:-1]`` at 160 x 192 (inductor's lowering of the landmark
    convolution's input with symbolic sizes). Inductor against eager, odd sizes included."""
    import timm
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = timm.create_model('soft_tiny').eval()
    compiled = torch.compile(model)
    with torch.no_grad():
        for height, width in ((224, 224), (160, 192), (193, 257)):
            x = torch.randn(1, 3, height, width)
            assert max_rel(compiled(x), model(x)) <= 1e-5, (height, width)


@pytest.mark.slow
@pytest.mark.parametrize('family', ['ravlt', 'soft'])
def test_inductor_forward_and_backward_match_eager(family):
    """Inductor (generated C++) against eager: forward <= 1e-5, gradients <= 1e-4."""
    kwargs = {} if family == 'ravlt' else dict(
        normalization='core', pinv_mode='shifted_inverse', max_landmarks=16)
    run_whole_graph(family, kwargs, 'train', 'inductor')
