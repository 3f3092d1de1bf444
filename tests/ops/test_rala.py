"""RALA and RoPE softmax attention: fast ops against their references, precision under autocast."""
import pytest
import torch
from torch.overrides import TorchFunctionMode

from mmlinattn.ops.rala import (rank_augmented_linear_attention,
                                rank_augmented_linear_attention_reference, rope_softmax_attention,
                                rope_softmax_attention_reference)
from mmlinattn.ops.rope import rope_sin_cos

OPS = {
    'rala': (rank_augmented_linear_attention, rank_augmented_linear_attention_reference),
    'softmax': (rope_softmax_attention, rope_softmax_attention_reference),
}
# (batch, heads, H, W, head_dim)
SHAPES = [(1, 1, 5, 7, 8), (2, 3, 4, 6, 16), (1, 8, 3, 3, 4), (2, 2, 9, 1, 12), (1, 4, 1, 1, 8),
          (1, 2, 11, 13, 32)]


def make_inputs(batch, heads, height, width, head_dim, dtype=torch.float64, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, heads, height * width, head_dim)
    q, k, v = (scale * torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
    sin, cos = rope_sin_cos(height, width, head_dim, dtype=torch.float64)
    return [t.to(dtype) for t in (q, k, v)], sin, cos


@pytest.mark.parametrize('op', sorted(OPS))
@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'B{}h{}_{}x{}_d{}'.format(*s))
def test_fast_matches_reference_forward_and_backward_float64(op, shape):
    fast, reference = OPS[op]
    (q, k, v), sin, cos = make_inputs(*shape)
    inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    ref_inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    out = fast(*inputs, sin, cos)
    ref = reference(*ref_inputs, sin, cos)
    assert out.shape == ref.shape == q.shape and out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, inputs, grad)
    ref_grads = torch.autograd.grad(ref, ref_inputs, grad)
    for name, g, g_ref in zip('qkv', grads, ref_grads):
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-11, msg=f'd{name}')


def test_rala_is_not_plain_linear_attention():
    """The query-conditioned key weights must matter: equal weights give another result."""
    (q, k, v), sin, cos = make_inputs(1, 2, 4, 5, 8, scale=2.0)
    out = rank_augmented_linear_attention(q, k, v, sin, cos)
    phi_q, phi_k = (torch.nn.functional.elu(t) + 1 for t in (q, k))
    from mmlinattn.ops.rope import apply_rope
    plain = (
        apply_rope(phi_q, sin, cos) @ (apply_rope(phi_k, sin, cos).transpose(-1, -2) @ v) /
        (phi_q @ phi_k.sum(-2, keepdim=True).transpose(-1, -2) + 1e-6))
    assert (out - plain).abs().max() > 1e-2


def test_rala_memory_grows_linearly_with_tokens():
    """Peak memory of the op (PyTorch allocator events) at N and 4 N tokens: linear (x4), where
    the reference, which builds the N x N matrix, grows x16."""
    from mmlinattn.analysis.benchmark import peak_memory

    def peak(fn, side):
        (q, k, v), sin, cos = make_inputs(1, 1, side, side, 8, dtype=torch.float32)
        return peak_memory(lambda: fn(q, k, v, sin, cos), torch.device('cpu'))

    fast = peak(rank_augmented_linear_attention, 128) / peak(rank_augmented_linear_attention, 64)
    ref = (
        peak(rank_augmented_linear_attention_reference, 64) /
        peak(rank_augmented_linear_attention_reference, 32))
    assert 3.5 < fast < 4.5, fast
    assert ref > 12, ref


class RecordMatmulDtypes(TorchFunctionMode):

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, '__name__', '') in ('matmul', '__matmul__', 'bmm'):
            self.dtypes.append(tuple(a.dtype for a in args if isinstance(a, torch.Tensor)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_rala_accumulates_in_float32_under_autocast(dtype):
    (q, k, v), sin, cos = make_inputs(2, 2, 6, 7, 16, dtype=dtype)
    recorder = RecordMatmulDtypes()
    with torch.autocast('cpu', dtype=dtype), recorder:
        out = rank_augmented_linear_attention(q, k, v, sin.float(), cos.float())
    assert out.dtype == dtype and torch.isfinite(out).all()
    # scores, denominator, KV buffer, read-out: all in float32
    assert len(recorder.dtypes) == 4
    assert all(d == (torch.float32, torch.float32) for d in recorder.dtypes), recorder.dtypes
    ref = rank_augmented_linear_attention_reference(q.double(), k.double(), v.double(), sin, cos)
    rel = (out.double() - ref).abs().max() / ref.abs().max()
    assert rel < 1e-2  # only the final rounding to 8/11-bit mantissas


def test_rala_half_inputs_with_large_values_stay_finite():
    """A KV buffer summed over 4096 tokens with v ~ 300 overflows float16 (max 65504)."""
    (q, k, _), sin, cos = make_inputs(1, 1, 64, 64, 8, dtype=torch.float16)
    v = make_inputs(1, 1, 64, 64, 8, dtype=torch.float16, seed=1, scale=300.0)[0][2].abs()
    phi_k = torch.nn.functional.elu(k) + 1
    assert not torch.isfinite(phi_k.transpose(-1, -2) @ v).all()  # the naive float16 buffer
    out = rank_augmented_linear_attention(q, k, v, sin, cos)
    ref = rank_augmented_linear_attention_reference(q.double(), k.double(), v.double(), sin, cos)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert ((out.double() - ref).abs().max() / ref.abs().max()) < 1e-2


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_softmax_attention_under_autocast(dtype):
    (q, k, v), sin, cos = make_inputs(1, 4, 8, 9, 16, dtype=torch.float32)
    with torch.autocast('cpu', dtype=dtype):
        out = rope_softmax_attention(q, k, v, sin.float(), cos.float())
    ref = rope_softmax_attention_reference(q.double(), k.double(), v.double(), sin, cos)
    assert torch.isfinite(out).all()
    assert ((out.double() - ref).abs().max() / ref.abs().max()) < 3e-2


def test_softmax_stages_reach_a_fused_sdpa_kernel():
    """RAVLT's heads are strided views of a channels-first map; the op makes them unit-stride so
    SDPA can pick its fused (flash) kernel instead of the N x N fallback. Restricting SDPA to the
    flash kernel raises "No available kernel" otherwise (on CPU as on CUDA)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from mmlinattn.models.backbones.ravlt import GatedRoPEAttention
    torch.manual_seed(0)
    layer = GatedRoPEAttention(64, 2, 'softmax').eval()
    x = torch.randn(1, 64, 12, 10)
    sin, cos = rope_sin_cos(12, 10, 32)
    with torch.no_grad():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            fused = layer(x, sin, cos)
        with sdpa_kernel([SDPBackend.MATH]):
            math = layer(x, sin, cos)
    torch.testing.assert_close(fused, math, rtol=1e-5, atol=1e-6)
