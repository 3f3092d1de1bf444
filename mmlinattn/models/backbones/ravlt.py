"""RAVLT: the Rank-Augmented Vision Linear Transformer backbone for dense prediction.

Paper: "Breaking the Low-Rank Dilemma of Linear Attention", Qihang Fan, Huaibo Huang, Ran He,
CVPR 2025 (arXiv 2411.07635). Official code: https://github.com/qhfan/RALA.

Clean-room re-implementation for mmdet 3.x / mmseg 1.x from the specification; official weights
load through :mod:`mmlinattn.converters.rala`. The attention maths is in :mod:`mmlinattn.ops.rala`.

Structure (all tensors channels-first ``(B, C, H, W)``)::

    stem (4 conv3x3+BN, stride 4) -> stage 0 -> stage 1 -> stage 2 -> stage 3
    stage i: [downsample conv3x3/2 + BN if i > 0] -> blocks -> (output i through out_norms[i])
    block:   x = x + cpe(x)
             x = x + drop_path(layer_scale1 * attn(norm1(x)))
             x = x + drop_path(layer_scale2 * ffn(norm2(x)))
"""
import copy
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.registry import MODELS

from ...archs import RAVLT_ARCHS, RAVLT_OFFICIAL_ATTN_TYPES
from ...ops.registry import get_op
from ...ops.rope import rope_sin_cos
from ..layers import LayerNorm2d
from .base import PyramidBackbone, run_blocks

__all__ = ['RAVLT']

#: ``attn_types`` entry -> op kind in :mod:`mmlinattn.ops.registry`.
ATTENTION_KINDS = {
    'linear': 'rala',  # rank-augmented linear attention, O(N)
    'softmax': 'rope_softmax',  # global softmax attention on RoPE-rotated q, k, O(N^2)
}


class GatedRoPEAttention(nn.Module):
    """Multi-head attention with a fused q/k/v/gate projection, RoPE, LePE and an output gate.

    ``y = proj(gate * (merge_heads(attention(q, k, v)) + lepe(v)))`` where ``q, k, v, gate`` are the
    four chunks of one 1x1 conv (``gate`` has no activation: it is the paper's output-feature rank
    augmentation) and ``lepe`` is a 5x5 depth-wise conv on ``v``.

    Args:
        embed_dims (int): channels C.
        num_heads (int): heads h; ``C / h`` must be divisible by 4 (2-D RoPE).
        attn_type (str): ``'linear'`` (rank-augmented linear attention, O(N)) or ``'softmax'``
            (global softmax attention, O(N^2)).
        attn_op (callable, optional): the implementation of that attention (an op of
            :mod:`mmlinattn.ops.registry`); None: the default backend's.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_type: str = 'linear',
                 attn_op: Optional[Callable] = None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dims // num_heads
        self.attn_type = attn_type
        self.attn_op = attn_op or get_op(ATTENTION_KINDS[attn_type])
        self.qkvg = nn.Conv2d(embed_dims, 4 * embed_dims, 1)
        self.lepe = nn.Conv2d(embed_dims, embed_dims, 5, padding=2, groups=embed_dims)
        self.proj = nn.Conv2d(embed_dims, embed_dims, 1)

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        """x: ``(B, C, H, W)``; sin, cos: ``(H * W, head_dim)``. Returns ``(B, C, H, W)``."""
        batch, channels, height, width = x.shape
        q, k, v, gate = self.qkvg(x).chunk(4, dim=1)
        lepe = self.lepe(v)
        # channel = head * head_dim + dim  ->  (B, heads, N, head_dim)
        q, k, v = (
            t.reshape(batch, self.num_heads, self.head_dim, height * width).transpose(-1, -2)
            for t in (q, k, v))
        if torch.compiler.is_compiling():
            # AOT autograd's backward of these views of one conv output fails under torch 2.13
            # ("view size is not compatible"); a copy makes them unit-stride (same values).
            q, k, v = (t.contiguous() for t in (q, k, v))
        out = self.attn_op(q, k, v, sin, cos)
        out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        return self.proj((out + lepe) * gate)

    def extra_repr(self) -> str:
        return (f'attn_type={self.attn_type!r}, num_heads={self.num_heads}, '
                f'op={self.attn_op.__name__}')


class ConvFFN(nn.Module):
    """1x1 conv -> GELU -> (+ depth-wise 3x3 conv, residual) -> 1x1 conv.

    Args:
        embed_dims (int): input/output channels C.
        hidden_dims (int): hidden channels.
    """

    def __init__(self, embed_dims: int, hidden_dims: int):
        super().__init__()
        self.fc1 = nn.Conv2d(embed_dims, hidden_dims, 1)
        self.act = nn.GELU()
        self.dwconv = nn.Conv2d(hidden_dims, hidden_dims, 3, padding=1, groups=hidden_dims)
        self.fc2 = nn.Conv2d(hidden_dims, embed_dims, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(x))
        return self.fc2(x + self.dwconv(x))


class RAVLTBlock(nn.Module):
    """Conditional position encoding, then pre-norm attention and pre-norm FFN with layer scale.

    Args:
        embed_dims (int): channels C.
        num_heads (int): attention heads.
        attn_type (str): ``'linear'`` or ``'softmax'``, see :class:`GatedRoPEAttention`.
        mlp_ratio (float): FFN hidden channels are ``int(mlp_ratio * C)``.
        drop_path_rate (float): stochastic depth probability of this block.
        layer_scale_init_value (float): initial value of both layer-scale vectors.
        attn_op (callable, optional): attention implementation.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_type: str,
                 mlp_ratio: float,
                 drop_path_rate: float,
                 layer_scale_init_value: float,
                 attn_op: Optional[Callable] = None):
        super().__init__()
        self.layer_scale_init_value = layer_scale_init_value
        self.cpe = nn.Conv2d(embed_dims, embed_dims, 3, padding=1, groups=embed_dims)
        self.norm1 = LayerNorm2d(embed_dims, eps=1e-6)
        self.attn = GatedRoPEAttention(embed_dims, num_heads, attn_type, attn_op)
        self.norm2 = LayerNorm2d(embed_dims, eps=1e-6)
        self.ffn = ConvFFN(embed_dims, int(mlp_ratio * embed_dims))
        # (1, C, 1, 1) like the official weights, so they keep their shape (and weight decay).
        self.layer_scale1 = nn.Parameter(torch.full((1, embed_dims, 1, 1), layer_scale_init_value))
        self.layer_scale2 = nn.Parameter(torch.full((1, embed_dims, 1, 1), layer_scale_init_value))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        x = x + self.cpe(x)
        x = x + self.drop_path(self.layer_scale1 * self.attn(self.norm1(x), sin, cos))
        return x + self.drop_path(self.layer_scale2 * self.ffn(self.norm2(x)))


