"""Every registered backend of every op against its ``'reference'`` twin, forward and backward.

One parametrized test per op kind: a backend registered later (a fused GPU kernel, say) is picked
up by the registry and tested here without touching this file. Inputs are float64 and chosen so
that the reference is well defined (e.g. well-separated landmarks, enough Newton steps to converge,
since the fast inverse differentiates the converged inverse and the reference its iterations).
"""
import pytest
import torch

import mmlinattn  # noqa: F401  (registers the ops)
from mmlinattn.ops import get_op, op_backends, op_kinds
from mmlinattn.ops.rope import rope_sin_cos
from mmlinattn.ops.soft import NORMALIZATIONS, PINV_MODES


def _rope_tables():
    sin, cos = rope_sin_cos(6, 5, 8, dtype=torch.float64)
    return sin, cos


def _qkv(g, n=30, d=8):
    return [torch.randn(2, 2, n, d, generator=g, dtype=torch.float64) for _ in range(3)]


def _spd(g, m=6):
    points = torch.randn(2, 3, m, 4, generator=g, dtype=torch.float64) * 1.5
    return get_op('gaussian_kernel', 'reference')(points, points)


#: kind -> list of (case id, function of a generator returning (tensors, kwargs)).
CASES = {
    'rala': [('default', lambda g: (_qkv(g), dict(zip(('sin', 'cos'), _rope_tables()))))],
    'rope_softmax': [('default', lambda g: (_qkv(g), dict(zip(('sin', 'cos'), _rope_tables()))))],
    'apply_rope': [('default', lambda g: (_qkv(g)[:1], dict(zip(('sin', 'cos'), _rope_tables()))))],
    'gaussian_kernel': [('default', lambda g: ([
        torch.randn(2, 7, 4, generator=g, dtype=torch.float64),
        torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    ], {}))],
    'newton_schulz_pinv': [(mode, lambda g, mode=mode: ([_spd(g)], dict(num_iters=40, mode=mode)))
                           for mode in PINV_MODES],
    'softmax_free': [(f'{n}-{p}', lambda g, n=n, p=p: ([
        torch.randn(2, 2, 30, 8, generator=g, dtype=torch.float64) / 8**0.25,
        torch.randn(2, 2, 6, 8, generator=g, dtype=torch.float64) * 1.5,
        torch.randn(2, 2, 30, 8, generator=g, dtype=torch.float64)
    ], dict(normalization=n, pinv_mode=p, num_iters=40))) for n in NORMALIZATIONS
                     for p in PINV_MODES],
}


def test_every_registered_op_has_a_reference_and_cases():
    assert sorted(CASES) == op_kinds()
    for kind in op_kinds():
        assert 'reference' in op_backends(kind) and 'torch' in op_backends(kind), kind


PARAMS = [(kind, backend, case_id, make) for kind in op_kinds() for backend in op_backends(kind)
          if backend != 'reference' for case_id, make in CASES.get(kind, [])]


@pytest.mark.parametrize(
    'kind,backend,case_id,make', PARAMS, ids=[f'{k}-{b}-{c}' for k, b, c, _ in PARAMS])
def test_backend_matches_reference_forward_and_backward(kind, backend, case_id, make):
    tensors, kwargs = make(torch.Generator().manual_seed(0))
    outputs, grads = [], []
    for name in (backend, 'reference'):
        inputs = [t.clone().requires_grad_() for t in tensors]
        out = get_op(kind, name)(*inputs, **kwargs)
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
        grads.append(torch.autograd.grad((out * weight).sum(), inputs))
        outputs.append(out.detach())
    scale = outputs[1].abs().max()
    assert ((outputs[0] - outputs[1]).abs().max() / scale) < 1e-8
    for fast, ref in zip(*grads):
        assert ((fast - ref).abs().max() / ref.abs().max()) < 1e-7
