"""Small building blocks shared by the backbones."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from mmengine.registry import MODELS

__all__ = ['LayerNorm2d', 'ConvertedPretrainedInit', 'StageFreezing']


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
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2)


class ConvertedPretrainedInit:
    """``init_weights`` for a backbone whose pretrained files may be official checkpoints.

    ``init_cfg=None`` initialises from scratch (the class's ``_init_from_scratch``);
    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=None)`` initialises from scratch, then
    loads the file through :func:`mmlinattn.converters.load_pretrained`, so official and converted
    files both work and keys the file lacks keep their from-scratch values. Other ``init_cfg`` types
    go to :class:`mmengine.model.BaseModule`. Subclasses set ``checkpoint_family``.
    """

    checkpoint_family: str

    def init_weights(self) -> None:
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            from ..converters import load_pretrained
            self._init_from_scratch()
            load_pretrained(self, init_cfg['checkpoint'], family=self.checkpoint_family,
                            prefix=init_cfg.get('prefix'))
            self._is_init = True
        elif init_cfg is None:
            self._init_from_scratch()
            self._is_init = True
        else:
            super().init_weights()


class StageFreezing:
    """``frozen_stages`` and ``norm_eval`` for a backbone made of ``self.stem`` + ``self.stages``.

    ``frozen_stages >= 0`` freezes the stem, ``k`` also stages ``0 .. k-1`` (eval mode, no grads);
    ``norm_eval`` keeps every BN layer, SyncBN included, in eval mode while training. Subclasses
    extend :meth:`_frozen_modules` for modules outside the stages.
    """

    def _frozen_modules(self) -> list:
        return (([self.stem] if self.frozen_stages >= 0 else []) +
                list(self.stages[:max(self.frozen_stages, 0)]))

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):  # BN and SyncBN alike
                    module.eval()
        return self


if 'LN2d' not in MODELS.module_dict:
    MODELS.register_module('LN2d', module=LayerNorm2d, force=True)
