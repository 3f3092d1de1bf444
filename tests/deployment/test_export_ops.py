"""The export forms of the ops compute what eager PyTorch computes.

Bit for bit where they are the same arithmetic (the Newton-Schulz iteration of every exportable
mode, the batch-scaled halving search, the bounded landmark grid); to rounding where the order of
a sum changes (average pooling as matrix products).
"""
import pytest
import torch
import torch.nn.functional as F

from mmlinattn.ops.export import (ExportUnsupportedError, adaptive_avg_pool2d_exportable,
                                  is_exporting)
from mmlinattn.ops.soft import (_newton_schulz_iterate, gaussian_kernel, landmark_grid_size,
                                landmark_grid_size_exportable, newton_schulz_pinv)


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


def test_shifted_inverse_is_refused_for_export():
    message = "pinv_mode='shifted_inverse'.*'newton_shifted'"
    with pytest.raises(ExportUnsupportedError, match=message):
        _newton_schulz_iterate(kernel_batch((1, ), 4, 1.0), 20, 'shifted_inverse', traceable=True)


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
