"""Small building blocks shared by the backbones."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS

__all__ = ['LayerNorm2d']


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a channels-first ``(B, C, H, W)`` map.

    Registered in the MMEngine root registry as ``'LN2d'`` (unless something already registered
    that name), so ``build_norm_layer(dict(type='LN2d', eps=1e-6), C)`` works in any scope.

    Args:
        num_channels (int): C.
        eps (float): added to the variance. Defaults to 1e-6.
        elementwise_affine (bool): learn a per-channel weight and bias. Defaults to True.
    """

    _abbr_ = 'ln'

    def __init__(self, num_channels: int, eps: float = 1e-6, elementwise_affine: bool = True):
        super().__init__(num_channels, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)

    def forward_contiguous(self, x: torch.Tensor) -> torch.Tensor:
        """The same values with contiguous copies before and after, as the released RAVLT code
        computes it (used by the benchmarks' official-algorithm path)."""
        x = F.layer_norm(
            x.permute(0, 2, 3, 1).contiguous(), self.normalized_shape, self.weight, self.bias,
            self.eps)
        return x.permute(0, 3, 1, 2).contiguous()


if 'LN2d' not in MODELS.module_dict:
    MODELS.register_module('LN2d', module=LayerNorm2d, force=True)
