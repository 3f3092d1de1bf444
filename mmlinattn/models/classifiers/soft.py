"""SOFT / SOFT++ ImageNet classifiers as timm models, named as the official code names them:
``soft_tiny`` ... ``soft_huge`` (SOFT) and ``soft_norm_tiny`` ... ``soft_norm_huge`` (SOFT++,
the released "SOFT-*-Norm" models), registered on ``import mmlinattn``.

Papers: "SOFT: Softmax-free Transformer with Linear Complexity", Lu et al., NeurIPS 2021;
"Softmax-free Linear Transformers", Lu et al., IJCV 2024. Official code:
https://github.com/fudan-zvg/SOFT (``models/softmax_free_vision_transformer.py``).

The model is the mmdet / mmseg :class:`~mmlinattn.models.backbones.SOFT` with the classifier's
final LayerNorm (``final_norm=True``) and the official head: the final norm over all stage-3
tokens, then a linear head on the cls token. ``soft_small`` is the official code's (depths
1, 3, 20, 4; 38.9 M parameters); the README's 24 M SOFT-Small has 7 stage-2 blocks: build it with
``timm.create_model('soft_small', arch='small')`` (the converter infers depths from a file).
"""
from typing import Any, Optional

import torch
import torch.nn as nn
from timm.models import generate_default_cfgs, register_model

from ..backbones.soft import SOFT
from .common import PyramidClassifierMixin, build_classifier, imagenet_cfg

__all__ = ['SOFTClassifier']

#: The official code's ``soft_small`` (its README's SOFT-Small has depths 1, 3, 7, 4).
SOFT_SMALL_CODE = {
    'embed_dims': [64, 128, 320, 512],
    'depths': [1, 3, 20, 4],
    'num_heads': [2, 4, 10, 16]
}


