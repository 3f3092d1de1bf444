"""SOFT / SOFT++: the Softmax-free Transformer backbone for dense prediction.

Papers: "SOFT: Softmax-free Transformer with Linear Complexity", Jiachen Lu, Jinghan Yao, Junge
Zhang, Xiatian Zhu, Hang Xu, Weiguo Gao, Chunjing Xu, Tao Xiang, Li Zhang, NeurIPS 2021
(arXiv 2110.11945); "Softmax-free Linear Transformers", Jiachen Lu, Junge Zhang, Xiatian Zhu,
Jianfeng Feng, Tao Xiang, Li Zhang, IJCV 2024 (arXiv 2207.03341). Official code:
https://github.com/fudan-zvg/SOFT (ImageNet classification only).

Clean-room re-implementation for mmdet 3.x / mmseg 1.x from the specification; official weights
load through :mod:`mmlinattn.converters.soft`. The attention maths is in :mod:`mmlinattn.ops.soft`.

Structure (strides 4, 8, 16, 32)::

    stem (3 conv3x3 + BN + ReLU, stride 4)  -> stage 0
    stage i: [downsample conv3x3/2 + BN + ReLU if i > 0] -> + pos_embed (resized) -> blocks
    stages 0-2, SOFT block (post-norm):
        x = norm1(x + drop(attn(x)))            attn: Gaussian-kernel Nystrom attention
        x = norm2(x + drop(ffn(x)))             ffn: Linear 4C, tanh-GELU, Linear
    stage 3, softmax block (pre-norm, with a cls token):
        x = x + drop_path(attn(norm1(x)))
        x = x + drop_path(ffn(norm2(x)))
"""
import math
import numbers
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks.drop import build_dropout
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model.weight_init import trunc_normal_
from mmengine.registry import MODELS

from ...archs import SOFT_ARCHS
from ...ops.export import adaptive_avg_pool2d_exportable, is_exporting
from ...ops.registry import get_op
from ...ops.soft import (NORMALIZATIONS, PINV_MODES, landmark_grid_size,
                         landmark_grid_size_exportable, resolve_pinv_mode)
from .base import PyramidBackbone, check_positive_int, run_blocks

__all__ = ['SOFT']

# The stem's hidden width is 32 in every released variant, whatever the stage-0 width.
STEM_CHANNELS = 32
# Drop layers of the SOFT blocks: the official blocks drop single elements with the stochastic
# depth rate (training only; identical at inference).
SOFT_BLOCK_DROPS = {'dropout': 'Dropout', 'drop_path': 'DropPath'}


