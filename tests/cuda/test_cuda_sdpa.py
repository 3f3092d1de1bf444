"""SDPA backend selection for RAVLT's softmax stages (the op ``rope_softmax_attention``).

``torch.nn.attention.sdpa_kernel([backend])`` restricts ``scaled_dot_product_attention`` to one
backend and raises ``RuntimeError('No available kernel...')`` when that backend cannot take the
inputs, so an op call that returns inside the context *ran* on that fused kernel.

Shapes are those of RAVLT-T's stage 2 at 1333 x 800 (a 50 x 84 grid, N = 4200 tokens, 4 heads of
head_dim 64, batch 2). Both fused kernels (flash, memory-efficient) must run in float16 and
bfloat16 and match the MATH backend, forward and backward, within :data:`BOUNDS` (max-normalised;
measured with the CPU flash kernel against MATH: at most 8.8e-3 in bfloat16, 1.1e-3 in
float16).
"""
import pytest
import torch
from cuda_test_utils import DEVICE, HALF_DTYPES, all_finite, forward_backward, max_rel_error
from torch.nn.attention import SDPBackend, sdpa_kernel

from mmlinattn.models.backbones.ravlt import GatedRoPEAttention
from mmlinattn.ops.rala import rope_softmax_attention
from mmlinattn.ops.rope import rope_sin_cos

GRID = (50, 84)  # RAVLT-T stage 2 at 800 x 1333
BATCH, HEADS, HEAD_DIM = 2, 4, 64
FUSED = {'flash': SDPBackend.FLASH_ATTENTION, 'efficient': SDPBackend.EFFICIENT_ATTENTION}
BOUNDS = {torch.float16: 1e-2, torch.bfloat16: 5e-2}


def attention_inputs(dtype, device, seed=0):
    """Contiguous ``q, k, v`` of shape ``(B, heads, N, head_dim)`` in ``dtype`` and the RoPE tables
    (float32, as the RAVLT stage builds them)."""
    g = torch.Generator().manual_seed(seed)
    num_tokens = GRID[0] * GRID[1]
    qkv = [torch.randn(BATCH, HEADS, num_tokens, HEAD_DIM, generator=g) for _ in range(3)]
    sin, cos = rope_sin_cos(*GRID, HEAD_DIM, device=device)
    return [t.to(device, dtype) for t in qkv], dict(sin=sin, cos=cos)


def run_with_backend(backend, inputs, kwargs):
    """``rope_softmax_attention`` forward and backward with SDPA restricted to ``backend``."""
    with sdpa_kernel([backend]):
        return forward_backward(rope_softmax_attention, inputs, kwargs)


def compare_backends(backend, dtype, device):
    """Errors of ``backend`` against MATH (output, then one per input gradient)."""
    inputs, kwargs = attention_inputs(dtype, device)
    out, grads = run_with_backend(backend, inputs, kwargs)
    ref_out, ref_grads = run_with_backend(SDPBackend.MATH, inputs, kwargs)
    assert out.dtype == dtype and all_finite([out, *grads])
    return [max_rel_error(out, ref_out)] + [max_rel_error(a, b) for a, b in zip(grads, ref_grads)]


@pytest.mark.parametrize('dtype_name', list(HALF_DTYPES))
@pytest.mark.parametrize('fused', list(FUSED))
def test_fused_sdpa_runs_and_matches_math(fused, dtype_name):
    dtype = HALF_DTYPES[dtype_name]
    errors = compare_backends(FUSED[fused], dtype, DEVICE)
    assert max(errors) < BOUNDS[dtype], f'output, dq, dk, dv: {errors}'


def model_layout_call(module, dtype, device, backend):
    """Run a softmax-stage attention layer (``GatedRoPEAttention``) under autocast with SDPA
    restricted to ``backend``: the op sees q, k, v exactly as RAVLT hands them over."""
    x = torch.randn(BATCH, HEADS * HEAD_DIM, *GRID, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    sin, cos = rope_sin_cos(*GRID, HEAD_DIM, device=device)
    with sdpa_kernel([backend]), torch.autocast(device_type=torch.device(device).type, dtype=dtype):
        return module(x, sin, cos)


@pytest.mark.parametrize('fused', list(FUSED))
def test_fused_sdpa_runs_in_the_ravlt_layer(fused, cuda_device):
    torch.manual_seed(0)
    layer = GatedRoPEAttention(HEADS * HEAD_DIM, HEADS, 'softmax').to(cuda_device)
    out = model_layout_call(layer, torch.float16, cuda_device, FUSED[fused])
    assert all_finite([out])
