"""RAVLT ImageNet classifiers as timm models: ``ravlt_t`` ... ``ravlt_l`` (and the official names
``RAVLT_T`` ... ``RAVLT_L``), registered on ``import mmlinattn``.

Paper: "Breaking the Low-Rank Dilemma of Linear Attention", Fan, Huang, He, CVPR 2025. Official
code: https://github.com/qhfan/RALA (``classfication/RALA.py``).

The model is the mmdet / mmseg :class:`~mmlinattn.models.backbones.RAVLT` (no output norms) plus
the official head: ``proj`` (1x1 conv to 1024), ``norm`` (BatchNorm), SiLU (the official
"memory-efficient Swish", the same function), global average pooling, ``head`` (1x1 conv).
Official checkpoints load through timm's own API, converted by the converters' key map::

    import mmlinattn, timm
    model = timm.create_model('ravlt_s', pretrained=True,
                              pretrained_cfg_overlay=dict(file='RAVLT_S.pth'))
    features = timm.create_model('ravlt_s', features_only=True)   # 4 maps, strides 4 ... 32
"""
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn
from timm.layers import SelectAdaptivePool2d
from timm.models import generate_default_cfgs, register_model

from ...archs import RAVLT_OFFICIAL_ATTN_TYPES
from ..backbones.ravlt import RAVLT
from .common import PyramidClassifierMixin, build_classifier, imagenet_cfg

__all__ = ['RAVLTClassifier']


class RAVLTClassifier(PyramidClassifierMixin, RAVLT):
    """RAVLT with the official classification head (a timm model).

    Args:
        arch (str | dict): the variant, see :class:`~mmlinattn.models.backbones.RAVLT`.
        num_classes (int): classes; 0 gives pooled features from :meth:`forward`. Defaults to
            1000.
        in_chans (int): input channels. Defaults to 3.
        global_pool (str): ``'avg'`` (official) or another timm pool type; ``''`` keeps the map
            (the 1x1 conv head then gives per-position logits). Defaults to ``'avg'``.
        drop_rate (float): dropout before the head. Defaults to 0 (official).
        projection (int): channels of the head's 1x1 projection. Defaults to 1024 (official).
        attn_types (Sequence[str]): see the backbone. Defaults to the official stages.
        **kwargs: other arguments of :class:`~mmlinattn.models.backbones.RAVLT` (e.g.
            ``drop_path_rate``, defaulting to the variant's official rate).
    """

    head_group = r'^(?:proj|norm|head)\.'

    def __init__(self,
                 arch: Any = 't',
                 num_classes: int = 1000,
                 in_chans: int = 3,
                 global_pool: str = 'avg',
                 drop_rate: float = 0.0,
                 projection: int = 1024,
                 attn_types: Sequence[str] = RAVLT_OFFICIAL_ATTN_TYPES,
                 **kwargs):
        kwargs.setdefault('out_indices', (0, 1, 2, 3))
        super().__init__(
            arch, attn_types=attn_types, out_norm_cfg=None, in_channels=in_chans, **kwargs)
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.projection = self.num_features = self.head_hidden_size = projection
        self.feature_info = self._pyramid_feature_info()
        self.proj = nn.Conv2d(self.embed_dims[-1], projection, 1)
        self.norm = nn.BatchNorm2d(projection)
        self.act = nn.SiLU()
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Conv2d(projection, num_classes, 1) if num_classes > 0 else nn.Identity()
        self._init_from_scratch()

    def get_classifier(self) -> nn.Module:
        return self.head

    def checkpoint_head_kwargs(self, state_dict) -> dict:
        """``projection``: the channels of the file's ``proj`` (1x1 conv before the head)."""
        proj = state_dict.get('proj.weight')
        return {} if proj is None else {'projection': proj.shape[0]}

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new (from-scratch) head with ``num_classes`` outputs (0: none)."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
        self.head = nn.Conv2d(self.num_features, num_classes, 1) if num_classes > 0 else \
            nn.Identity()

    def prune_head(self) -> None:
        self.proj, self.norm, self.act = nn.Identity(), nn.Identity(), nn.Identity()
        self.reset_classifier(0, '')

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The last stage's map ``(B, C_3, H / 32, W / 32)`` (:meth:`forward_features`) through
        projection, BN, SiLU, pooling and head. ``pre_logits``: the pooled 1024-d features."""
        x = self.global_pool(self.act(self.norm(self.proj(x))))
        x = self.head_drop(x)
        if pre_logits:
            return x.flatten(1)
        x = self.head(x)
        return x.flatten(1) if self.global_pool.pool_type else x


def _create(variant: str, default_arch: str, pretrained: bool = False, **kwargs) -> RAVLTClassifier:
    kwargs.setdefault('arch', default_arch)  # a custom arch dict may replace the variant's
    return build_classifier(RAVLTClassifier, variant, pretrained, **kwargs)


# Official evaluation (classfication/main.py): resize 256, centre crop 224, bicubic.
default_cfgs = generate_default_cfgs({
    name: imagenet_cfg(crop_pct=0.875)
    for name in ('ravlt_t', 'ravlt_s', 'ravlt_b', 'ravlt_l', 'RAVLT_T', 'RAVLT_S', 'RAVLT_B',
                 'RAVLT_L')
})


@register_model
def ravlt_t(pretrained: bool = False, **kwargs) -> RAVLTClassifier:
    """RAVLT-T (15 M parameters, 82.8 % ImageNet-1k top-1 in the paper)."""
    return _create('ravlt_t', 't', pretrained, **kwargs)


@register_model
def ravlt_s(pretrained: bool = False, **kwargs) -> RAVLTClassifier:
    """RAVLT-S (26 M, 84.4 %)."""
    return _create('ravlt_s', 's', pretrained, **kwargs)


@register_model
def ravlt_b(pretrained: bool = False, **kwargs) -> RAVLTClassifier:
    """RAVLT-B (48 M, 85.5 %)."""
    return _create('ravlt_b', 'b', pretrained, **kwargs)


@register_model
def ravlt_l(pretrained: bool = False, **kwargs) -> RAVLTClassifier:
    """RAVLT-L (95 M, 85.8 %)."""
    return _create('ravlt_l', 'l', pretrained, **kwargs)


# The official factory names (classfication/RALA.py), so official scripts and habits carry over.
@register_model
def RAVLT_T(pretrained: bool = False, **kwargs) -> RAVLTClassifier:  # noqa: N802
    """Official name of :func:`ravlt_t`."""
    return _create('RAVLT_T', 't', pretrained, **kwargs)


@register_model
def RAVLT_S(pretrained: bool = False, **kwargs) -> RAVLTClassifier:  # noqa: N802
    """Official name of :func:`ravlt_s`."""
    return _create('RAVLT_S', 's', pretrained, **kwargs)


@register_model
def RAVLT_B(pretrained: bool = False, **kwargs) -> RAVLTClassifier:  # noqa: N802
    """Official name of :func:`ravlt_b`."""
    return _create('RAVLT_B', 'b', pretrained, **kwargs)


@register_model
def RAVLT_L(pretrained: bool = False, **kwargs) -> RAVLTClassifier:  # noqa: N802
    """Official name of :func:`ravlt_l`."""
    return _create('RAVLT_L', 'l', pretrained, **kwargs)