class SoftmaxFreeAttention(nn.Module):
    """SOFT attention: queries double as keys, landmarks from a strided conv, a local conv on V.

    Args:
        embed_dims (int): channels C.
        num_heads (int): heads h; ``d = C / h``.
        landmark_ratio (int): kernel and stride r of the landmark convolution.
        local_kernel_size (int): size of the per-head depth-wise convolution on V.
        normalization (str): see :func:`mmlinattn.ops.soft.softmax_free_attention`.
        pinv_mode (str): see :func:`mmlinattn.ops.soft.newton_schulz_pinv`.
        newton_iters (int): Newton-Schulz steps.
        max_landmarks (int, optional): bound on the landmark count (average-pools the landmark
            grid, see :func:`mmlinattn.ops.soft.landmark_grid_size`); None = official.
        attn_op (callable, optional): implementation of the attention op (see
            :mod:`mmlinattn.ops.registry`); None: the default backend's.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 landmark_ratio: int,
                 local_kernel_size: int,
                 normalization: str,
                 pinv_mode: str,
                 newton_iters: int,
                 max_landmarks: Optional[int],
                 attn_op: Optional[Callable] = None):
        super().__init__()
        self.attn_op = attn_op or get_op('softmax_free')
        self.num_heads = num_heads
        self.head_dim = embed_dims // num_heads
        self.landmark_ratio = landmark_ratio
        self.normalization = normalization
        self.pinv_mode = pinv_mode
        self.newton_iters = newton_iters
        self.max_landmarks = max_landmarks
        self.q_proj = nn.Linear(embed_dims, embed_dims)
        self.v_proj = nn.Linear(embed_dims, embed_dims)
        # Heads are folded into the batch, so one conv / norm serves all heads.
        self.landmark_conv = nn.Conv2d(
            self.head_dim, self.head_dim, landmark_ratio, stride=landmark_ratio, bias=False)
        self.landmark_norm = nn.LayerNorm(self.head_dim)
        # One k x k spatial filter per head, shared by the d channels of that head.
        self.local_conv = nn.Conv2d(
            num_heads,
            num_heads,
            local_kernel_size,
            padding=local_kernel_size // 2,
            groups=num_heads,
            bias=False)
        self.out_proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        """x: ``(B, N, C)`` tokens of an ``hw`` grid. Returns ``(B, N, C)``."""
        batch, num_tokens, channels = x.shape
        height, width = hw
        heads, head_dim = self.num_heads, self.head_dim
        q = self.q_proj(x).view(batch, num_tokens, heads, head_dim).transpose(1, 2)
        q = q / math.sqrt(math.sqrt(head_dim))  # (B, h, N, d)
        v = self.v_proj(x).view(batch, num_tokens, heads, head_dim).transpose(1, 2)

        exporting = is_exporting()  # then the grid and its pooling are computed in the graph
        grid_size = landmark_grid_size_exportable if exporting else landmark_grid_size
        grid = grid_size(height, width, self.landmark_ratio, self.max_landmarks)
        q_map = q.reshape(batch * heads, num_tokens, head_dim).transpose(1, 2)
        if torch.compiler.is_compiling():
            # landmark_grid_size refused a grid smaller than the ratio; say so to the compiler
            # (inductor sizes the strided convolution from the symbolic sizes' ranges), and make
            # one explicit copy into the conv's layout: inductor's lowering of two chained
            # reshapes of a transposed view fails with symbolic sizes (ValueRangeError, torch 2.13)
            torch._check(height >= self.landmark_ratio)
            torch._check(width >= self.landmark_ratio)
            q_img = q.transpose(-1, -2).contiguous().view(batch * heads, head_dim, height, width)
        else:
            q_img = q_map.reshape(batch * heads, head_dim, height, width)
        landmarks = self.landmark_conv(q_img)
        if exporting:
            if self.max_landmarks is not None:  # the identity where the bound is not reached
                landmarks = adaptive_avg_pool2d_exportable(landmarks, grid)
        elif tuple(landmarks.shape[-2:]) != grid:
            landmarks = F.adaptive_avg_pool2d(landmarks, grid)
        landmarks = F.gelu(self.landmark_norm(landmarks.flatten(2).transpose(1, 2)))
        landmarks = landmarks.reshape(batch, heads, grid[0] * grid[1], head_dim)  # (B, h, m, d)

        out = self.attn_op(q, landmarks, v, self.normalization, self.pinv_mode, self.newton_iters)
        v_map = v.permute(0, 3, 1, 2).reshape(batch * head_dim, heads, height, width)
        local = self.local_conv(v_map).reshape(batch, head_dim, heads, num_tokens)
        out = out + local.permute(0, 2, 3, 1)
        return self.out_proj(out.transpose(1, 2).reshape(batch, num_tokens, channels))

    def extra_repr(self) -> str:
        return (f'num_heads={self.num_heads}, landmark_ratio={self.landmark_ratio}, '
                f'normalization={self.normalization!r}, pinv_mode={self.pinv_mode!r}, '
                f'newton_iters={self.newton_iters}, max_landmarks={self.max_landmarks}, '
                f'op={self.attn_op.__name__}')


class SOFTBlock(nn.Module):
    """Post-norm block of stages 0-2 with a tanh-GELU MLP (ratio 4).

    Args:
        embed_dims (int): channels C.
        num_heads (int): heads.
        drop_rate (float): rate of the two residual drop layers.
        drop_type (str): ``'dropout'`` (official: element-wise) or ``'drop_path'``.
        **attn_kwargs: the other arguments of :class:`SoftmaxFreeAttention`.
    """

    def __init__(self, embed_dims: int, num_heads: int, drop_rate: float, drop_type: str,
                 **attn_kwargs):
        super().__init__()
        drop_cfg = dict(type=SOFT_BLOCK_DROPS[drop_type], drop_prob=drop_rate)
        self.attn = SoftmaxFreeAttention(embed_dims, num_heads, **attn_kwargs)
        self.drop = build_dropout(drop_cfg)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.ffn = FFN(
            embed_dims,
            4 * embed_dims,
            act_cfg=dict(type='GELU', approximate='tanh'),
            dropout_layer=drop_cfg)
        self.norm2 = nn.LayerNorm(embed_dims)

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x, hw)))
        return self.norm2(self.ffn(x))


class SoftmaxAttention(nn.Module):
    """Global multi-head softmax attention (stage 3), via ``scaled_dot_product_attention``."""

    def __init__(self, embed_dims: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, num_tokens, channels = x.shape
        qkv = self.qkv(x).view(batch, num_tokens, 3, self.num_heads, channels // self.num_heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(batch, num_tokens, channels))


class SoftmaxBlock(nn.Module):
    """Pre-norm ViT block of stage 3 (exact GELU, MLP ratio 4, DropPath, LayerNorm eps 1e-6)."""

    def __init__(self, embed_dims: int, num_heads: int, drop_rate: float):
        super().__init__()
        drop_cfg = dict(type='DropPath', drop_prob=drop_rate)
        self.norm1 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attn = SoftmaxAttention(embed_dims, num_heads)
        self.drop = build_dropout(drop_cfg)
        self.norm2 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.ffn = FFN(
            embed_dims, 4 * embed_dims, act_cfg=dict(type='GELU'), dropout_layer=drop_cfg)

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return self.ffn(self.norm2(x), identity=x)


class SOFTStage(nn.Module):
    """An optional downsampler, a learned position table resized to the grid, then blocks.

    Args:
        downsample (nn.Module | None): maps the previous stage's ``(B, C', H', W')`` map to
            ``(B, C, H, W)``; None for the first stage (the stem runs before it).
        embed_dims (int): channels C.
        pos_grid (tuple[int, int]): size of the stored position table (the pre-training grid).
        blocks (list[nn.Module]): blocks called as ``block(x, (H, W))`` on ``(B, N, C)`` tokens.
        with_cls_token (bool): prepend a learned cls token (with its own position entry) before
            the blocks and remove it afterwards.
        with_cp (bool): gradient checkpointing per block.
    """

    def __init__(self,
                 downsample: Optional[nn.Module],
                 embed_dims: int,
                 pos_grid: Tuple[int, int],
                 blocks: List[nn.Module],
                 with_cls_token: bool = False,
                 with_cp: bool = False):
        super().__init__()
        self.downsample = downsample
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dims, *pos_grid))
        if with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
            self.cls_pos_embed = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.with_cls_token = with_cls_token
        self.blocks = nn.ModuleList(blocks)
        self.with_cp = with_cp

    def forward_tokens(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """``(B, C', H', W')`` -> the stage's tokens ``(B, N, C)`` (``(B, 1 + N, C)`` with the cls
        token first) and the grid ``(H, W)``."""
        if self.downsample is not None:
            x = self.downsample(x)
        batch, channels, height, width = x.shape
        # Resized on every forward (bilinear, align_corners=False), also when the size matches,
        # as in the official models (an exact identity then).
        pos = F.interpolate(
            self.pos_embed, size=(height, width), mode='bilinear', align_corners=False)
        x = (x + pos).flatten(2).transpose(1, 2)  # (B, N, C)
        if self.with_cls_token:
            cls = (self.cls_token + self.cls_pos_embed).expand(batch, -1, -1)
            x = torch.cat([cls, x], dim=1)
        return run_blocks(self.blocks, x, (height, width), with_cp=self.with_cp), (height, width)

    def tokens_to_map(self, tokens: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        """Tokens of :meth:`forward_tokens` -> ``(B, C, H, W)`` (the cls token left out)."""
        if self.with_cls_token:
            tokens = tokens[:, 1:]
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *hw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C', H', W')`` -> ``(B, C, H, W)``."""
        return self.tokens_to_map(*self.forward_tokens(x))


@MODELS.register_module()
class SOFT(PyramidBackbone):
    """SOFT / SOFT++ backbone (softmax-free attention in stages 0-2, softmax attention in stage 3).

    Stages 0-2 use Gaussian-kernel Nystrom attention: queries scaled by ``d ** -0.25`` are also the
    keys; landmarks come from a stride-r convolution over the queries (r = 8, 4, 2) followed by
    LayerNorm and GELU; the landmark kernel is inverted by 20 Newton-Schulz steps; a per-head
    depth-wise convolution on V (k = 9, 5, 3) is added. Stage 3 is a plain ViT block stack with a
    cls token. SOFT++ (``normalization='core'``, or ``norm=True``) adds a symmetric normalisation.

    **High resolution.** The official landmark count grows with the image (m = N / r^2), so the
    O(m^3) inverse dominates at detection size. ``max_landmarks`` average-pools the landmark grid
    to at most that many landmarks (same aspect ratio), keeping the cost linear in the pixels. The
    weights are unchanged, but above the bound the function changes substantially: treat it as a
    variant to fine-tune, not as an approximation of a frozen official model (measurements in
    ``docs/design.md``).

    **cls token in dense prediction.** Stage 3 keeps the pre-training forward: the cls token (with
    its own position entry) takes part in the attention and is removed from the output map. The
    outputs are therefore exactly the official tokens reshaped to maps, before the classifier's
    final norm (``final_norm=True`` applies it to the stage-3 map). Stage 0-2 outputs come out of
    a LayerNorm already (post-norm blocks), so no per-output norms are added.

    **Position embeddings.** The tables are stored as ``(1, C, h, w)`` maps of the pre-training
    grid and bilinearly resized to the current grid on every forward; tables of another size in a
    checkpoint are resized to ``pretrain_img_size`` when loaded.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'medium'``, ``'large'``, ``'huge'`` (or
            ``'t'``, ``'s'``, ``'m'``, ``'l'``, ``'h'``), or a custom dict with the keys:

            - **embed_dims** (list[int]): channels of the 4 stages.
            - **depths** (list[int]): blocks per stage.
            - **num_heads** (list[int]): heads per stage.

            ``'small'`` has depths ``[1, 3, 7, 4]`` (24.1 M parameters, the README's SOFT-Small;
            the official code's ``soft_small`` with ``[1, 3, 20, 4]`` has 38.9 M). Defaults to
            ``'tiny'``.
        norm (bool, optional): older spelling of ``normalization``: True means ``'core'`` (the
            released "SOFT-*-Norm" models, SOFT++), False ``'none'``. Given together with
            ``normalization`` it must agree. Defaults to None.
        normalization (str, optional): the one knob for SOFT vs SOFT++: ``'none'`` (SOFT),
            ``'core'`` (released SOFT++) or ``'full'`` (see
            :func:`mmlinattn.ops.soft.softmax_free_attention`). None: from ``norm``, else
            ``'none'``. Recorded with the weights: loading SOFT weights into a SOFT++ backbone (or
            the reverse) is an error naming this key. Defaults to None.
        pinv_mode (str, optional): how the landmark kernel is inverted, see
            :func:`mmlinattn.ops.soft.newton_schulz_pinv`: ``'shifted_inverse'`` (``(A + 0.01
            I)^-1`` computed directly: Cholesky, per matrix), ``'newton_shifted'`` (Newton-Schulz
            on ``A + 0.01 I``), ``'newton_batch_scaled'`` (on ``A``, one initial scale for the
            whole batch) or ``'newton'`` (on ``A``, a scale per matrix); the former names
            ``'official'``, ``'official_norm'`` and ``'per_matrix'`` are accepted. None:
            ``'newton_shifted'`` for SOFT and ``'newton_batch_scaled'`` for SOFT++ (what the
            released checkpoints computed). ``'newton_batch_scaled'`` shares one scale across the
            whole batch, so **a NaN or inf in one image makes every image of the batch NaN** (and
            an image's output depends on its batch); the others have neither problem. Every
            shipped dense-prediction config uses ``'shifted_inverse'`` (15x cheaper than 20 Newton
            steps, see docs/benchmarks/soft_inverse_modes.md); its ONNX export computes the same
            inverse by a Newton-Schulz iteration converged for up to 4096 landmarks (the configs:
            256), see :func:`mmlinattn.ops.soft.newton_schulz_pinv`. Defaults to None.
        newton_iters (int): Newton-Schulz steps. Defaults to 20 (all released models).
        max_landmarks (int, optional): bound on the landmarks per SOFT attention (per image and
            head). None = the official, resolution-dependent count. Dense-prediction configs
            should set it (e.g. 256). Defaults to None.
        landmark_ratios (Sequence[int]): landmark ratio r of stages 0-2. Defaults to (8, 4, 2).
        local_kernel_sizes (Sequence[int]): V-conv sizes of stages 0-2. Defaults to (9, 5, 3).
        pretrain_img_size (int | tuple[int, int]): image size the position tables belong to
            (tables of stage i are ``size / 2 ** (i + 2)``). Defaults to 224.
        final_norm (bool): apply the classifier's final LayerNorm (``norm``) to the stage-3 map.
            Defaults to False.
        soft_block_drop (str): drop layer of the SOFT blocks: ``'dropout'`` (official: element-wise
            dropout with the stochastic-depth rate; identical to ``'drop_path'`` at inference) or
            ``'drop_path'``. Defaults to ``'dropout'``.
        **kwargs: the arguments every family shares, see
            :class:`~mmlinattn.models.backbones.base.PyramidBackbone`: ``in_channels``,
            ``out_indices``, ``drop_path_rate`` (default 0.1, official), ``norm_cfg``,
            ``frozen_stages`` (also freezes the position tables and the cls token), ``norm_eval``,
            ``with_cp``, ``backend`` (of the ``'softmax_free'`` op; ``'reference'`` materialises
            the ``N x N`` matrix), ``override_checkpoint_settings`` (the record holds the arch,
            ``normalization``, landmark and V-conv sizes) and ``init_cfg`` (official SOFT /
            SOFT-Norm files or converted ones; from scratch: truncated normal, std 0.02, for
            linear layers, position tables and the cls token).

    Examples:
        >>> import torch
        >>> from mmlinattn.models import SOFT
        >>> model = SOFT(arch='tiny', normalization='core', max_landmarks=64).eval()
        >>> with torch.no_grad():
        ...     shapes = [tuple(out.shape) for out in model(torch.rand(1, 3, 224, 160))]
        >>> shapes
        [(1, 64, 56, 40), (1, 128, 28, 20), (1, 320, 14, 10), (1, 512, 7, 5)]
    """

    arch_table = SOFT_ARCHS
    op_kinds = ('softmax_free', )

    def __init__(self,
                 arch: Union[str, Dict] = 'tiny',
                 norm: Optional[bool] = None,
                 normalization: Optional[str] = None,
                 pinv_mode: Optional[str] = None,
                 newton_iters: int = 20,
                 max_landmarks: Optional[int] = None,
                 landmark_ratios: Sequence[int] = (8, 4, 2),
                 local_kernel_sizes: Sequence[int] = (9, 5, 3),
                 pretrain_img_size: Union[int, Tuple[int, int]] = 224,
                 final_norm: bool = False,
                 soft_block_drop: str = 'dropout',
                 **kwargs):
        super().__init__(arch, **kwargs)
        embed_dims, depths, num_heads = (self.arch[k] for k in self.arch_table.required_keys)
        self.normalization, self.pinv_mode = self._resolve_attention(norm, normalization, pinv_mode)
        self.newton_iters = check_positive_int('newton_iters', newton_iters)
        self.max_landmarks = check_positive_int('max_landmarks', max_landmarks, allow_none=True)
        self.landmark_ratios = self._check_per_soft_stage('landmark_ratios', landmark_ratios)
        self.local_kernel_sizes = self._check_per_soft_stage('local_kernel_sizes',
                                                             local_kernel_sizes)
        if any(k % 2 == 0 for k in self.local_kernel_sizes):
            raise ValueError(f'local_kernel_sizes must be odd (the V convolution keeps the grid '
                             f'size with padding k // 2), got {tuple(local_kernel_sizes)}')
        if soft_block_drop not in SOFT_BLOCK_DROPS:
            raise ValueError(f'soft_block_drop {soft_block_drop!r} unknown; choose one of '
                             f'{sorted(SOFT_BLOCK_DROPS)}')
        if isinstance(pretrain_img_size, numbers.Integral):
            pretrain_img_size = (pretrain_img_size, pretrain_img_size)
        pretrain_img_size = tuple(pretrain_img_size)
        if len(pretrain_img_size) != 2 or any(
                isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 32
                for v in pretrain_img_size):
            raise ValueError('pretrain_img_size must be an int or (height, width) of at least 32 '
                             f'px (the stage-3 position table has size / 32 cells), got '
                             f'{pretrain_img_size!r}')
        self.pretrain_img_size = pretrain_img_size
        rates = self.block_drop_path_rates()

        with warnings.catch_warnings():
            # ConvModule warns about conv bias before BN; the official weights have both.
            warnings.filterwarnings('ignore', message='Unnecessary conv bias')
            norm_cfg = self.norm_cfg
            self.stem = nn.Sequential(
                ConvModule(
                    self.in_channels,
                    STEM_CHANNELS,
                    3,
                    stride=2,
                    padding=1,
                    bias=True,
                    norm_cfg=norm_cfg),
                ConvModule(
                    STEM_CHANNELS, STEM_CHANNELS, 3, padding=1, bias=True, norm_cfg=norm_cfg),
                ConvModule(
                    STEM_CHANNELS,
                    embed_dims[0],
                    3,
                    stride=2,
                    padding=1,
                    bias=True,
                    norm_cfg=norm_cfg))
            self.stages = nn.ModuleList()
            for i in range(self.num_stages):
                stage_rates = rates[i]
                if i < self.num_stages - 1:
                    blocks = [
                        SOFTBlock(
                            embed_dims[i],
                            num_heads[i],
                            rate,
                            soft_block_drop,
                            landmark_ratio=self.landmark_ratios[i],
                            local_kernel_size=self.local_kernel_sizes[i],
                            normalization=self.normalization,
                            pinv_mode=self.pinv_mode,
                            newton_iters=self.newton_iters,
                            max_landmarks=self.max_landmarks,
                            attn_op=self.op_for('softmax_free')) for rate in stage_rates
                    ]
                else:
                    blocks = [
                        SoftmaxBlock(embed_dims[i], num_heads[i], rate) for rate in stage_rates
                    ]
                downsample = None if i == 0 else ConvModule(
                    embed_dims[i - 1],
                    embed_dims[i],
                    3,
                    stride=2,
                    padding=1,
                    bias=True,
                    norm_cfg=norm_cfg)
                stride = 2**(i + 2)
                pos_grid = (self.pretrain_img_size[0] // stride,
                            self.pretrain_img_size[1] // stride)
                self.stages.append(
                    SOFTStage(
                        downsample,
                        embed_dims[i],
                        pos_grid,
                        blocks,
                        with_cls_token=i == self.num_stages - 1,
                        with_cp=self.with_cp))
        self.final_norm = final_norm
        if final_norm:
            self.norm = nn.LayerNorm(embed_dims[-1], eps=1e-6)
        self._freeze_stages()

    def _check_per_soft_stage(self, name: str, values: Sequence[int]) -> Tuple[int, ...]:
        values = tuple(values) if isinstance(values, (list, tuple)) else (values, )
        if len(values) != self.num_stages - 1:
            raise ValueError(f'{name} needs one value for each of the {self.num_stages - 1} SOFT '
                             f'stages, got {values!r}')
        return tuple(check_positive_int(f'{name}[{i}]', v) for i, v in enumerate(values))

    @staticmethod
    def _resolve_attention(norm: Optional[bool], normalization: Optional[str],
                           pinv_mode: Optional[str]) -> Tuple[str, str]:
        if normalization is None:
            normalization = 'core' if norm else 'none'
        if normalization not in NORMALIZATIONS:
            raise ValueError(f'normalization {normalization!r} unknown; choose one of '
                             f'{list(NORMALIZATIONS)}')
        if norm is not None and bool(norm) != (normalization != 'none'):
            raise ValueError(f'norm={norm} contradicts normalization={normalization!r}: SOFT++ '
                             "(norm=True) needs 'core' or 'full', SOFT (norm=False) needs 'none'; "
                             'set only normalization')
        if pinv_mode is None:
            pinv_mode = 'newton_shifted' if normalization == 'none' else 'newton_batch_scaled'
        try:
            pinv_mode = resolve_pinv_mode(pinv_mode)
        except ValueError:
            raise ValueError(f'pinv_mode {pinv_mode!r} unknown; choose one of '
                             f'{list(PINV_MODES)}') from None
        return normalization, pinv_mode

    def function_settings(self) -> Dict[str, Any]:
        """SOFT vs SOFT++ (``normalization``) and the landmark / V-conv sizes.

        ``pinv_mode``, ``newton_iters`` and ``max_landmarks`` are not recorded: they choose how
        closely the inverse is approximated, and the dense-prediction configs change them on
        purpose (see the class docstring).
        """
        return {
            'normalization': self.normalization,
            'landmark_ratios': list(self.landmark_ratios),
            'local_kernel_sizes': list(self.local_kernel_sizes)
        }

    def _setting_fix(self, key: str, value: Any, recorded) -> str:
        if key == 'normalization':
            return f'normalization={value!r}'
        return super()._setting_fix(key, value, recorded)

    def _adapt_incoming(self, state_dict, prefix: str) -> None:
        """Bilinearly resize stored position tables of another grid to ours before loading."""
        for i, stage in enumerate(self.stages):
            key = f'{prefix}stages.{i}.pos_embed'
            table = state_dict.get(key)
            if table is None or table.dim() != 4 or table.shape == stage.pos_embed.shape:
                continue
            if table.shape[:2] != stage.pos_embed.shape[:2]:
                continue  # a channel mismatch is reported by load_state_dict itself
            state_dict[key] = F.interpolate(
                table.float(),
                size=stage.pos_embed.shape[-2:],
                mode='bilinear',
                align_corners=False).to(table.dtype)

    def _frozen_modules(self) -> list:
        frozen = super()._frozen_modules()
        if self.frozen_stages >= self.num_stages and self.final_norm:
            frozen.append(self.norm)
        return frozen

    def official_algorithm_patches(self) -> list:
        """The landmark count grows with the image (no ``max_landmarks`` bound), as released."""
        return [(m, 'max_landmarks', None) for m in self.modules()
                if isinstance(m, SoftmaxFreeAttention)]

    truncated_normal_init = (nn.Linear, )  # convs keep PyTorch's default, as released

    def _init_family_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, SOFTStage):  # position tables and the cls token
                for param in module.parameters(recurse=False):
                    trunc_normal_(param, std=0.02)

    def output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Output ``index``: the stage map (the last one through the final norm with
        ``final_norm``). Inputs need at least 29 px per side (the stage-0 grid must hold one
        8 x 8 landmark window)."""
        if index == self.num_stages - 1 and self.final_norm:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x.contiguous()
