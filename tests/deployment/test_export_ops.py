"""The export forms of the ops compute what eager PyTorch computes.

Bit for bit where they are the same arithmetic (the Newton-Schulz iteration of every Newton mode,
the batch-scaled halving search, the bounded landmark grid); to rounding where the order of a sum
changes (average pooling as matrix products) or the algorithm does (``'shifted_inverse'``: a
converged Newton-Schulz iteration in place of Cholesky).
"""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlinattn.deployment.onnx import create_session
from mmlinattn.ops import soft
from mmlinattn.ops.export import (ExportUnsupportedError, adaptive_avg_pool2d_exportable,
                                  example_size, is_exporting)
from mmlinattn.ops.soft import (SHIFTED_INVERSE_EXPORT_MAX_SIZE, _newton_schulz_iterate,
                                gaussian_kernel, landmark_grid_size, landmark_grid_size_exportable,
                                newton_schulz_pinv, shifted_inverse_newton_steps)


def kernel_batch(shape, m, spread, seed=0, dtype=torch.float32):
    """Gaussian kernels of ``m`` random points per matrix; ``spread`` sets how far apart they are
    (close points: ill-conditioned, the halving search needs several steps)."""
    generator = torch.Generator().manual_seed(seed)
    points = torch.randn(*shape, m, 8, generator=generator, dtype=torch.float64) * spread
    return gaussian_kernel(points, points).to(dtype)


def same(a, b):
    """Equal bit for bit, NaN where the other is NaN."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('spread', [0.05, 0.3, 1.0, 3.0])
@pytest.mark.parametrize('mode', ['newton_shifted', 'newton_batch_scaled', 'newton'])
def test_traceable_iteration_is_the_eager_one_bit_for_bit(mode, spread, dtype):
    mat = kernel_batch((3, 2), 12, spread, seed=7, dtype=dtype)
    eager = newton_schulz_pinv(mat, mode=mode)
    assert same(_newton_schulz_iterate(mat, 20, mode, traceable=True), eager)


def test_batch_search_covers_every_halving_count():
    """No halving, one, several (0, 1, 6, 7, 8 steps here) and the 10-step fallback: the tensor
    form picks the loop's scale."""
    cases = []
    for spread, offset in ((1.0, 0.0), (1.0, 0.01), (3.0, 0.1), (1.0, 0.1), (1.0, 4.0)):
        mat = kernel_batch((2, 3), 9, spread, seed=3)
        cases.append(mat + offset)  # a common offset makes A A ill-conditioned: more halvings
    # Rows summing to almost 0 give a huge initial scale that 10 halvings do not bring down.
    cases.append(torch.tensor([[1.0, -0.999], [-0.999, 1.0]]).expand(2, 3, 2, 2).contiguous())
    for mat in cases:
        eager = newton_schulz_pinv(mat, mode='newton_batch_scaled')
        assert same(_newton_schulz_iterate(mat, 20, 'newton_batch_scaled', traceable=True), eager)


def test_batch_search_with_a_non_finite_matrix():
    mat = kernel_batch((2, 2), 6, 1.0, seed=5)
    mat[1, 0, 2, 3] = float('inf')
    with pytest.warns(RuntimeWarning):
        eager = newton_schulz_pinv(mat, mode='newton_batch_scaled')
    assert same(_newton_schulz_iterate(mat, 20, 'newton_batch_scaled', traceable=True), eager)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_shifted_inverse_step_count_is_the_smallest_that_converges(dtype):
    """Without its one step of margin the count is the smallest k with e0^(2^k) <= u; a scalar
    Newton iteration on the two extreme eigenvalues 0.01 and m + 0.01 confirms it."""
    unit_roundoff = torch.finfo(dtype).eps / 2
    counts = []
    for size in (1, 2, 16, 64, 256, 1000, 4096, 10**6):
        steps = shifted_inverse_newton_steps(size, dtype) - 1
        e0 = size / (size + 0.02)
        assert e0**(2**steps) <= unit_roundoff < e0**(2**(steps - 1)), size
        alpha = 2 / (size + 0.02)
        for eigenvalue in (0.01, size + 0.01):
            inv = alpha
            for _ in range(steps):
                inv = 2 * inv - inv * eigenvalue * inv
            assert abs(1 - eigenvalue * inv) <= unit_roundoff * 1.01, (size, eigenvalue)
        counts.append(steps + 1)
    assert counts == sorted(counts)
    if dtype == torch.float32:
        assert shifted_inverse_newton_steps(256) == 19
        assert shifted_inverse_newton_steps(SHIFTED_INVERSE_EXPORT_MAX_SIZE) == 23
    with pytest.raises(ValueError, match='positive'):
        shifted_inverse_newton_steps(0)