class SOFTClassifier(PyramidClassifierMixin, SOFT):
    """SOFT / SOFT++ with the official classification head (a timm model).

    Args:
        arch (str | dict): the variant, see :class:`~mmlinattn.models.backbones.SOFT`.
        num_classes (int): classes; 0 gives the pooled features from :meth:`forward`. Defaults
            to 1000.
        in_chans (int): input channels. Defaults to 3.
        global_pool (str): ``'token'`` (the cls token, official), ``'avg'`` (mean of the other
            tokens) or ``''`` (all tokens). Defaults to ``'token'``.
        drop_rate (float): dropout before the head. Defaults to 0 (official).
        **kwargs: other arguments of :class:`~mmlinattn.models.backbones.SOFT`, e.g.
            ``normalization`` (``'core'`` for SOFT++), ``pinv_mode``, ``drop_path_rate``.
    """

    head_group = r'^(?:norm|head)\.'

    def __init__(self,
                 arch: Any = 'tiny',
                 num_classes: int = 1000,
                 in_chans: int = 3,
                 global_pool: str = 'token',
                 drop_rate: float = 0.0,
                 **kwargs):
        if global_pool not in ('token', 'avg', ''):
            raise ValueError(f"global_pool {global_pool!r} unknown; choose 'token', 'avg' or ''")
        kwargs.setdefault('out_indices', (0, 1, 2, 3))
        super().__init__(arch, final_norm=True, in_channels=in_chans, **kwargs)
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.num_features = self.head_hidden_size = self.embed_dims[-1]
        self.feature_info = self._pyramid_feature_info()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else \
            nn.Identity()
        self._init_from_scratch()

    def output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        # As a backbone (timm's features, mmdet) the maps are returned before the final norm.
        return x.contiguous()

    def intermediate(self, index: int, x: torch.Tensor, norm: bool) -> torch.Tensor:
        if norm and index == self.num_stages - 1:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x.contiguous()

    def stage_outputs(self, x: torch.Tensor, last: Optional[int] = None):
        """As the mixin's, with the classifier's features for the last stage: all its tokens,
        the cls token first, through the final norm ``(B, 1 + N, C)``."""
        x = self.stem(x)
        last = self.num_stages - 1 if last is None else last
        for i, stage in enumerate(self.stages[:last + 1]):
            tokens, hw = stage.forward_tokens(x)
            x = stage.tokens_to_map(tokens, hw)
            yield i, x, self.norm(tokens) if stage.with_cls_token else x

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new (from-scratch) head with ``num_classes`` outputs (0: none)."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else \
            nn.Identity()

    def prune_head(self) -> None:
        self.reset_classifier(0, '')

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Normed tokens ``(B, 1 + N, C)`` (:meth:`forward_features`) -> pooled (the cls token by
        default) -> head. ``pre_logits``: the pooled ``C``-d features."""
        if self.global_pool == 'token':
            x = x[:, 0]
        elif self.global_pool == 'avg':
            x = x[:, 1:].mean(dim=1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)


def _create(variant: str,
            default_arch: Any,
            default_normalization: str,
            pretrained: bool = False,
            **kwargs) -> SOFTClassifier:
    kwargs.setdefault('arch', default_arch)
    kwargs.setdefault('normalization', default_normalization)
    return build_classifier(SOFTClassifier, variant, pretrained, **kwargs)


_VARIANTS = {
    'tiny': 'tiny',
    'small': SOFT_SMALL_CODE,
    'medium': 'medium',
    'large': 'large',
    'huge': 'huge'
}
# The official timm 0.3.2 vision-transformer defaults: crop 0.9, bicubic, ImageNet mean / std.
default_cfgs = generate_default_cfgs({
    f'soft_{prefix}{size}':
    imagenet_cfg(crop_pct=0.9, first_conv='stem.0.conv', pool_size=None)
    for prefix in ('', 'norm_')
    for size in _VARIANTS
})


@register_model
def soft_tiny(pretrained: bool = False, **kwargs) -> SOFTClassifier:
    """SOFT-Tiny (13 M parameters, 79.3 % ImageNet-1k top-1 in the official README)."""
    return _create('soft_tiny', 'tiny', 'none', pretrained, **kwargs)


@register_model
def soft_small(pretrained: bool = False, **kwargs) -> SOFTClassifier:
    """SOFT-Small as the official code builds it (depths 1, 3, 20, 4; 38.9 M)."""
    return _create('soft_small', SOFT_SMALL_CODE, 'none', pretrained, **kwargs)


@register_model
def soft_medium(pretrained: bool = False, **kwargs) -> SOFTClassifier:
    """SOFT-Medium (45 M, 82.9 %)."""
    return _create('soft_medium', 'medium', 'none', pretrained, **kwargs)


@register_model
def soft_large(pretrained: bool = False, **kwargs) -> SOFTClassifier:
    """SOFT-Large (64 M, 83.1 %)."""
    return _create('soft_large', 'large', 'none', pretrained, **kwargs)


@register_model
def soft_huge(pretrained: bool = False, **kwargs) -> SOFTClassifier:
    """SOFT-Huge (87 M, 83.3 %)."""
    return _create('soft_huge', 'huge', 'none', pretrained, **kwargs)


@register_model
def soft_norm_tiny(pretrained: bool = False, **kwargs) -> SOFTClassifier:
    """SOFT-Tiny-Norm (SOFT++, 13 M, 79.4 %)."""
    return _create('soft_norm_tiny', 'tiny', 'core', pretrained, **kwargs)


@register_model
def soft_norm_small(pretrained: bool = False, **kwargs) -> SOFTClassifier:
    """SOFT-Small-Norm as the official code builds it (depths 1, 3, 20, 4)."""
    return _create('soft_norm_small', SOFT_SMALL_CODE, 'core', pretrained, **kwargs)


@register_model
def soft_norm_medium(pretrained: bool = False, **kwargs) -> SOFTClassifier:
    """SOFT-Medium-Norm (SOFT++, 45 M, 83.1 %)."""
    return _create('soft_norm_medium', 'medium', 'core', pretrained, **kwargs)


@register_model
def soft_norm_large(pretrained: bool = False, **kwargs) -> SOFTClassifier:
    """SOFT-Large-Norm (SOFT++, 64 M, 83.3 %)."""
    return _create('soft_norm_large', 'large', 'core', pretrained, **kwargs)


@register_model
def soft_norm_huge(pretrained: bool = False, **kwargs) -> SOFTClassifier:
    """SOFT-Huge-Norm (SOFT++, 87 M, 83.4 %)."""
    return _create('soft_norm_huge', 'huge', 'core', pretrained, **kwargs)
