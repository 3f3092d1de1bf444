"""FLOP counting with ``mmengine.analysis`` that includes the attention mmengine does not see.

``mmengine.analysis.FlopAnalyzer`` (fvcore's counter) traces a model with ``torch.jit`` and counts
only the operators it has a handle for. Two operators of our backbones have none, so they are
reported as "unsupported" and counted as **zero**:

* ``aten::scaled_dot_product_attention`` - the global softmax attention of RAVLT stages 2-3 and of
  SOFT stage 3 (``torch.nn.functional.scaled_dot_product_attention``). At detection resolution it
  is about half of a RAVLT backbone's cost.
* ``prim::PythonOp._NewtonSchulzPinv`` - the autograd Function of SOFT's Newton-Schulz inverse
  (:func:`mmlinattn.ops.soft.newton_schulz_pinv`), O(m^3) per head.

:data:`EXTRA_FLOP_HANDLES` registers a handle for each; :func:`count_flops` applies them.

Convention (mmengine's and fvcore's): **one fused multiply-add is one flop**, i.e. the numbers are
MACs; additions, softmax, exponentials, scaling and other element-wise work are not counted.
A matrix product ``(n, k) @ (k, p)`` is ``n * k * p``. The handles follow the same rule:

* scaled dot-product attention with queries ``(..., L, E)``, keys ``(..., S, E)``, values
  ``(..., S, Ev)``: ``prod(...) * L * S * (E + Ev)`` - ``Q K^T`` plus ``A V``; for self-attention
  with ``h`` heads of width ``d`` on ``N`` tokens that is ``2 * B * h * N^2 * d``. Masks, causality
  and dropout are ignored (the dense product is counted), as is the softmax.
* the Newton-Schulz inverse of a batch of ``(m, m)`` matrices with ``k`` iterations:
  ``batch * (2 * k * m^3 + m^2)`` - each iteration ``V <- 2 V - (V P) V`` is two ``m x m``
  products; ``m^2`` is the initial scaling ``V_0 = alpha P``. The modes with a scale search
  (``'newton_batch_scaled'``, ``'newton'``) add one ``A A`` product (``m^3``);
  ``'newton_batch_scaled'`` computes it once more per halving of the scale, which depends on the
  data and is not counted. The formula lives next to the op
  (:func:`mmlinattn.ops.soft.newton_schulz_pinv_macs`).
"""
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape

from ..ops.soft import _NewtonSchulzPinv, newton_schulz_pinv_macs

__all__ = [
    'SDPA_OP', 'NEWTON_SCHULZ_PINV_OP', 'ATTENTION_OPERATORS', 'EXTRA_FLOP_HANDLES',
    'scaled_dot_product_attention_flop_jit', 'newton_schulz_pinv_flop_jit', 'FlopCount',
    'count_flops', 'count_backbone_flops', 'count_model_flops', 'num_params'
]

#: The traced name of ``torch.nn.functional.scaled_dot_product_attention``.
SDPA_OP = 'aten::scaled_dot_product_attention'
#: The traced name of SOFT's Newton-Schulz inverse (an autograd Function: ``prim::PythonOp.<cls>``).
NEWTON_SCHULZ_PINV_OP = f'prim::PythonOp.{_NewtonSchulzPinv.__name__}'

#: Operator names (as in :attr:`FlopCount.by_operator`) of the token-mixing products: the
#: attention matmuls that module-hook counters such as mmcv 1.x's ``get_model_complexity_info``
#: do not see. In our backbones ``matmul`` only occurs in attention (projections are convs or
#: ``linear``).
ATTENTION_OPERATORS = ('matmul', 'bmm', 'einsum', 'scaled_dot_product_attention',
                       f'PythonOp.{_NewtonSchulzPinv.__name__}')


