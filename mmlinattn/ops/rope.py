"""2-D rotary position embedding (RoPE) on row-major token grids, as used by RAVLT.

A token at grid position ``(row, col)`` of an ``H x W`` map has index ``n = row * W + col``.
Its ``head_dim`` channels are split in two halves: the pairs of the first half rotate by
``row * theta_i``, the pairs of the second half by ``col * theta_i``, with

    theta_i = base ** -(i / (m - 1)),  i = 0 .. m - 1,  m = head_dim // 4

i.e. ``base ** -linspace(0, 1, m)``: **both endpoints are included** (``theta_0 = 1`` and
``theta_{m-1} = 1 / base``), which differs from the usual ``i / m`` schedule. Every frequency is
used for one channel pair ``(2i, 2i + 1)`` (interleaved pairs), rotated as

    x'_{2i}     = x_{2i} cos - x_{2i+1} sin
    x'_{2i + 1} = x_{2i + 1} cos + x_{2i} sin

Positions are absolute integers, so any grid size works without interpolation.
"""
from typing import Optional, Tuple

import torch

from .registry import register_op

__all__ = [
    'rope_frequencies', 'rope_sin_cos', 'apply_rope', 'rope_sin_cos_reference',
    'apply_rope_reference'
]


def rope_frequencies(head_dim: int,
                     base: float = 10000.0,
                     device: Optional[torch.device] = None) -> torch.Tensor:
    """Per-pair rotation frequencies for one axis.

    Args:
        head_dim (int): channels per attention head; must be divisible by 4.
        base (float): frequency base. Defaults to 10000.
        device (torch.device, optional): where to build the tensor.

    Returns:
        Tensor: ``(head_dim // 2,)`` float32, ``[t0, t0, t1, t1, ...]``. Always float32 so that
        a float64 model sees exactly the frequencies of the float32 official buffer.
    """
    if head_dim % 4 != 0:
        raise ValueError(f'2-D RoPE needs head_dim divisible by 4, got {head_dim}')
    exponents = torch.linspace(0, 1, head_dim // 4, dtype=torch.float32, device=device)
    theta = 1.0 / (base**exponents)
    return theta.repeat_interleave(2)


def rope_sin_cos(height: int,
                 width: int,
                 head_dim: int,
                 base: float = 10000.0,
                 device: Optional[torch.device] = None,
                 dtype: torch.dtype = torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sine and cosine tables for a ``height x width`` grid.

    Args:
        height (int): grid rows H.
        width (int): grid columns W.
        head_dim (int): channels per head d (divisible by 4).
        base (float): frequency base. Defaults to 10000.
        device (torch.device, optional): where to build the tables.
        dtype (torch.dtype): dtype in which the angles and tables are computed. Defaults to
            float32.

    Returns:
        tuple[Tensor, Tensor]: ``sin`` and ``cos``, each ``(H * W, d)``; they broadcast against
        ``(B, heads, N, d)`` tensors.
    """
    freqs = rope_frequencies(head_dim, base, device).to(dtype)  # (d/2,)
    row_angle = torch.arange(height, device=device, dtype=dtype)[:, None] * freqs  # (H, d/2)
    col_angle = torch.arange(width, device=device, dtype=dtype)[:, None] * freqs  # (W, d/2)
    half = head_dim // 2
    angle = torch.cat([
        row_angle[:, None, :].expand(height, width, half), col_angle[None, :, :].expand(
            height, width, half)
    ],
                      dim=-1)
    angle = angle.reshape(height * width, head_dim)
    return angle.sin(), angle.cos()


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """``(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)`` along the last axis."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([-odd, even], dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x`` by the table angles.

    Args:
        x (Tensor): ``(..., N, d)``, e.g. ``(B, heads, N, d)``.
        sin (Tensor): ``(N, d)`` from :func:`rope_sin_cos`.
        cos (Tensor): ``(N, d)`` from :func:`rope_sin_cos`.

    Returns:
        Tensor: same shape and dtype as ``x``.
    """
    sin, cos = sin.to(x.dtype), cos.to(x.dtype)
    return x * cos + _rotate_pairs(x) * sin


def rope_sin_cos_reference(height: int,
                           width: int,
                           head_dim: int,
                           base: float = 10000.0,
                           dtype: torch.dtype = torch.float64) -> Tuple[torch.Tensor, torch.Tensor]:
    """Plain-loop version of :func:`rope_sin_cos` (same signature minus ``device``)."""
    m = head_dim // 4
    assert head_dim % 4 == 0 and m >= 1
    theta = [1.0 / base**(i / (m - 1) if m > 1 else 0.0) for i in range(m)]
    sin = torch.zeros(height * width, head_dim, dtype=dtype)
    cos = torch.zeros(height * width, head_dim, dtype=dtype)
    for row in range(height):
        for col in range(width):
            n = row * width + col
            for axis, pos in enumerate((row, col)):
                for i, t in enumerate(theta):
                    for c in (2 * i, 2 * i + 1):
                        channel = axis * (head_dim // 2) + c
                        angle = torch.tensor(pos * t, dtype=torch.float64)
                        sin[n, channel] = angle.sin()
                        cos[n, channel] = angle.cos()
    return sin, cos


def apply_rope_reference(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Complex-number version of :func:`apply_rope`: pair ``(x_{2i}, x_{2i+1})`` is the complex
    number ``x_{2i} + 1j * x_{2i+1}``, multiplied by ``exp(1j * angle)``. Float32/64 only."""
    pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    rotation = torch.complex(cos[..., 0::2], sin[..., 0::2]).to(pairs.dtype)
    return torch.view_as_real(pairs * rotation).flatten(-2)


register_op('apply_rope', 'torch', apply_rope)
register_op('apply_rope', 'reference', apply_rope_reference)
