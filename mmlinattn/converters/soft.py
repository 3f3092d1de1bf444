"""Official SOFT / SOFT-Norm checkpoints -> :class:`mmlinattn.models.backbones.SOFT` keys.

The official names appear only in this file. Key map (official -> ours)::

    patch_embed1.proj.{0,3,6}.*          stem.{0,1,2}.conv.*
    patch_embed1.proj.{1,4,7}.*          stem.{0,1,2}.bn.*
    patch_embed{s}.proj.{0,1}.*          stages.{s-1}.downsample.{conv,bn}.*     (s = 2, 3, 4)
    pos_embed{s}  (1, h*w, C)            stages.{s-1}.pos_embed  (1, C, h, w)
    pos_embed4[:, :1], pos_embed4[:, 1:] stages.3.cls_pos_embed, stages.3.pos_embed
    cls_token                            stages.3.cls_token
    block{s}.{i}.att.mha.W_q / W_v / ff  stages.{s-1}.blocks.{i}.attn.q_proj / v_proj / out_proj
                .att.mha.attn.Qlandmark_op                 .attn.landmark_conv
                .att.mha.attn.Qnorm_act.0                  .attn.landmark_norm
                .att.mha.attn.conv                         .attn.local_conv
                .att.norm1 / norm2                         .norm1 / norm2
                .att.ff1 / ff2                             .ffn.layers.0.0 / ffn.layers.1
    block4.{i}.attn.q ++ attn.kv         stages.3.blocks.{i}.attn.qkv   (rows: q, k, v)
    block4.{i}.attn.proj, norm1, norm2   unchanged under stages.3.blocks.{i}.
    block4.{i}.mlp.fc1 / fc2             stages.3.blocks.{i}.ffn.layers.0.0 / ffn.layers.1
    norm.*                               norm.*   (used with final_norm=True)
    head.*                               dropped

:func:`convert_soft_state_dict` is the pure key map. :func:`convert_soft` wraps it for the
converter framework (:mod:`mmlinattn.converters.common`, family ``'soft'``): it also accepts our
own layout (backbone or whole detector / segmentor under ``backbone.``), infers the variant from
the shapes and block counts (the official ``soft_small`` code config has 20 stage-2 blocks, the
README's 24 M model 7: depths are read from the keys, never assumed) and refuses what is not a
SOFT backbone.

SOFT and SOFT-Norm (SOFT++) files have identical keys; only the checkpoint's top-level ``'arch'``
string (``'soft_*'`` vs ``'soft_norm_*'``) tells them apart. :func:`soft_checkpoint_weights` reads
it together with the preferred weights (``state_dict_ema``: the official evaluation uses the EMA
weights).
"""
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from .common import (CheckpointError, ConversionResult, checkpoint_arch, register_family,
                     unwrap_state_dict)

__all__ = ['convert_soft_state_dict', 'is_official_soft', 'detect_soft', 'infer_soft_arch',
           'convert_soft', 'soft_checkpoint_weights']

FAMILY = 'soft'
BACKBONE_PREFIX = 'backbone.'
# Weight entries of an official timm-saver file, in order of preference.

_OFFICIAL_SIGNATURE = re.compile(r'^block[123]\.\d+\.att\.mha\.W_q\.weight$')
_OUR_SIGNATURE = re.compile(r'^stages\.[012]\.blocks\.\d+\.attn\.landmark_conv\.weight$')
_OFFICIAL_KEY = re.compile(r'^(patch_embed\d\.|block\d\.\d+\.|pos_embed\d$|cls_token$)')
_OUR_KEY = re.compile(r'^(stem\.\d+\.|stages\.\d+\.)')
_STEM = {0: '0.conv', 1: '0.bn', 3: '1.conv', 4: '1.bn', 6: '2.conv', 7: '2.bn'}
_SOFT_BLOCK = [('att.mha.W_q.', 'attn.q_proj.'), ('att.mha.W_v.', 'attn.v_proj.'),
               ('att.mha.ff.', 'attn.out_proj.'),
               ('att.mha.attn.Qlandmark_op.', 'attn.landmark_conv.'),
               ('att.mha.attn.Qnorm_act.0.', 'attn.landmark_norm.'),
               ('att.mha.attn.conv.', 'attn.local_conv.'), ('att.norm1.', 'norm1.'),
               ('att.norm2.', 'norm2.'), ('att.ff1.', 'ffn.layers.0.0.'),
               ('att.ff2.', 'ffn.layers.1.')]
