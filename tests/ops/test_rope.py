"""2-D RoPE tables and rotation: fast versions against loop / complex-number references."""
import math

import pytest
import torch

from mmlinattn.ops.rope import (apply_rope, apply_rope_reference, rope_frequencies, rope_sin_cos,
                                rope_sin_cos_reference)


@pytest.mark.parametrize('head_dim', [4, 8, 64, 96])
def test_frequencies_include_both_endpoints_and_are_interleaved(head_dim):
    freqs = rope_frequencies(head_dim)
    m = head_dim // 4
    assert freqs.shape == (head_dim // 2, ) and freqs.dtype == torch.float32
    assert torch.equal(freqs[0::2], freqs[1::2])
    assert freqs[0].item() == 1.0
    if m > 1:
        assert freqs[-1].item() == pytest.approx(1e-4, rel=1e-6)
        expected = [10000.0**-(i / (m - 1)) for i in range(m)]
        assert freqs[0::2].tolist() == pytest.approx(expected, rel=1e-6)


def test_frequencies_need_head_dim_divisible_by_4():
    with pytest.raises(ValueError, match='divisible by 4'):
        rope_frequencies(6)


@pytest.mark.parametrize('height,width,head_dim', [(1, 1, 4), (3, 5, 8), (4, 4, 16), (7, 2, 12)])
def test_tables_match_loop_reference(height, width, head_dim):
    sin, cos = rope_sin_cos(height, width, head_dim, dtype=torch.float64)
    ref_sin, ref_cos = rope_sin_cos_reference(height, width, head_dim)
    assert sin.shape == cos.shape == (height * width, head_dim)
    # The fast tables use float32 frequencies (as the official buffer), hence the tolerance.
    torch.testing.assert_close(sin, ref_sin, rtol=0, atol=1e-6)
    torch.testing.assert_close(cos, ref_cos, rtol=0, atol=1e-6)


def test_rows_rotate_first_half_and_columns_second_half():
    height, width, head_dim = 3, 5, 8
    sin, _ = rope_sin_cos(height, width, head_dim, dtype=torch.float64)
    row, col = 2, 3
    token = sin[row * width + col]
    # pair 0 has theta = 1 in both halves
    assert token[0].item() == pytest.approx(math.sin(row), abs=1e-12)
    assert token[1].item() == pytest.approx(math.sin(row), abs=1e-12)
    assert token[head_dim // 2].item() == pytest.approx(math.sin(col), abs=1e-12)


@pytest.mark.parametrize('shape,hw', [((2, 3, 15, 8), (3, 5)), ((1, 1, 7, 4), (7, 1)),
                                      ((2, 8, 12, 16), (4, 3))])
def test_apply_rope_matches_complex_reference_forward_and_backward(shape, hw):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    sin, cos = rope_sin_cos(*hw, shape[-1], dtype=torch.float64)
    out = apply_rope(x, sin, cos)
    ref = apply_rope_reference(x, sin, cos)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(out)
    (gx, ) = torch.autograd.grad(out, x, grad)
    (gx_ref, ) = torch.autograd.grad(ref, x, grad)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-12, atol=1e-12)


def test_scores_depend_only_on_the_2d_offset():
    """<R(q, p1), R(k, p2)> == <R(q, p1 + s), R(k, p2 + s)> for any shift s of the grid."""
    head_dim, height, width = 16, 6, 7
    sin, cos = rope_sin_cos(height, width, head_dim, dtype=torch.float64)
    q, k = torch.randn(2, head_dim, dtype=torch.float64)

    def score(p1, p2):
        n1, n2 = p1[0] * width + p1[1], p2[0] * width + p2[1]
        return (apply_rope(q, sin[n1], cos[n1]) * apply_rope(k, sin[n2], cos[n2])).sum()

    torch.testing.assert_close(score((1, 2), (3, 0)), score((3, 5), (5, 3)))
    assert not torch.allclose(score((1, 2), (3, 0)), score((1, 2), (0, 3)))


def test_rotation_keeps_pair_norms_and_dtype():
    x = torch.randn(2, 4, 20, 8, dtype=torch.bfloat16)
    sin, cos = rope_sin_cos(4, 5, 8)
    out = apply_rope(x, sin, cos)
    assert out.dtype == torch.bfloat16
    pair_norm = lambda t: t.float().reshape(*t.shape[:-1], -1, 2).norm(dim=-1)  # noqa: E731
    torch.testing.assert_close(pair_norm(out), pair_norm(x), rtol=2e-2, atol=2e-2)
