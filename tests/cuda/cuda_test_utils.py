"""Helpers shared by the CUDA tests (``tests/cuda``): error measures, test-module loading, inputs.

Everything here is device-agnostic: the tests call it with ``'cuda'``; the same functions run on
the CPU, which is how they were checked on a machine without a GPU.
"""
import importlib.util
import os.path as osp
from typing import Iterable, Sequence

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEVICE = 'cuda'
DEMO_CONFIGS = {
    'det': osp.join(ROOT, 'configs', 'maskrcnn_ravlt_t_demo.py'),
    'seg': osp.join(ROOT, 'configs', 'upernet_ravlt_t_demo.py'),
}
#: autocast dtypes by name (parametrize ids).
HALF_DTYPES = {'float16': torch.float16, 'bfloat16': torch.bfloat16}


def load_test_module(relpath: str, name: str):
    """Import a test file of this repository by path under the private module name ``name``.

    The test folders are not packages, so their modules cannot be imported by a dotted name that
    works both under ``pytest tests/cuda`` and ``pytest tests``. The loaded copy is separate from
    the one pytest collects, and pytest does not collect tests from it.
    """
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def max_rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |actual - expected| / max |expected|`` in float64 (the max-normalised error)."""
    actual, expected = actual.detach().double(), expected.detach().double().to(actual.device)
    scale = expected.abs().max().clamp_min(torch.finfo(torch.float64).tiny)
    return ((actual - expected).abs().max() / scale).item()


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every element of every tensor is finite (no NaN, no inf)."""
    return all(bool(torch.isfinite(t.detach()).all()) for t in tensors)


def forward_backward(fn, inputs: Sequence[torch.Tensor], kwargs: dict, weight_seed: int = 1):
    """``fn(*inputs, **kwargs)`` and the gradients of ``sum(out * w)`` w.r.t. ``inputs``.

    ``w`` is a fixed float64 random tensor (from ``weight_seed``) and the product is taken in
    float64, so runs in different dtypes back-propagate the same weights. Returns the detached
    output and the gradients; the backward runs outside any autocast region of the caller.
    """
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves, **kwargs)
    weight = torch.randn(
        out.shape, generator=torch.Generator().manual_seed(weight_seed), dtype=torch.float64)
    with torch.autocast(device_type=out.device.type, enabled=False):
        loss = (out.double() * weight.to(out.device)).sum()
    grads = torch.autograd.grad(loss, leaves)
    return out.detach(), grads


def backbone_kwargs() -> dict:
    """The two backbones the CUDA tests train: RAVLT-T and SOFT++-Tiny as dense-prediction
    configs build them (bounded landmarks, per-matrix Newton inverse)."""
    return {
        'RAVLT':
        dict(type='RAVLT', arch='t'),
        'SOFT':
        dict(type='SOFT', arch='tiny', normalization='core', pinv_mode='newton', max_landmarks=256),
    }


def build_backbone(name: str, device, seed: int = 0):
    """RAVLT or SOFT from :func:`backbone_kwargs`, initialised from ``seed``, on ``device``."""
    from mmengine.registry import MODELS

    import mmlinattn  # noqa: F401  (registers the backbones)
    torch.manual_seed(seed)
    model = MODELS.build(backbone_kwargs()[name])
    model.init_weights()
    return model.to(device)


def random_images(batch: int, height: int, width: int, device, seed: int = 0) -> torch.Tensor:
    """Normalised-image-like input ``(batch, 3, height, width)``: N(0, 1), seeded on the CPU."""
    images = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))
    return images.to(device)