class RAVLTStage(nn.Module):
    """An optional stride-2 downsampler followed by blocks sharing one RoPE table.

    The RoPE tables are rebuilt from the current ``(H, W)`` on every forward (cheap, and any input
    size works); they are not stored in the state dict.

    Args:
        in_channels (int | None): channels entering the stage; ``None`` for the first stage (no
            downsampler).
        embed_dims (int): channels C of the stage.
        depth (int): number of blocks.
        num_heads (int): attention heads.
        attn_type (str): ``'linear'`` or ``'softmax'``.
        mlp_ratio (float): FFN expansion.
        drop_path_rates (Sequence[float]): one rate per block.
        layer_scale_init_value (float): initial layer-scale value.
        norm_cfg (dict): norm of the downsampler.
        with_cp (bool): gradient checkpointing per block.
        attn_op (callable, optional): attention implementation.
    """

    def __init__(self,
                 in_channels: Optional[int],
                 embed_dims: int,
                 depth: int,
                 num_heads: int,
                 attn_type: str,
                 mlp_ratio: float,
                 drop_path_rates: Sequence[float],
                 layer_scale_init_value: float,
                 norm_cfg: Dict,
                 with_cp: bool = False,
                 attn_op: Optional[Callable] = None):
        super().__init__()
        self.head_dim = embed_dims // num_heads
        self.with_cp = with_cp
        if in_channels is None:
            self.downsample = None
        else:
            self.downsample = ConvModule(
                in_channels,
                embed_dims,
                3,
                stride=2,
                padding=1,
                bias=True,
                norm_cfg=norm_cfg,
                act_cfg=None)
        self.blocks = nn.ModuleList(
            RAVLTBlock(embed_dims, num_heads, attn_type, mlp_ratio, drop_path_rates[j],
                       layer_scale_init_value, attn_op) for j in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        height, width = x.shape[-2:]
        table_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        sin, cos = rope_sin_cos(height, width, self.head_dim, device=x.device, dtype=table_dtype)
        return run_blocks(self.blocks, x, sin, cos, with_cp=self.with_cp)


def _stem(in_channels: int, embed_dims: int, norm_cfg: Dict) -> nn.Sequential:
    """Four conv3x3 + norm layers (strides 2, 1, 1, 2), GELU after all but the last."""
    mid = embed_dims // 2
    gelu = dict(type='GELU')
    return nn.Sequential(
        ConvModule(
            in_channels, mid, 3, stride=2, padding=1, bias=True, norm_cfg=norm_cfg, act_cfg=gelu),
        ConvModule(mid, mid, 3, padding=1, bias=True, norm_cfg=norm_cfg, act_cfg=gelu),
        ConvModule(mid, mid, 3, padding=1, bias=True, norm_cfg=norm_cfg, act_cfg=gelu),
        ConvModule(
            mid, embed_dims, 3, stride=2, padding=1, bias=True, norm_cfg=norm_cfg, act_cfg=None))


@MODELS.register_module()
class RAVLT(PyramidBackbone):
    """RAVLT backbone (rank-augmented linear attention + RoPE softmax attention).

    A 4-stage pyramid (strides 4, 8, 16, 32). Stages 0-1 use rank-augmented linear attention
    (O(N)); stages 2-3 use global softmax attention (O(N^2), via
    :func:`torch.nn.functional.scaled_dot_product_attention`), as in the official models.

    By default every output passes through its own channel-wise LayerNorm (``out_norms``, the
    official detection backbone's ``extra_norms``; ``out_norm_cfg`` changes or removes it).
    Official ImageNet and mmdet-2.x / mmseg-0.x checkpoints
    load through ``init_cfg=dict(type='Pretrained', checkpoint=...)``; see
    :mod:`mmlinattn.converters.rala`.

    Args:
        arch (str | dict): ``'t'``, ``'s'``, ``'b'``, ``'l'`` (or ``'tiny'``, ``'small'``,
            ``'base'``, ``'large'``), or a custom dict with the keys:

            - **embed_dims** (list[int]): channels of the 4 stages.
            - **depths** (list[int]): blocks per stage.
            - **num_heads** (list[int]): heads per stage; ``embed_dims[i] / num_heads[i]`` must
              be divisible by 4.
            - **mlp_ratios** (list[float], optional): FFN expansion. Defaults to 3.5 everywhere.
            - **layer_scale_init_values** (list[float], optional): initial layer scale per stage.
              Defaults to 1.0 everywhere.
            - **drop_path_rate** (float, optional): default for ``drop_path_rate``. Defaults to 0.1.

            Defaults to ``'t'``.
        attn_types (Sequence[str]): attention per stage, ``'linear'`` or ``'softmax'``. Defaults to
            ``('linear', 'linear', 'softmax', 'softmax')`` (what the official weights were trained
            with). ``'linear'`` in stages 2-3 makes them O(N) in time and memory, which matters at
            very high resolution (at 1333x800, stage 2 already has ~4k tokens and a 4k x 4k map per
            head); the parameters are identical, but the function differs from the one the
            official weights were trained for, so loading them needs
            ``override_checkpoint_settings=True`` and a fine-tuning run.
        out_norm_cfg (dict, optional): norm of each returned feature map, built with
            :func:`mmcv.cnn.build_norm_layer`; ``None`` returns the stage outputs as they are.
            Defaults to ``dict(type='LN2d', eps=1e-6)`` (the official detection and segmentation
            backbones; keep it to load their checkpoints). The small demo Mask R-CNN trained from
            scratch only learns without it (``docs/design.md``). The output norms are not frozen
            by ``frozen_stages``: ImageNet checkpoints do not have them.
        **kwargs: the arguments every family shares, see
            :class:`~mmlinattn.models.backbones.base.PyramidBackbone`: ``in_channels``,
            ``out_indices``, ``drop_path_rate`` (default: the variant's official rate, t 0.1,
            s 0.15, b 0.4, l 0.55), ``norm_cfg``, ``frozen_stages``, ``norm_eval`` (covers SyncBN,
            which the official check missed), ``with_cp``, ``backend`` (a name, or a dict from op
            kind, ``'rala'`` / ``'rope_softmax'``, to a name), ``override_checkpoint_settings``
            (the record holds ``arch`` and ``attn_types``) and ``init_cfg`` (official RALA
            ImageNet, mmdet-2.x / mmseg-0.x or converted files).

    Examples:
        >>> import torch
        >>> from mmlinattn.models import RAVLT
        >>> model = RAVLT(arch='t').eval()
        >>> with torch.no_grad():
        ...     outs = model(torch.rand(1, 3, 224, 160))
        >>> for out in outs:
        ...     print(tuple(out.shape))
        (1, 64, 56, 40)
        (1, 128, 28, 20)
        (1, 256, 14, 10)
        (1, 512, 7, 5)
    """

    arch_table = RAVLT_ARCHS

    def __init__(self,
                 arch: Union[str, Dict] = 't',
                 attn_types: Sequence[str] = RAVLT_OFFICIAL_ATTN_TYPES,
                 out_norm_cfg: Optional[Dict] = dict(type='LN2d', eps=1e-6),
                 **kwargs):
        super().__init__(arch, **kwargs)
        embed_dims = self.arch['embed_dims']
        depths = self.arch['depths']
        self.attn_types = self._check_attn_types(attn_types)
        ops = {t: self.op_for(ATTENTION_KINDS[t]) for t in set(self.attn_types)}
        rates = self.block_drop_path_rates()

        with warnings.catch_warnings():
            # ConvModule warns about conv bias before BN; the official weights have both.
            warnings.filterwarnings('ignore', message='Unnecessary conv bias')
            self.stem = _stem(self.in_channels, embed_dims[0], self.norm_cfg)
            self.stages = nn.ModuleList()
            for i in range(self.num_stages):
                self.stages.append(
                    RAVLTStage(
                        in_channels=embed_dims[i - 1] if i > 0 else None,
                        embed_dims=embed_dims[i],
                        depth=depths[i],
                        num_heads=self.arch['num_heads'][i],
                        attn_type=self.attn_types[i],
                        mlp_ratio=self.arch['mlp_ratios'][i],
                        drop_path_rates=rates[i],
                        layer_scale_init_value=self.arch['layer_scale_init_values'][i],
                        norm_cfg=self.norm_cfg,
                        with_cp=self.with_cp,
                        attn_op=ops[self.attn_types[i]]))
        self.out_norm_cfg = copy.deepcopy(out_norm_cfg)
        self.out_norms = nn.ModuleDict({
            str(i): (nn.Identity() if out_norm_cfg is None else build_norm_layer(
                out_norm_cfg, embed_dims[i])[1])
            for i in self.out_indices
        })
        self._freeze_stages()

    @classmethod
    def _check_arch(cls, arch: Dict) -> None:
        for i, (dims, heads) in enumerate(zip(arch['embed_dims'], arch['num_heads'])):
            if (dims // heads) % 4:
                raise ValueError(f'stage {i}: head_dim = {dims} / {heads} = {dims // heads} must '
                                 'be divisible by 4 (2-D RoPE rotates channel pairs along two '
                                 'axes)')
        for key in ('mlp_ratios', 'layer_scale_init_values'):
            for i, value in enumerate(arch[key]):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise ValueError(f'arch[{key!r}][{i}] must be a positive number, got '
                                     f'{value!r}')
        rate = arch['drop_path_rate']
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"arch['drop_path_rate'] must be a number in [0, 1), got {rate!r}")

    def function_settings(self) -> Dict[str, Any]:
        """The attention of each stage (weights fit either kind, the function differs)."""
        return {'attn_types': list(self.attn_types)}

    def _check_attn_types(self, attn_types: Sequence[str]) -> Tuple[str, ...]:
        attn_types = tuple(attn_types)
        if len(attn_types) != self.num_stages or any(t not in ATTENTION_KINDS for t in attn_types):
            raise ValueError(
                f'attn_types must give one of {sorted(ATTENTION_KINDS)} for each of the '
                f'{self.num_stages} stages, got {attn_types!r}')
        return attn_types

    def official_algorithm_patches(self) -> List[Tuple[Any, str, Any]]:
        """Softmax stages build the ``N x N`` attention matrix explicitly (the released
        ``VanillaSelfAttention``) and every LayerNorm2d makes its output contiguous; the linear
        stages already follow the released order."""
        patches = []
        for module in self.modules():
            if isinstance(module, GatedRoPEAttention) and module.attn_type == 'softmax':
                patches.append((module, 'attn_op', get_op('rope_softmax', 'explicit')))
            elif isinstance(module, LayerNorm2d):
                patches.append((module, 'forward', module.forward_contiguous))
        return patches

    def _init_family_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, RAVLTBlock):
                nn.init.constant_(module.layer_scale1, module.layer_scale_init_value)
                nn.init.constant_(module.layer_scale2, module.layer_scale_init_value)

    def output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Output ``index`` through its norm (``out_norm_cfg``)."""
        return self.out_norms[str(index)](x)