def _prod(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def scaled_dot_product_attention_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """mmengine handle for ``aten::scaled_dot_product_attention``: ``Q K^T`` + ``A V`` products.

    Inputs are ``query (..., L, E)``, ``key (..., S, E)``, ``value (..., S, Ev)`` and the scalar
    arguments; the batch dimensions (after broadcasting, e.g. grouped-query attention) are read
    from the output ``(..., L, Ev)``.
    """
    query, key = get_shape(inputs[0]), get_shape(inputs[1])
    out = get_shape(outputs[0])
    batch_and_queries = _prod(out[:-1])  # prod(...) * L
    num_keys, key_dim, value_dim = key[-2], query[-1], out[-1]
    return batch_and_queries * num_keys * (key_dim + value_dim)


def newton_schulz_pinv_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """mmengine handle for ``prim::PythonOp._NewtonSchulzPinv`` (see the module docstring).

    The iteration count and mode are Python scalars of the traced call; they are read from the
    node (``scalar_args``). The matrix batch ``(..., m, m)`` is the first input.
    """
    shape = get_shape(inputs[0])
    num_iters, mode = outputs[0].node().scalar_args()[:2]
    return _prod(shape[:-2]) * newton_schulz_pinv_macs(shape[-1], int(num_iters), mode)


#: Handles to add to a ``FlopAnalyzer`` (``analyzer.set_op_handle(**EXTRA_FLOP_HANDLES)``).
EXTRA_FLOP_HANDLES = {
    SDPA_OP: scaled_dot_product_attention_flop_jit,
    NEWTON_SCHULZ_PINV_OP: newton_schulz_pinv_flop_jit,
}


@dataclass
class FlopCount:
    """Result of :func:`count_flops`.

    Attributes:
        total (int): all counted flops (1 multiply-add = 1 flop).
        by_operator (Counter): flops per operator (``conv``, ``matmul``, ``linear``,
            ``scaled_dot_product_attention``, ``PythonOp._NewtonSchulzPinv``, ...).
        unsupported (Counter): operators that were traced but have no handle (counted as 0),
            with how often they occurred; element-wise ops, mostly.
    """
    total: int
    by_operator: Counter = field(default_factory=Counter)
    unsupported: Counter = field(default_factory=Counter)

    @property
    def attention(self) -> int:
        """Flops of the attention products (:data:`ATTENTION_OPERATORS`)."""
        return sum(self.by_operator.get(op, 0) for op in ATTENTION_OPERATORS)


def count_flops(model: nn.Module,
                inputs: Union[torch.Tensor, Tuple],
                extra_handles: bool = True) -> FlopCount:
    """Count the flops of ``model(*inputs)`` with mmengine's analyzer (eval mode, no grad).

    Args:
        model (nn.Module): any module whose forward takes tensors.
        inputs (Tensor | tuple): the forward's positional inputs.
        extra_handles (bool): register :data:`EXTRA_FLOP_HANDLES`. ``False`` gives mmengine's
            plain count (attention through SDPA and the Newton inverse counted as 0).
            Defaults to True.

    Returns:
        FlopCount: total, per operator, and the unsupported operators.
    """
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs, )
    analyzer = FlopAnalyzer(model, inputs)
    if extra_handles:
        analyzer.set_op_handle(**EXTRA_FLOP_HANDLES)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            total = analyzer.total()
            by_operator = analyzer.by_operator()
            unsupported = analyzer.unsupported_ops()
    finally:
        model.train(was_training)
    return FlopCount(int(total), Counter(by_operator), Counter(unsupported))


def num_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_backbone_flops(backbone: nn.Module,
                         shape: Tuple[int, int] = (224, 224),
                         in_channels: int = 3,
                         seed: int = 0) -> FlopCount:
    """Flops of a backbone on one ``(1, in_channels, H, W)`` image (random, seeded).

    The image content does not change the count, except that SOFT's ``'newton_batch_scaled'`` scale
    search may halve a different number of times (not counted, see the module docstring).
    """
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, in_channels, *shape, generator=generator)
    return count_flops(backbone, image)


