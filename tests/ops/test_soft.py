"""SOFT ops: fast paths against their references, the Newton inverse against exact inverses."""
import pytest
import torch

from mmlinattn.ops.soft import (NORMALIZATIONS, PINV_MODE_ALIASES, PINV_MODES, gaussian_kernel,
                                gaussian_kernel_reference, landmark_grid_size, newton_schulz_pinv,
                                newton_schulz_pinv_reference, softmax_free_attention,
                                softmax_free_attention_reference)

SHIFT = 0.009999999776482582  # the 'newton_shifted' mode's +0.01 I (float32(0.01))


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def kernel_matrices(batch_shape, m, d=4, spread=1.0, seed=0, dtype=torch.float64):
    """Symmetric positive-definite Gaussian kernel matrices; ``spread`` controls conditioning."""
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(*batch_shape, m, d, generator=g, dtype=dtype) * spread
    return gaussian_kernel_reference(points, points)


def exact_inverse(mat, mode):
    eye = torch.eye(mat.shape[-1], dtype=mat.dtype)
    if mode == 'shifted_inverse':  # reads the symmetric part of A
        mat = (mat + mat.transpose(-1, -2)) / 2
    shifted = mode in ('newton_shifted', 'shifted_inverse')
    return torch.linalg.inv(mat + SHIFT * eye if shifted else mat)


# --------------------------------------------------------------------------- Gaussian kernel


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_gaussian_kernel_matches_reference(dtype):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 50, 8, generator=g, dtype=dtype)
    b = torch.randn(2, 3, 7, 8, generator=g, dtype=dtype)
    out = gaussian_kernel(a, b)
    assert out.shape == (2, 3, 50, 7) and out.dtype == dtype
    ref = gaussian_kernel_reference(a, b)
    assert rel_err(out, ref) < (1e-5 if dtype == torch.float32 else 1e-13)


