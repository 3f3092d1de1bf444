"""The CUDA suite: every test in this folder is marked ``cuda`` and skipped without a CUDA device.

``make test-gpu`` runs them (``pytest -m cuda tests``); ``make test`` / ``make test-slow`` deselect
them. On a machine without CUDA (or with the CPU build of torch) every test here is collected and
reported as skipped with :data:`NO_CUDA_REASON`, so ``make test-gpu`` still exits 0.

Float32 comparisons must not depend on the machine's TF32 defaults (cuDNN convolutions use TF32
by default on Ampere and later): :func:`no_tf32` switches TF32 off around every test here, and a
test that wants it on says so.
"""
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
NO_CUDA_REASON = ('CUDA is not available (torch.cuda.is_available() is False: no NVIDIA GPU, or '
                  f'the CPU build of torch {torch.__version__}); the tests/cuda suite needs one')


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, False where the CPU build cannot even ask."""
    try:
        return torch.cuda.is_available()
    except Exception:  # a broken driver set-up: treat as no CUDA, say so in the skip reason
        return False


@pytest.hookimpl(tryfirst=True)  # before the ``-m`` deselection reads the markers
def pytest_collection_modifyitems(config, items):
    """Mark every test of this folder ``cuda`` and skip it when CUDA is not available.

    A conftest's collection hook sees the items of the whole session: only those under this
    folder are touched.
    """
    skip = None if cuda_available() else pytest.mark.skip(reason=NO_CUDA_REASON)
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.cuda)
            if skip is not None:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def no_tf32():
    """TF32 off for matmuls and cuDNN convolutions during the test, restored afterwards."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


@pytest.fixture
def cuda_device():
    """``torch.device('cuda', 0)`` with a clean allocator state; frees cached memory after."""
    device = torch.device('cuda', 0)
    torch.cuda.empty_cache()
    yield device
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