class _TensorModeForward(nn.Module):
    """Calls ``model._forward(inputs, data_samples)`` (mmdet/mmseg ``mode='tensor'``) so that a
    whole detector or segmentor can be traced from a tensor input."""

    def __init__(self, model: nn.Module, data_samples: Optional[list]):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        return self.model._forward(inputs, self.data_samples)


def _data_samples(task: str, shape: Tuple[int, int]) -> Optional[list]:
    height, width = shape
    meta = dict(
        img_shape=(height, width),
        ori_shape=(height, width),
        pad_shape=(height, width),
        batch_input_shape=(height, width),
        scale_factor=(1.0, 1.0),
        img_id=0)
    if task == 'mmdet':
        from mmdet.structures import DetDataSample
        return [DetDataSample(metainfo=meta)]
    from mmseg.structures import SegDataSample
    return [SegDataSample(metainfo=meta)]


@contextmanager
def _mask_heads_on_first_rois(model: nn.Module, max_rois: Optional[int]):
    """Run a cascade RoI head's mask heads on its first ``max_rois`` proposals only.

    mmdet 3.3's ``StandardRoIHead.forward`` (tensor mode) runs the mask head on the first 100
    proposals, as mmdet 2.x's ``forward_dummy`` did for every detector, but
    ``CascadeRoIHead.forward`` runs its three mask heads on all of them (about 1,000), which
    triples a Cascade Mask R-CNN's count. The outputs are repeated to the full length (no flops),
    so the rest of the forward is unchanged.
    """
    roi_head = getattr(model, 'roi_head', None)
    try:
        from mmdet.models.roi_heads import CascadeRoIHead
    except ImportError:  # mmdet not installed: nothing to cap
        CascadeRoIHead = ()
    if max_rois is None or not isinstance(roi_head, CascadeRoIHead) or not roi_head.with_mask:
        yield
        return
    mask_forward = roi_head._mask_forward

    def capped(stage, x, rois):
        results = mask_forward(stage, x, rois[:max_rois])
        repeats = -(-rois.shape[0] // max(results['mask_preds'].shape[0], 1))
        results['mask_preds'] = results['mask_preds'].repeat(
            repeats, *[1] * (results['mask_preds'].dim() - 1))[:rois.shape[0]]
        return results

    roi_head._mask_forward = capped
    try:
        yield
    finally:
        del roi_head._mask_forward  # back to the class method


def count_model_flops(model: nn.Module,
                      task: str,
                      shape: Tuple[int, int],
                      seed: int = 0,
                      max_mask_rois: Optional[int] = 100) -> FlopCount:
    """Flops of a whole mmdet detector or mmseg segmentor on one ``(1, 3, H, W)`` image.

    As mmdet's and mmseg's ``get_flops`` tools: the tensor-mode forward (backbone, neck, heads;
    a two-stage detector's RoI head runs on the proposals the RPN keeps for the image, 1,000 for
    our configs), with the data preprocessor skipped. Mask heads see the first
    ``max_mask_rois`` proposals (mmdet's convention; see :func:`_mask_heads_on_first_rois` for
    the cascade head). ``H`` and ``W`` should be multiples of the model's padding divisor (32 for
    our detectors).

    Args:
        model (nn.Module): a built detector/segmentor.
        task (str): ``'mmdet'`` or ``'mmseg'``.
        shape (tuple[int, int]): ``(H, W)``.
        seed (int): seed of the random image. Defaults to 0.
        max_mask_rois (int, optional): proposals a cascade's mask heads run on; None = all.
            Defaults to 100.
    """
    if task not in ('mmdet', 'mmseg'):
        raise ValueError(f"task must be 'mmdet' or 'mmseg', got {task!r}")
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, *shape, generator=generator)
    with _mask_heads_on_first_rois(model, max_mask_rois):
        return count_flops(_TensorModeForward(model, _data_samples(task, shape)), image)
