"""Run our backbones the way the released code computes them (the benchmarks' reference).

The official-algorithm path uses the same modules and weights and changes only *how* the maths
is evaluated, so a benchmark can compare both on identical inputs:

* **RAVLT** (qhfan/RALA): stages 1-2 run rank-augmented linear attention in the released code's
  order, which is the order of :func:`mmlinattn.ops.rank_augmented_linear_attention` already
  (``phi``, key re-weighting, RoPE, ``N^-1/2``-scaled KV buffer, read-out); stages 3-4 build the
  ``N x N`` softmax attention matrix explicitly (``softmax(q k^T / sqrt(d)) v``) as the released
  ``VanillaSelfAttention`` does, instead of our fused SDPA call; every channels-first LayerNorm
  makes its output contiguous as the released detection backbone does.
* **SOFT / SOFT++** (fudan-zvg/SOFT): the landmark count grows with the image (``N / r^2`` per
  stage) instead of our ``max_landmarks`` bound, so the ``m x m`` Newton inverse grows with the
  cube of the number of pixels.

Outputs of the RAVLT official path equal the fast path to float32 rounding (tested); SOFT's only
differ when ``max_landmarks`` bounds the grid, which is the point of the bound.
"""
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.backbones.ravlt import RAVLT, GatedRoPEAttention
from ..models.backbones.soft import SOFT, SoftmaxFreeAttention
from ..models.layers import LayerNorm2d
from ..ops import apply_rope, rank_augmented_linear_attention

__all__ = ['OFFICIAL_ATTENTION_OPS', 'official_algorithm', 'rope_softmax_attention_official']


def rope_softmax_attention_official(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                    sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """RAVLT's stage 3-4 attention in the released code's order: rotate q and k with the real
    ``x cos + rotate_pairs(x) sin`` form, build ``softmax(q k^T / sqrt(d))`` (``N x N`` per head)
    and multiply by v.

    Equals :func:`mmlinattn.ops.rope_softmax_attention` (tested); shapes as there.
    """
    q, k = apply_rope(q, sin, cos), apply_rope(k, sin, cos)
    attn = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5                 # (B, h, N, N)
    return attn.softmax(dim=-1) @ v


#: Attention op per RAVLT ``attn_type`` on the official-algorithm path. The released RALA order
#: is already the order of our linear op, so stages 1-2 run the same function.
OFFICIAL_ATTENTION_OPS: Dict[str, Callable] = {
    'linear': rank_augmented_linear_attention,
    'softmax': rope_softmax_attention_official,
}


def _contiguous_layer_norm_2d(norm: LayerNorm2d) -> Callable:
    """The released LayerNorm2d: channels-last LayerNorm, permuted back, made contiguous."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1).contiguous(), norm.normalized_shape, norm.weight,
                         norm.bias, norm.eps)
        return x.permute(0, 3, 1, 2).contiguous()

    return forward


@contextmanager
def official_algorithm(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily evaluate a RAVLT or SOFT backbone as the released code does.

    Args:
        model (nn.Module): a :class:`RAVLT` or :class:`SOFT` (or a model containing one, e.g. a
            detector); other modules are left alone.

    Yields:
        nn.Module: the same model, restored on exit (also on error).

    Raises:
        TypeError: if ``model`` contains neither backbone.
    """
    if not any(isinstance(m, (RAVLT, SOFT)) for m in model.modules()):
        raise TypeError(f'official_algorithm() needs a RAVLT or SOFT backbone, got '
                        f'{type(model).__name__} without one')
    undo: List[Tuple[object, str, object, bool]] = []

    def patch(obj, name, value):
        had = name in vars(obj)
        undo.append((obj, name, vars(obj).get(name), had))
        setattr(obj, name, value)

    try:
        for module in model.modules():
            if isinstance(module, GatedRoPEAttention):
                patch(module, 'attn_op', OFFICIAL_ATTENTION_OPS[module.attn_type])
            elif isinstance(module, LayerNorm2d):
                patch(module, 'forward', _contiguous_layer_norm_2d(module))
            elif isinstance(module, SoftmaxFreeAttention):
                patch(module, 'max_landmarks', None)
        yield model
    finally:
        for obj, name, value, had in reversed(undo):
            if had:
                setattr(obj, name, value)
            else:
                delattr(obj, name)
