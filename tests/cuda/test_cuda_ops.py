"""Every registered op backend against its ``'reference'`` twin on CUDA, forward and backward.

The cases are those of ``tests/ops/test_backends.py`` (imported, not copied), so a backend or case
added there is tested here too. Errors are max-normalised, ``max |x - ref| / max |ref|``, against
the reference evaluated in float64 on the *same* (rounded) inputs, so they measure the op alone:

* float32: every backend (``'reference'`` included) within :data:`FLOAT32_BOUND`; TF32 is off
  (``conftest.no_tf32``). Measured on the CPU: at most 8e-7 (outputs and gradients).
* autocast, inputs in the autocast dtype (what a layer under autocast hands the op): every
  non-reference backend finite and within :data:`HALF_BOUNDS`. The ops keep their sums in float32
  under autocast by design; what remains is the rounding of the half-precision inputs to their
  inner ops (RoPE tables, SDPA) and outputs. Measured with CPU autocast: at most 1.8e-2 (bfloat16,
  the RoPE softmax via SDPA) and 1.6e-3 (float16).
"""
import pytest
import torch
from cuda_test_utils import (DEVICE, HALF_DTYPES, all_finite, forward_backward, load_test_module,
                             max_rel_error)

import mmlinattn  # noqa: F401  (registers the ops)
from mmlinattn.ops import REFERENCE_BACKEND, get_op, op_backends, op_kinds

CASES = load_test_module('tests/ops/test_backends.py', '_mmlinattn_backend_cases').CASES
FLOAT32_BOUND = 1e-5
HALF_BOUNDS = {torch.float16: 1e-2, torch.bfloat16: 5e-2}

ALL = [(kind, backend, case_id, make) for kind in op_kinds() for backend in op_backends(kind)
       for case_id, make in CASES.get(kind, [])]
FAST = [params for params in ALL if params[1] != REFERENCE_BACKEND]


def _ids(params):
    return [f'{kind}-{backend}-{case_id}' for kind, backend, case_id, _ in params]


def check_float32(kind, backend, make, device):
    """Float32 ``backend`` vs the float64 reference on the same inputs; returns the errors."""
    tensors, kwargs = make(torch.Generator().manual_seed(0))
    inputs = [t.to(device, torch.float32) for t in tensors]
    ref_out, ref_grads = forward_backward(
        get_op(kind, REFERENCE_BACKEND), [t.double() for t in inputs], kwargs)
    out, grads = forward_backward(get_op(kind, backend), inputs, kwargs)
    assert out.device.type == torch.device(device).type and out.dtype == torch.float32
    assert all_finite([out, *grads]), 'NaN or inf in float32'
    return max_rel_error(out, ref_out), [max_rel_error(g, r) for g, r in zip(grads, ref_grads)]


def check_autocast(kind, backend, make, dtype, device):
    """``backend`` under autocast with inputs in ``dtype`` vs the float64 reference on the same
    (rounded) inputs; returns the errors after checking that everything is finite."""
    tensors, kwargs = make(torch.Generator().manual_seed(0))
    inputs = [t.to(device, dtype) for t in tensors]
    ref_out, ref_grads = forward_backward(
        get_op(kind, REFERENCE_BACKEND), [t.double() for t in inputs], kwargs)
    with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
        out, grads = forward_backward(get_op(kind, backend), inputs, kwargs)
    assert all_finite([out]), f'NaN or inf in the output under {dtype} autocast'
    assert all_finite(grads), f'NaN or inf in a gradient under {dtype} autocast'
    return max_rel_error(out, ref_out), [max_rel_error(g, r) for g, r in zip(grads, ref_grads)]


@pytest.mark.parametrize('kind,backend,case_id,make', ALL, ids=_ids(ALL))
def test_float32_matches_reference(kind, backend, case_id, make):
    out_error, grad_errors = check_float32(kind, backend, make, DEVICE)
    assert out_error < FLOAT32_BOUND, f'output: {out_error:.2e}'
    assert max(grad_errors) < FLOAT32_BOUND, f'gradients: {grad_errors}'


@pytest.mark.parametrize('dtype_name', list(HALF_DTYPES))
@pytest.mark.parametrize('kind,backend,case_id,make', FAST, ids=_ids(FAST))
def test_autocast_finite_and_close_to_reference(kind, backend, case_id, make, dtype_name):
    dtype = HALF_DTYPES[dtype_name]
    out_error, grad_errors = check_autocast(kind, backend, make, dtype, DEVICE)
    bound = HALF_BOUNDS[dtype]
    assert out_error < bound, f'output: {out_error:.2e} (bound {bound:g})'
    assert max(grad_errors) < bound, f'gradients: {grad_errors} (bound {bound:g})'
