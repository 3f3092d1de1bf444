"""RAVLT-T and SOFT++-Tiny on CUDA: mixed-precision training steps at detection resolution, and
channels-last memory format.

* AMP: a batch of 2 images of 800 x 1333 (mmdet's 1333 x 800 scale, not padded to 32: the odd
  grid sizes are part of the test), forward and backward under autocast, float16 with a
  ``GradScaler`` and bfloat16 without: every output and every parameter gradient finite, every
  parameter reached by a gradient, and (float16) the scaler found no inf.
* channels-last: the model converted with ``model.to(memory_format=torch.channels_last)`` and fed
  a channels-last input gives the outputs of the contiguous model within
  :data:`CHANNELS_LAST_BOUND` (float32, TF32 off, eval mode); measured on the CPU (512 x 640):
  at most 2.4e-6 (cuDNN picks other algorithms per layout on the GPU, hence the margin).
"""
import copy

import pytest
import torch
from cuda_test_utils import all_finite, build_backbone, max_rel_error, random_images

AMP_INPUT = (2, 800, 1333)  # batch, height, width
CHANNELS_LAST_INPUT = (2, 512, 640)
CHANNELS_LAST_BOUND = 1e-4
#: float16 loss scale, 64x below GradScaler's default 65536: an inf found at this scale points to
#: the network's own float16 range rather than to the scaling.
INIT_SCALE = 2.0**10
BACKBONES = ('RAVLT', 'SOFT')


def amp_step(model, images, dtype, scaler=None):
    """One training forward/backward under autocast; returns the outputs and the optimizer.

    The loss is the mean square of every output (computed in float32). With ``scaler`` the
    backward is scaled and the gradients unscaled again (``scaler.unscale_``) before they are
    returned on the parameters, as a training loop sees them before ``scaler.step``.
    """
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=images.device.type, dtype=dtype):
        outs = model(images)
        loss = sum(out.float().square().mean() for out in outs)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    return outs, optimizer


def check_gradients(model):
    """Every trainable parameter has a finite gradient, and not all of them are zero."""
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f'parameters without a gradient: {missing[:10]}'
    bad = [
        n for n, p in model.named_parameters() if p.grad is not None and not all_finite([p.grad])
    ]
    assert not bad, f'non-finite gradients: {bad[:10]}'
    total = sum(p.grad.double().square().sum() for p in model.parameters() if p.grad is not None)
    assert total > 0, 'every gradient is zero'


@pytest.mark.parametrize('name', BACKBONES)
def test_amp_float16_with_grad_scaler(name, cuda_device):
    model = build_backbone(name, cuda_device)
    images = random_images(*AMP_INPUT, device=cuda_device)
    scaler = torch.amp.GradScaler('cuda', init_scale=INIT_SCALE)
    outs, optimizer = amp_step(model, images, torch.float16, scaler)
    assert len(outs) == 4 and all(out.shape[0] == AMP_INPUT[0] for out in outs)
    assert all_finite(outs), 'NaN or inf in a float16 output'
    check_gradients(model)
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() == INIT_SCALE, 'the scaler found inf/NaN gradients and skipped'


@pytest.mark.parametrize('name', BACKBONES)
def test_amp_bfloat16(name, cuda_device):
    if not torch.cuda.is_bf16_supported():
        pytest.skip('this GPU has no bfloat16 support')
    model = build_backbone(name, cuda_device)
    images = random_images(*AMP_INPUT, device=cuda_device)
    outs, _ = amp_step(model, images, torch.bfloat16)
    assert all(out.dtype in (torch.bfloat16, torch.float32) for out in outs)
    assert all_finite(outs), 'NaN or inf in a bfloat16 output'
    check_gradients(model)


def channels_last_outputs(model, images):
    """Eval-mode float32 outputs of ``model`` and of a channels-last copy on channels-last input."""
    model.eval()
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model(images.contiguous())
        outs = fast(images.to(memory_format=torch.channels_last))
    return ref, outs


@pytest.mark.parametrize('name', BACKBONES)
def test_channels_last_matches_contiguous(name, cuda_device):
    model = build_backbone(name, cuda_device)
    images = random_images(*CHANNELS_LAST_INPUT, device=cuda_device)
    ref, outs = channels_last_outputs(model, images)
    assert all(a.shape == b.shape for a, b in zip(ref, outs)) and len(ref) == len(outs) == 4
    assert all_finite(outs)
    errors = [max_rel_error(a, b) for a, b in zip(outs, ref)]
    assert max(errors) < CHANNELS_LAST_BOUND, f'per output: {errors}'
