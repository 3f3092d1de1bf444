"""Graph-export helpers: the forms our ops take while a model is exported (ONNX, ``torch.export``).

Eager PyTorch never runs this code. While ``torch.onnx.export`` traces a model, tensor sizes are
values of the graph, but a Python ``int(...)``, ``math.sqrt`` or ``if`` on them is evaluated once
and frozen into the file as a constant, and some operators have no ONNX form for sizes known only
at run time (``adaptive_avg_pool2d`` with an output size other than 1 is one). The ops check
:func:`is_exporting` and use the functions here instead, which compute sizes with tensor operations
so that one exported file is correct at every input size.
"""
import warnings
from typing import Optional, Sequence, Union

import torch

__all__ = [
    'is_exporting', 'example_size', 'adaptive_avg_pool2d_exportable', 'ExportUnsupportedError'
]

Size = Union[int, torch.Tensor]


class ExportUnsupportedError(RuntimeError):
    """A setting whose computation has no graph form with the same numerics."""


def is_exporting() -> bool:
    """True while ``torch.onnx.export`` (either exporter) or ``torch.export`` traces the model."""
    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())


def example_size(size: Size) -> Optional[int]:
    """The value of a tensor size at the example input of an export, for a check that decides
    whether to export and adds nothing to the graph.

    The TorchScript tracer hands sizes out as 0-dim tensors and warns when one is read as a Python
    number (that number would be frozen into the graph); here it is read on purpose, so the warning
    is silenced. ``torch.export``'s symbolic sizes have no single value: None.

    Args:
        size (int | Tensor | SymInt): e.g. ``x.shape[-1]``.

    Returns:
        int | None
    """
    if isinstance(size, int):
        return size
    if torch.is_tensor(size):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            return int(size)
    return None


def _pooling_matrix(in_size: Size, out_size: Size, dtype: torch.dtype,
                    device: torch.device) -> torch.Tensor:
    """``(out, in)`` matrix averaging the input cells of each output bin, with the bins of
    ``adaptive_avg_pool2d``: output ``i`` covers ``[floor(i in / out), ceil((i + 1) in / out))``."""
    index = torch.arange(out_size, device=device)
    start = torch.div(index * in_size, out_size, rounding_mode='floor')
    end = torch.div((index + 1) * in_size + out_size - 1, out_size, rounding_mode='floor')
    cells = torch.arange(in_size, device=device)
    inside = (cells >= start[:, None]) & (cells < end[:, None])
    return inside.to(dtype) / (end - start)[:, None].to(dtype)


def adaptive_avg_pool2d_exportable(x: torch.Tensor, output_size: Sequence[Size]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` as two matrix products, for output sizes known only at run time.

    ``P_h x P_w^T`` with the averaging matrices of the same bins; equal to the eager op up to
    float rounding (the sums run in another order), and exactly the identity when the output size
    equals the input size. ONNX's pooling operators take their window as a fixed attribute, so this
    is the form in which the pool follows the input size in an exported graph.

    Args:
        x (Tensor): ``(..., H, W)``.
        output_size (Sequence[int | Tensor]): ``(h, w)``; ints or 0-dim integer tensors (sizes
            computed in the graph).

    Returns:
        Tensor: ``(..., h, w)`` in the dtype of ``x``.
    """
    out_h, out_w = output_size
    rows = _pooling_matrix(x.shape[-2], out_h, x.dtype, x.device)  # (h, H)
    cols = _pooling_matrix(x.shape[-1], out_w, x.dtype, x.device)  # (w, W)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))