def test_gaussian_kernel_is_float32_under_autocast():
    a = torch.randn(1, 2, 20, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = gaussian_kernel(a.bfloat16(), a.bfloat16())
    assert out.dtype == torch.float32
    ref = gaussian_kernel_reference(a.bfloat16().double(), a.bfloat16().double())
    assert rel_err(out.double(), ref) < 1e-5


# --------------------------------------------------------------------------- Newton inverse


@pytest.mark.parametrize('mode', PINV_MODES)
def test_pinv_converges_to_linalg_pinv(mode):
    mat = kernel_matrices((2, 3), 8, spread=1.0)
    eye = torch.eye(8, dtype=mat.dtype)
    target = mat + SHIFT * eye if mode in ('newton_shifted', 'shifted_inverse') else mat
    out = newton_schulz_pinv(mat, num_iters=40, mode=mode)
    assert torch.allclose(out, torch.linalg.pinv(target), rtol=0, atol=1e-10)


@pytest.mark.parametrize('mode', PINV_MODES)
@pytest.mark.parametrize('spread', [0.3, 1.0])
def test_pinv_matches_reference_unconverged(mode, spread):
    # spread 0.3: nearly singular kernels, 20 steps are far from converged (the regime of the
    # released models); the fast op must still follow the official iteration step by step.
    mat = kernel_matrices((2, 3), 12, spread=spread, seed=1)
    out = newton_schulz_pinv(mat, mode=mode)
    ref = newton_schulz_pinv_reference(mat, mode=mode)
    assert rel_err(out, ref) < 1e-9
    if spread == 0.3:
        residual = (mat @ out - torch.eye(12, dtype=mat.dtype)).abs().sum(-2).amax()
        assert residual > 0.1  # really unconverged: an exact inverse would not reproduce this


def test_pinv_scale_is_per_matrix_or_global_as_documented():
    a = kernel_matrices((1, ), 10, spread=0.3, seed=2)
    b = kernel_matrices((1, ), 10, spread=0.1, seed=3)  # larger row sums -> smaller scale
    both = torch.cat([a, b])
    for mode in ('newton_shifted', 'newton'):
        alone = newton_schulz_pinv(a, mode=mode)
        assert torch.equal(newton_schulz_pinv(both, mode=mode)[:1], alone)
    batched = newton_schulz_pinv(both, mode='newton_batch_scaled')[:1]
    alone = newton_schulz_pinv(a, mode='newton_batch_scaled')
    assert rel_err(batched, alone) > 1e-3  # the released SOFT-Norm scale is batch-global


def test_pinv_unknown_mode():
    with pytest.raises(ValueError, match="pinv mode 'exact' unknown; choose one of"):
        newton_schulz_pinv(torch.eye(3), mode='exact')


@pytest.mark.parametrize('mode', PINV_MODES)
def test_pinv_backward_matches_exact_inverse(mode):
    mat = kernel_matrices((2, ), 6, spread=1.0, seed=4).requires_grad_()
    weight = torch.randn(2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    (newton_schulz_pinv(mat, num_iters=40, mode=mode) * weight).sum().backward()
    fast = mat.grad.clone()
    mat.grad = None
    (exact_inverse(mat, mode) * weight).sum().backward()
    assert torch.allclose(fast, mat.grad, rtol=0, atol=1e-9)


def test_pinv_backward_is_applied_once_at_the_final_iterate():
    mat = kernel_matrices((3, ), 10, spread=0.3, seed=6).requires_grad_()
    grad_out = torch.randn(3, 10, 10, dtype=torch.float64)
    inv = newton_schulz_pinv(mat)  # unconverged
    inv.backward(grad_out)
    inv_t = inv.detach().transpose(-1, -2)
    assert torch.allclose(mat.grad, -inv_t @ grad_out @ inv_t, rtol=0, atol=1e-12)


@pytest.mark.parametrize('mode', PINV_MODES)
def test_pinv_gradcheck(mode):
    mat = kernel_matrices((2, ), 4, spread=1.0, seed=7).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a: newton_schulz_pinv(a, 40, mode), (mat, ), eps=1e-6, atol=1e-6)


def test_pinv_without_host_sync_traces_as_one_graph():
    torch._dynamo.reset()
    mat = kernel_matrices((2, 2), 8, spread=0.5, seed=8).float()
    compiled = torch.compile(
        lambda a: newton_schulz_pinv(a, 20, 'newton'), backend='eager', fullgraph=True)
    assert torch.equal(compiled(mat), newton_schulz_pinv(mat, 20, 'newton'))
    torch._dynamo.reset()


def test_pinv_float32_under_autocast():
    mat = kernel_matrices((2, ), 8, spread=0.5, seed=9).float()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = newton_schulz_pinv(mat.bfloat16())
    assert out.dtype == torch.float32
    assert rel_err(out, newton_schulz_pinv(mat.bfloat16().float())) == 0


# --------------------------------------------------------------------------- attention


def attention_inputs(seed=0, n=30, m=6, d=8, landmark_spread=0.5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 2, n, d, generator=g, dtype=dtype) / d**0.25
    landmarks = torch.randn(2, 2, m, d, generator=g, dtype=dtype) * landmark_spread
    v = torch.randn(2, 2, n, d, generator=g, dtype=dtype)
    return q, landmarks, v


@pytest.mark.parametrize('normalization', NORMALIZATIONS)
@pytest.mark.parametrize('mode', PINV_MODES)
def test_attention_matches_materialised_reference(normalization, mode):
    q, landmarks, v = attention_inputs()
    out = softmax_free_attention(q, landmarks, v, normalization, mode)
    ref = softmax_free_attention_reference(q, landmarks, v, normalization, mode)
    assert out.shape == v.shape
    assert rel_err(out, ref) < 1e-9


@pytest.mark.parametrize('normalization', NORMALIZATIONS)
def test_attention_gradients_match_reference_when_converged(normalization):
    # With well-separated landmarks 40 steps converge, so the analytic backward and autograd
    # through the reference's iterations must agree.
    inputs = [t.requires_grad_() for t in attention_inputs(seed=1, landmark_spread=1.5)]
    weight = torch.randn_like(inputs[2])
    grads = []
    for fn in (softmax_free_attention, softmax_free_attention_reference):
        out = fn(*inputs, normalization=normalization, pinv_mode='newton', num_iters=40)
        grads.append(torch.autograd.grad((out * weight).sum(), inputs))
    for fast, ref in zip(*grads):
        assert rel_err(fast, ref) < 1e-8


def test_full_normalization_is_symmetric_normalised_matrix():
    # D^-1/2 S D^-1/2 applied to V equals the materialised normalised matrix, and its degrees
    # are those of S: check against a direct construction with an exact inverse.
    q, landmarks, v = attention_inputs(seed=2, landmark_spread=1.5)
    out = softmax_free_attention(q, landmarks, v, 'full', 'newton', num_iters=60)
    k1 = gaussian_kernel_reference(q, landmarks)
    sim = k1 @ torch.linalg.inv(gaussian_kernel_reference(landmarks, landmarks)) @ \
        k1.transpose(-1, -2)
    deg = sim.sum(-1, keepdim=True)**-0.5
    assert rel_err(out, (deg * sim * deg.transpose(-1, -2)) @ v) < 1e-9


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_attention_computes_in_float32_under_autocast(dtype):
    q, landmarks, v = (t.to(dtype) for t in attention_inputs(seed=3, dtype=torch.float32))
    with torch.autocast('cpu', dtype=dtype):
        out = softmax_free_attention(q, landmarks, v, 'core', 'newton_batch_scaled')
    assert out.dtype == dtype and torch.isfinite(out).all()
    ref = softmax_free_attention(q.float(), landmarks.float(), v.float(), 'core',
                                 'newton_batch_scaled')
    assert torch.equal(out, ref.to(dtype))


def test_attention_unknown_normalization():
    q, landmarks, v = attention_inputs()
    with pytest.raises(ValueError, match="normalization 'sym' unknown"):
        softmax_free_attention(q, landmarks, v, normalization='sym')


# --------------------------------------------------------------------------- landmark grid


def test_landmark_grid_official():
    assert landmark_grid_size(56, 56, 8) == (7, 7)
    assert landmark_grid_size(200, 334, 8) == (25, 41)  # remainder rows/cols uncovered
    assert landmark_grid_size(50, 84, 2, max_landmarks=None) == (25, 42)
    assert landmark_grid_size(16, 24, 8, max_landmarks=1000) == (2, 3)


def test_landmark_grid_bounded_keeps_aspect():
    assert landmark_grid_size(200, 336, 8, max_landmarks=256) == (12, 20)
    assert landmark_grid_size(64, 64, 4, max_landmarks=49) == (7, 7)
    assert landmark_grid_size(16, 4000, 8, max_landmarks=16) == (1, 16)  # thin strip
    assert landmark_grid_size(64, 64, 4, max_landmarks=1) == (1, 1)


def test_landmark_grid_too_small():
    with pytest.raises(ValueError, match='smaller than the landmark ratio 8'):
        landmark_grid_size(7, 100, 8)


def test_bounded_landmark_cost_is_linear_in_pixels():
    """Count landmarks per SOFT stage from 512^2 to 2048^2: the official count grows with the
    image (so the m^3 inverse grows with the cube of the pixels), the bounded one does not."""

    def cost(side, max_landmarks):
        total = 0
        for stage, ratio in enumerate((8, 4, 2)):
            h = w = side // 2**(stage + 2)
            gh, gw = landmark_grid_size(h, w, ratio, max_landmarks)
            m = gh * gw
            assert max_landmarks is None or m <= max_landmarks
            total += h * w * m + m**3  # kernels/products + inverse
        return total

    sides = [512, 1024, 2048]  # 4x pixels per step
    bounded = [cost(s, 256) for s in sides]
    official = [cost(s, None) for s in sides]
    assert all(b1 / b0 <= 4.0 for b0, b1 in zip(bounded, bounded[1:]))
    assert all(o1 / o0 > 16 for o0, o1 in zip(official, official[1:]))


@pytest.mark.parametrize('old,new', sorted(PINV_MODE_ALIASES.items()))
def test_former_pinv_mode_names_are_aliases(old, new):
    mat = kernel_matrices((2, ), 6)
    with pytest.warns(DeprecationWarning, match=f"former name of '{new}'"):
        out = newton_schulz_pinv(mat, mode=old)
    assert torch.equal(out, newton_schulz_pinv(mat, mode=new))


def _batch_scaled_released(mat, num_iters=20):
    """'newton_batch_scaled' written as the released code does it: ``A (alpha A)`` recomputed at
    every halving of the batch-global scale."""
    eye = torch.eye(mat.shape[-1], dtype=mat.dtype)
    alpha = 2 / mat.sum(-1).amax(-1).max()**2
    for _ in range(10):
        if (eye - mat @ (alpha * mat)).abs().sum(-2).amax(-1).max() <= 1.01:
            break
        alpha = alpha / 2
    inv = alpha * mat
    for _ in range(num_iters):
        inv = 2 * inv - inv @ mat @ inv
    return inv


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('spread', [0.2, 1.0, 3.0])
def test_batch_scaled_search_computes_the_square_once_bit_for_bit(dtype, spread):
    """The search forms ``alpha A A`` once and halves it (a power-of-two scaling is exact)."""
    mat = kernel_matrices((3, 2), 12, spread=spread, seed=11).to(dtype)
    assert torch.equal(
        newton_schulz_pinv(mat, mode='newton_batch_scaled'), _batch_scaled_released(mat))


def test_shifted_inverse_falls_back_per_matrix():
    """A matrix Cholesky rejects gets the eigen pseudo-inverse; a NaN matrix stays NaN, alone."""
    good = kernel_matrices((1, ), 6, seed=2)[0]
    indefinite = -torch.eye(6, dtype=torch.float64)  # A + 0.01 I is negative definite
    bad = torch.full((6, 6), float('nan'), dtype=torch.float64)
    out = newton_schulz_pinv(torch.stack([good, indefinite, bad]), mode='shifted_inverse')
    eye = torch.eye(6, dtype=torch.float64)
    torch.testing.assert_close(out[0], torch.linalg.inv(good + SHIFT * eye))
    torch.testing.assert_close(out[1], torch.linalg.pinv(indefinite + SHIFT * eye))
    assert torch.isnan(out[2]).all()