_SOFTMAX_BLOCK = [('attn.proj.', 'attn.proj.'), ('norm1.', 'norm1.'), ('norm2.', 'norm2.'),
                  ('mlp.fc1.', 'ffn.layers.0.0.'), ('mlp.fc2.', 'ffn.layers.1.')]


def is_official_soft(state_dict: Mapping) -> bool:
    """True if ``state_dict`` has the official SOFT layout (SOFT and SOFT-Norm alike)."""
    return any(_OFFICIAL_SIGNATURE.match(k) for k in state_dict)


def _grid_table(table: torch.Tensor, key: str) -> torch.Tensor:
    """``(1, L, C)`` square token table -> ``(1, C, sqrt(L), sqrt(L))``."""
    side = math.isqrt(table.shape[1])
    if table.dim() != 3 or side * side != table.shape[1]:
        raise ValueError(f'{key} has shape {tuple(table.shape)}; expected (1, L, C) with a '
                         'square L')
    return table.transpose(1, 2).reshape(1, table.shape[2], side, side)


def _rename(rest: str, renames) -> str:
    for old, new in renames:
        if rest.startswith(old):
            return new + rest[len(old):]
    raise KeyError(rest)


def convert_soft_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Map an official SOFT / SOFT-Norm state dict to :class:`SOFT` keys (see module docstring).

    A state dict that is already in our layout is returned unchanged (as a new dict). The
    classifier head is dropped; the final ``norm`` is kept for ``final_norm=True``.

    Args:
        state_dict: official weights, keys without ``module.``.

    Returns:
        dict: converted tensors.

    Raises:
        KeyError: a key that no rule covers (the file is not a SOFT classifier).
        ValueError: a position table that is not a square grid.
    """
    if not is_official_soft(state_dict):
        return dict(state_dict)
    out, pending_q = {}, {}
    for key, value in state_dict.items():
        if key.startswith('head.'):
            continue
        if key.startswith('norm.'):
            out[key] = value
        elif key == 'cls_token':
            out['stages.3.cls_token'] = value
        elif re.match(r'^pos_embed[1234]$', key):
            stage = int(key[-1]) - 1
            if stage == 3:
                out['stages.3.cls_pos_embed'] = value[:, :1]
                value = value[:, 1:]
            out[f'stages.{stage}.pos_embed'] = _grid_table(value, key)
        elif (match := re.match(r'^patch_embed1\.proj\.(\d+)\.(.+)$', key)):
            out[f'stem.{_STEM[int(match.group(1))]}.{match.group(2)}'] = value
        elif (match := re.match(r'^patch_embed([234])\.proj\.([01])\.(.+)$', key)):
            layer = 'conv' if match.group(2) == '0' else 'bn'
            out[f'stages.{int(match.group(1)) - 1}.downsample.{layer}.{match.group(3)}'] = value
        elif (match := re.match(r'^block([123])\.(\d+)\.(.+)$', key)):
            stage, index, rest = int(match.group(1)) - 1, match.group(2), match.group(3)
            out[f'stages.{stage}.blocks.{index}.{_rename(rest, _SOFT_BLOCK)}'] = value
        elif (match := re.match(r'^block4\.(\d+)\.attn\.(q|kv)\.(weight|bias)$', key)):
            pending_q.setdefault((match.group(1), match.group(3)), {})[match.group(2)] = value
        elif (match := re.match(r'^block4\.(\d+)\.(.+)$', key)):
            out[f'stages.3.blocks.{match.group(1)}.{_rename(match.group(2), _SOFTMAX_BLOCK)}'] = \
                value
        else:
            raise KeyError(f'{key!r} is not a key of an official SOFT classifier')
    for (index, kind), parts in pending_q.items():
        if set(parts) != {'q', 'kv'}:
            raise KeyError(f'block4.{index}.attn: q and kv {kind} must both be present')
        out[f'stages.3.blocks.{index}.attn.qkv.{kind}'] = torch.cat([parts['q'], parts['kv']])
    return out


def _backbone(state_dict: Mapping) -> Tuple[Dict, Dict]:
    """(backbone keys without ``backbone.``, other keys); all keys are backbone keys if none has
    the prefix."""
    if any(k.startswith(BACKBONE_PREFIX) for k in state_dict):
        return ({k[len(BACKBONE_PREFIX):]: v for k, v in state_dict.items()
                 if k.startswith(BACKBONE_PREFIX)},
                {k: v for k, v in state_dict.items() if not k.startswith(BACKBONE_PREFIX)})
    return dict(state_dict), {}


def detect_soft(state_dict: Mapping) -> bool:
    """True for official SOFT / SOFT-Norm and for mmlinattn SOFT layouts (backbone or whole
    model)."""
    keys = _backbone(state_dict)[0]
    return any(_OFFICIAL_SIGNATURE.match(k) or _OUR_SIGNATURE.match(k) for k in keys)


def infer_soft_arch(state_dict: Mapping[str, torch.Tensor]) -> Tuple[str, Dict, Dict]:
    """Variant name, ``arch`` dict and the other constructor arguments of a SOFT backbone state
    dict in our key layout.

    ``num_heads`` of stages 0-2 is the channel count of the per-head V convolution. Stage 3 has
    no such trace; its head size is taken equal to stage 2's (32 in every released variant).

    Returns:
        tuple: ``(variant, arch, kwargs)``; variant is a zoo name or ``'custom'``; kwargs holds
        ``landmark_ratios``, ``local_kernel_sizes``, ``pretrain_img_size``, ``final_norm`` and
        ``in_channels`` as found in the weights.

    Raises:
        CheckpointError: the keys do not describe a 4-stage SOFT backbone.
    """
    from ..models.backbones.soft import SOFT

    embed_dims, depths, num_heads, ratios, kernels = [], [], [], [], []
    for stage in range(SOFT.num_stages):
        blocks = {int(m.group(1)) for k in state_dict
                  for m in [re.match(rf'^stages\.{stage}\.blocks\.(\d+)\.', k)] if m}
        norm1 = state_dict.get(f'stages.{stage}.blocks.0.norm1.weight')
        if not blocks or norm1 is None or blocks != set(range(max(blocks) + 1)):
            raise CheckpointError(f'unknown variant: stage {stage} has no complete block list, so '
                                  'this is not a 4-stage SOFT backbone')
        embed_dims.append(norm1.shape[0])
        depths.append(len(blocks))
        if stage < SOFT.num_stages - 1:
            landmark = state_dict.get(f'stages.{stage}.blocks.0.attn.landmark_conv.weight')
            local = state_dict.get(f'stages.{stage}.blocks.0.attn.local_conv.weight')
            if landmark is None or local is None:
                raise CheckpointError(f'stage {stage} has no SOFT attention weights (landmark and '
                                      'V convolutions); not a SOFT backbone')
            num_heads.append(local.shape[0])
            ratios.append(landmark.shape[-1])
            kernels.append(local.shape[-1])
    head_dim = embed_dims[2] // num_heads[2]
    if embed_dims[3] % head_dim:
        raise CheckpointError(f'cannot infer the stage-3 heads: width {embed_dims[3]} is not a '
                              f'multiple of the stage-2 head size {head_dim}')
    num_heads.append(embed_dims[3] // head_dim)
    arch = {'embed_dims': embed_dims, 'depths': depths, 'num_heads': num_heads}
    pos = state_dict.get('stages.0.pos_embed')
    stem = state_dict.get('stem.0.conv.weight')
    kwargs = dict(landmark_ratios=ratios, local_kernel_sizes=kernels,
                  pretrain_img_size=(pos.shape[-2] * 4, pos.shape[-1] * 4) if pos is not None
                  else (224, 224),
                  final_norm='norm.weight' in state_dict,
                  in_channels=stem.shape[1] if stem is not None else 3)
    for name in ('tiny', 'small', 'medium', 'large', 'huge'):
        if SOFT.arch_zoo[name] == arch:
            return name, arch, kwargs
    return 'custom', arch, kwargs


def _reference_shapes(arch: Dict, kwargs: Dict) -> Optional[Dict[str, torch.Size]]:
    """``{key: shape}`` of a SOFT with ``arch`` (built on the meta device, no memory)."""
    from ..models.backbones.soft import SOFT
    try:
        with torch.device('meta'):
            model = SOFT(arch=arch, **kwargs)
    except ValueError:
        return None
    return {k: v.shape for k, v in model.state_dict().items()}


def _is_norm_arch(source_arch: Optional[str]) -> Optional[bool]:
    if not isinstance(source_arch, str):
        return None
    name = source_arch.lower()
    if not name.startswith('soft'):
        raise CheckpointError(f"the checkpoint's arch entry {source_arch!r} is not a SOFT model")
    return name.startswith('soft_norm')


def convert_soft(state_dict: Mapping[str, torch.Tensor], whole_model: bool = False,
                 source_arch: Optional[str] = None) -> ConversionResult:
    """Convert any SOFT layout to :class:`SOFT` keys (see the module docstring).

    Args:
        state_dict: unwrapped weights (see :func:`soft_checkpoint_weights`).
        whole_model (bool): for detector / segmentor files (ours), keep the other modules' keys
            and put the backbone under ``backbone.``.
        source_arch (str, optional): the official file's ``'arch'`` entry; ``'soft_norm_*'``
            marks a SOFT-Norm (SOFT++) model, reported as a ``-norm`` suffix of a released
            variant's name (``'small-norm'``); build it with ``norm=True``.

    Returns:
        ConversionResult: compared against a SOFT of the inferred arch.

    Raises:
        CheckpointError: not SOFT, mixed layouts, an unknown official key, an incomplete or
            non-SOFT structure, or ``whole_model`` with a backbone-only file.
    """
    if not detect_soft(state_dict):
        raise CheckpointError('not a SOFT checkpoint (no block*.att.mha.W_q or '
                              'stages.*.blocks.*.attn.landmark_conv weights)')
    is_norm = _is_norm_arch(source_arch)
    backbone, others = _backbone(state_dict)
    is_detector = bool(others) or any(k.startswith(BACKBONE_PREFIX) for k in state_dict)
    if whole_model and not is_detector:
        raise CheckpointError('--whole-model needs a detector/segmentor checkpoint (keys under '
                              "'backbone.'); this file holds only a backbone or classifier")
    official = any(_OFFICIAL_KEY.match(k) for k in backbone)
    ours = any(_OUR_KEY.match(k) for k in backbone)
    if official and ours:
        raise CheckpointError('the backbone mixes official SOFT keys and mmlinattn SOFT keys')
    dropped: List[str] = []
    if official:
        try:
            converted = convert_soft_state_dict(backbone)
        except (KeyError, ValueError) as err:
            raise CheckpointError(f'not an official SOFT classifier: {err}') from None
        dropped = sorted(k for k in backbone if k.startswith('head.'))
        source_format = 'official-imagenet'
    else:
        converted, source_format = backbone, 'mmlinattn'
    variant, arch, kwargs = infer_soft_arch(converted)
    if is_norm and variant != 'custom':
        variant += '-norm'
    if whole_model:
        output = {**{BACKBONE_PREFIX + k: v for k, v in converted.items()}, **others}
    else:
        output = converted
        dropped += sorted(others)
    result = ConversionResult(state_dict=output, family=FAMILY, variant=variant, arch=arch,
                              source_format=source_format, dropped=dropped)
    reference = _reference_shapes(arch, kwargs)
    if reference is not None:
        result.compare(reference, prefix=BACKBONE_PREFIX if whole_model else '')
    return result


def soft_checkpoint_weights(checkpoint: Any) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """The weights and the ``'arch'`` entry of a loaded official SOFT file.

    Weights as :func:`~.common.unwrap_state_dict` finds them (``state_dict_ema`` before
    ``state_dict``); a ``module.`` prefix is stripped.

    Returns:
        tuple: ``(state_dict, arch entry or None)``.

    Raises:
        CheckpointError: no tensors found.
    """
    return unwrap_state_dict(checkpoint), checkpoint_arch(checkpoint)


register_family(FAMILY, detect_soft, convert_soft)
