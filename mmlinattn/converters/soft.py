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
    norm.*, head.*                       kept as they are (the timm classifier's final norm
                                         and head; a backbone loads norm.* with final_norm=True)

:func:`convert_soft_state_dict` is the pure key map. :data:`SOFT_CONVERTER` plugs it into the
converter framework (:mod:`mmlinattn.converters.common`, family ``'soft'``), which also accepts our
own layout (backbone or whole detector / segmentor under ``backbone.``). The variant is inferred
from the shapes and block counts (the official ``soft_small`` code config has 20 stage-2 blocks,
the README's 24 M model 7: depths are read from the keys, never assumed).

The classifier's final ``norm`` is part of its head, not of the dense-prediction backbone: the
official stage-3 map (what a dense-prediction model takes, and the shipped configs build) is the
map before it, so a classifier file's backbone config has ``final_norm=False`` (its default); a
whole detector / segmentor trained with ``final_norm=True`` says so with ``backbone.norm.*``.

SOFT and SOFT-Norm (SOFT++) files have identical keys; only the checkpoint's top-level ``'arch'``
string (``'soft_*'`` vs ``'soft_norm_*'``) tells them apart. The converter turns it into the
settings record (``normalization='none'`` or ``'core'``) that every converted file carries, so a
SOFT file cannot load into a SOFT++ backbone unnoticed (and vice versa). The timm saver's
``state_dict_ema`` is preferred over ``state_dict``: the official evaluation uses the EMA weights.
"""
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from ..archs import SOFT_ARCHS
from .common import CheckpointError, FamilyConverter, register_family

__all__ = ['SOFT_CONVERTER', 'convert_soft_state_dict', 'convert_official_soft', 'infer_soft_arch']

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
_OFFICIAL_SIGNATURE = re.compile(r'^block[123]\.\d+\.att\.mha\.W_q\.weight$')


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
    if not any(_OFFICIAL_SIGNATURE.match(k) for k in state_dict):
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


def convert_official_soft(
    state_dict: Mapping[str, torch.Tensor]
) -> Tuple[Dict[str, torch.Tensor], List[str], Dict[str, Any]]:
    """:func:`convert_soft_state_dict` for the converter framework.

    Raises:
        CheckpointError: a key no rule covers or a non-square position table.
    """
    try:
        converted = convert_soft_state_dict(state_dict)
    except (KeyError, ValueError) as err:
        raise CheckpointError(f'not an official SOFT classifier: {err}') from None
    return converted, [], {'official': True}


def infer_soft_arch(state_dict: Mapping[str, torch.Tensor],
                    hints: Optional[Dict] = None) -> Tuple[Dict, Dict, Dict]:
    """``arch``, constructor arguments and settings of a SOFT state dict in our key layout.

    ``num_heads`` of stages 0-2 is the channel count of the per-head V convolution. Stage 3 has
    no such trace: it comes from the file's ``'arch'`` entry (``hints['source_arch']``) when that
    names a released variant with the same widths and stage 0-2 heads, else it is unknown (None
    in arch and settings; :meth:`~mmlinattn.archs.ArchTable.complete` then assumes stage 2's head
    size, 32 in every released variant).

    Returns:
        tuple: ``(arch, build_kwargs, settings)``; build_kwargs holds ``pretrain_img_size``,
        ``final_norm`` (whether ``norm.*`` is among the backbone keys) and ``in_channels`` as found
        in the weights; settings the widths, depths, heads, ``landmark_ratios`` and
        ``local_kernel_sizes``.

    Raises:
        CheckpointError: the keys do not describe a 4-stage SOFT backbone.
    """
    num_stages = SOFT_ARCHS.num_stages
    embed_dims, depths, num_heads, ratios, kernels = [], [], [], [], []
    for stage in range(num_stages):
        blocks = {
            int(m.group(1))
            for k in state_dict
            for m in [re.match(rf'^stages\.{stage}\.blocks\.(\d+)\.', k)] if m
        }
        norm1 = state_dict.get(f'stages.{stage}.blocks.0.norm1.weight')
        if not blocks or norm1 is None or blocks != set(range(max(blocks) + 1)):
            raise CheckpointError(f'unknown variant: stage {stage} has no complete block list, so '
                                  'this is not a 4-stage SOFT backbone')
        embed_dims.append(norm1.shape[0])
        depths.append(len(blocks))
        if stage < num_stages - 1:
            landmark = state_dict.get(f'stages.{stage}.blocks.0.attn.landmark_conv.weight')
            local = state_dict.get(f'stages.{stage}.blocks.0.attn.local_conv.weight')
            if landmark is None or local is None:
                raise CheckpointError(f'stage {stage} has no SOFT attention weights (landmark and '
                                      'V convolutions); not a SOFT backbone')
            num_heads.append(local.shape[0])
            ratios.append(landmark.shape[-1])
            kernels.append(local.shape[-1])
    num_heads.append(_entry_heads((hints or {}).get('source_arch'), embed_dims, num_heads))
    arch = {'embed_dims': embed_dims, 'depths': depths, 'num_heads': list(num_heads)}
    pos = state_dict.get('stages.0.pos_embed')
    stem = state_dict.get('stem.0.conv.weight')
    build_kwargs = dict(
        landmark_ratios=ratios,
        local_kernel_sizes=kernels,
        pretrain_img_size=_image_size(pos),
        final_norm='norm.weight' in state_dict,
        in_channels=stem.shape[1] if stem is not None else 3)
    settings = {
        'embed_dims': embed_dims,
        'depths': depths,
        'num_heads': num_heads,
        'landmark_ratios': ratios,
        'local_kernel_sizes': kernels
    }
    return arch, build_kwargs, settings


def _entry_heads(source_arch: Optional[str], embed_dims: List[int],
                 num_heads: List[int]) -> Optional[int]:
    """Stage-3 heads of the released variant an official ``'arch'`` entry names (``soft_tiny``,
    ``soft_norm_small``, ...) if its widths and stage 0-2 heads are the file's; else None."""
    match = re.match(r'^soft_(?:norm_)?([a-z]+)', (source_arch or '').lower())
    name = SOFT_ARCHS.canonical(match.group(1)) if match else None
    if name is None:
        return None
    released = SOFT_ARCHS.get(name)
    if released['embed_dims'] != embed_dims or released['num_heads'][:3] != num_heads:
        return None
    return released['num_heads'][3]


def _image_size(pos_table: Optional[torch.Tensor]):
    """Pre-training image size of a stage-0 position table ``(1, C, H / 4, W / 4)``."""
    if pos_table is None:
        return 224
    height, width = pos_table.shape[-2] * 4, pos_table.shape[-1] * 4
    return height if height == width else (height, width)


def _source_settings(source_arch: Optional[str], hints: Dict) -> Dict[str, Any]:
    """``normalization`` from an official file's ``'arch'`` entry (``soft_norm_*``: SOFT++)."""
    if not isinstance(source_arch, str):
        return {}
    name = source_arch.lower()
    if not name.startswith('soft'):
        raise CheckpointError(f"the checkpoint's arch entry {source_arch!r} is not a SOFT model")
    return {'normalization': 'core' if name.startswith('soft_norm') else 'none'}


def _describe(settings: Dict) -> str:
    normalization = settings.get('normalization')
    if normalization is None:
        return 'SOFT or SOFT++: not recorded'
    return {
        'none': "SOFT, normalization='none'",
        'core': "SOFT++, normalization='core'"
    }.get(normalization, f'SOFT++, normalization={normalization!r}')


def _undecided(settings: Dict) -> Optional[str]:
    if settings.get('normalization') is None:
        return ('the file does not record whether its weights are SOFT or SOFT++ (official files '
                "say it in their 'arch' entry: soft_* or soft_norm_*): the backbone's "
                "normalization must be the one they were trained with ('none' for SOFT, 'core' for "
                'SOFT++)')
    return None


SOFT_CONVERTER = FamilyConverter(
    table=SOFT_ARCHS,
    convert_official=convert_official_soft,
    infer=infer_soft_arch,
    source_settings=_source_settings,
    describe=_describe,
    undecided=_undecided,
    official_signature=_OFFICIAL_SIGNATURE,
    our_signature=re.compile(r'^stages\.[012]\.blocks\.\d+\.attn\.landmark_conv\.weight$'),
    official_keys=re.compile(r'^(patch_embed\d\.|block\d\.\d+\.|pos_embed\d$|cls_token$)'),
    our_keys=re.compile(r'^(stem\.\d+\.|stages\.\d+\.)'),
    classifier_keys=re.compile(r'^(head|norm)\.'))

register_family(SOFT_CONVERTER)