def landmark_kernels(m, kind, seed=0, dims=32):
    """Gaussian kernels (float32, as the model computes them) of 4 sets of ``m`` landmarks in
    ``dims`` dimensions: i.i.d. points at a spread, pairs 1e-4 apart, all within 1e-3 (``A`` close
    to all-ones, the worst case of the step count's bound), or a smooth map (neighbours alike)."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    if kind == 'coincident pairs':
        base = randn(4, m // 2, dims) * 0.3
        points = torch.cat([base, base + 1e-4 * randn(4, m // 2, dims)], 1)
    elif kind == 'clustered':
        points = 1e-3 * randn(4, m, dims)
    elif kind == 'smooth map':
        axis = torch.linspace(0, 1, math.isqrt(m), dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(axis, axis, indexing='ij'), -1).reshape(m, 2)
        points = torch.tanh(grid @ randn(4, 2, dims)) + 1e-3 * randn(4, m, dims)
    else:
        points = randn(4, m, dims) * kind
    points = points.float()
    return gaussian_kernel(points, points)


def max_normalised(out, ref):
    """Largest ``max |out - ref| / max |ref|`` over the matrices of a batch."""
    diff = (out.double() - ref.double()).abs().amax((-2, -1))
    return (diff / ref.double().abs().amax((-2, -1))).max().item()


@pytest.mark.parametrize('kind', [0.05, 0.3, 1.0, 'coincident pairs', 'clustered', 'smooth map'])
@pytest.mark.parametrize('m', [16, 64, 256])
def test_traceable_shifted_inverse_is_the_cholesky_inverse(m, kind):
    """float32: as close to the exact inverse as a stable inverse gets (a few times the condition
    number times the unit roundoff; eager Cholesky reaches 2.7 times) and to the eager Cholesky
    inverse within 3e-4 (docs/design.md lists what is measured); float64: likewise (a few times
    the condition number times float64's roundoff, at most ~6e-12 here)."""
    mat = landmark_kernels(m, kind)
    traced = _newton_schulz_iterate(mat, 20, 'shifted_inverse', traceable=True)
    eager = newton_schulz_pinv(mat, mode='shifted_inverse')
    target = (mat.double() + mat.double().transpose(-1, -2)) / 2 + soft._SHIFT * torch.eye(m)
    # The exact inverse from the float64 eigen-decomposition (torch.linalg.inv's LU path was seen
    # to fail with invalid pivots for these 256 x 256 batches after other tests in one process).
    eigenvalues, vectors = torch.linalg.eigh(target)
    exact = (vectors / eigenvalues.unsqueeze(-2)) @ vectors.transpose(-1, -2)
    condition = (eigenvalues[..., -1] / eigenvalues[..., 0]).max().item()
    assert max_normalised(traced, exact) <= 4 * condition * torch.finfo(torch.float32).eps / 2
    assert max_normalised(traced, eager) <= 3e-4
    traced64 = _newton_schulz_iterate(mat.double(), 20, 'shifted_inverse', traceable=True)
    assert max_normalised(traced64, exact) <= max(1e-13,
                                                  4 * condition * torch.finfo(torch.float64).eps)


class _ShiftedInverse(nn.Module):

    def forward(self, mat):
        return newton_schulz_pinv(mat, mode='shifted_inverse')


def test_shifted_inverse_graph_follows_m_and_gives_nan_beyond_the_bound(monkeypatch, tmp_path):
    """Exported with a dynamic m, ONNX Runtime computes the eager inverse at sizes the step count
    covers and NaN beyond them (here with the bound lowered to 40); a traced m above the bound is
    refused, naming max_landmarks."""
    monkeypatch.setattr(soft, 'SHIFTED_INVERSE_EXPORT_MAX_SIZE', 40)
    path = str(tmp_path / 'inverse.onnx')
    torch.onnx.export(
        _ShiftedInverse(), (landmark_kernels(16, 0.3), ),
        path,
        dynamo=False,
        input_names=['mat'],
        dynamic_axes={'mat': {
            0: 'batch',
            1: 'm',
            2: 'm'
        }},
        opset_version=17)
    session = create_session(path, threads=1)
    for m, kind in ((16, 'clustered'), (36, 'smooth map'), (40, 'coincident pairs')):
        mat = landmark_kernels(m, kind, seed=m)
        out = torch.from_numpy(session.run(None, {'mat': mat.numpy()})[0])
        assert max_normalised(out, newton_schulz_pinv(mat, mode='shifted_inverse')) <= 3e-4, m
    out = session.run(None, {'mat': landmark_kernels(42, 0.3).numpy()})[0]
    assert torch.from_numpy(out).isnan().all()
    with pytest.raises(ExportUnsupportedError, match='covers up to 40 landmarks.*max_landmarks'):
        _newton_schulz_iterate(landmark_kernels(42, 0.3), 20, 'shifted_inverse', traceable=True)


def test_example_size():
    assert example_size(7) == 7
    assert example_size(torch.tensor(7)) == 7


def test_not_exporting_in_eager_code():
    assert not is_exporting()


def test_exportable_landmark_grid_is_the_python_one():
    for max_landmarks in (None, 1, 3, 12, 49, 256):
        for ratio in (1, 2, 8):
            for height in list(range(ratio, 70, 3)) + [200, 800]:
                for width in (ratio, ratio + 1, 37, 64, 101, 336, 1344, 5000):
                    grid = landmark_grid_size_exportable(height, width, ratio, max_landmarks)
                    assert tuple(int(v) for v in grid) == landmark_grid_size(
                        height, width, ratio, max_landmarks), (height, width, ratio, max_landmarks)


@pytest.mark.parametrize('in_size,out_size', [((9, 13), (2, 3)), ((12, 12), (3, 4)),
                                              ((2, 3), (6, 6)), ((5, 7), (5, 7))])
def test_exportable_adaptive_pool(in_size, out_size):
    x = torch.randn(2, 4, *in_size)
    pooled = adaptive_avg_pool2d_exportable(x, out_size)
    torch.testing.assert_close(pooled, F.adaptive_avg_pool2d(x, out_size), rtol=0, atol=1e-6)
    if in_size == out_size:
        assert torch.equal(pooled, x)  # exactly the identity
