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
from typing import Iterator, List, Tuple

import torch.nn as nn

from ..models.backbones.base import PyramidBackbone

__all__ = ['official_algorithm']


@contextmanager
def official_algorithm(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily evaluate every mmlinattn backbone in ``model`` as the released code does.

    Each backbone says how through
    :meth:`~mmlinattn.models.backbones.base.PyramidBackbone.official_algorithm_patches`; this
    applies the changes and undoes them on exit.

    Args:
        model (nn.Module): a backbone, or a model containing one (e.g. a detector); other modules
            are left alone.

    Yields:
        nn.Module: the same model, restored on exit (also on error).

    Raises:
        TypeError: if ``model`` contains no mmlinattn backbone.
    """
    backbones = [m for m in model.modules() if isinstance(m, PyramidBackbone)]
    if not backbones:
        raise TypeError(f'official_algorithm() needs an mmlinattn backbone (RAVLT, SOFT, ...), got '
                        f'{type(model).__name__} without one')
    undo: List[Tuple[object, str, object, bool]] = []
    try:
        for backbone in backbones:
            for obj, name, value in backbone.official_algorithm_patches():
                undo.append((obj, name, vars(obj).get(name), name in vars(obj)))
                setattr(obj, name, value)
        yield model
    finally:
        for obj, name, value, had in reversed(undo):
            if had:
                setattr(obj, name, value)
            else:
                delattr(obj, name)
