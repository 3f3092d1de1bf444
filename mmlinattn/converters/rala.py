"""Official RALA / RAVLT checkpoints -> :class:`mmlinattn.models.backbones.RAVLT` keys.

Handles three layouts (the official names appear only in this file):

* official ImageNet classifier (``classfication/main.py``): weights under ``'model'``, keys like
  ``patch_embed.proj.0.weight``, ``layers.0.blocks.0.attn.qkvo.weight``, ``layers.0.RoPE.angle``,
  plus the classifier neck/head ``proj.*``, ``norm.*``, ``head.*`` (kept under these names
  beside the backbone, for the timm classifier; a backbone ignores them);
* official mmdet-2.x / mmseg-0.x (backbone ``GLTA``): weights under ``'state_dict'``, backbone keys
  under ``backbone.`` (with ``extra_norms.{i}.norm.*``), other prefixes for neck and heads;
* mmlinattn's own layout (backbone or whole model): returned unchanged.

Key map (official -> ours)::

    patch_embed.proj.{0,3,6,9}.*        stem.{0,1,2,3}.conv.*
    patch_embed.proj.{1,4,7,10}.*       stem.{0,1,2,3}.bn.*
    layers.{i}.downsample.reduction.*   stages.{i+1}.downsample.conv.*
    layers.{i}.downsample.norm.*        stages.{i+1}.downsample.bn.*
    layers.{i}.blocks.{j}.pos.*         stages.{i}.blocks.{j}.cpe.*
                       .gamma_1/_2                          .layer_scale1/2
                       .norm1.norm.*                        .norm1.*    (norm2 likewise)
                       .attn.qkvo.*                         .attn.qkvg.*
                       .attn.{lepe,proj}.*, .ffn.*          unchanged
    extra_norms.{i}.norm.*              out_norms.{i}.*
    layers.{i}.RoPE.angle               checked against our frequencies, dropped
"""
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from ..archs import RAVLT_ARCHS, RAVLT_OFFICIAL_ATTN_TYPES
from ..ops.rope import rope_frequencies
from .common import CheckpointError, FamilyConverter, register_family

__all__ = ['RALA_CONVERTER', 'convert_official_rala', 'infer_ravlt_arch']

_STEM = {
    0: (0, 'conv'),
    1: (0, 'bn'),
    3: (1, 'conv'),
    4: (1, 'bn'),
    6: (2, 'conv'),
    7: (2, 'bn'),
    9: (3, 'conv'),
    10: (3, 'bn')
}
_BLOCK_RENAMES = [('pos.', 'cpe.'), ('gamma_1', 'layer_scale1'), ('gamma_2', 'layer_scale2'),
                  ('norm1.norm.', 'norm1.'), ('norm2.norm.', 'norm2.'),
                  ('attn.qkvo.', 'attn.qkvg.')]


def _official_to_ours(key: str) -> Optional[str]:
    """Our name of an official backbone key; ``None`` if the key is not part of the backbone."""
    match = re.match(r'^patch_embed\.proj\.(\d+)\.(.+)$', key)
    if match:
        index, rest = int(match.group(1)), match.group(2)
        if index not in _STEM:
            return None
        stem_index, layer = _STEM[index]
        return f'stem.{stem_index}.{layer}.{rest}'
    match = re.match(r'^layers\.(\d+)\.downsample\.(reduction|norm)\.(.+)$', key)
    if match:
        stage, layer, rest = int(match.group(1)), match.group(2), match.group(3)
        return f'stages.{stage + 1}.downsample.{"conv" if layer == "reduction" else "bn"}.{rest}'
    match = re.match(r'^layers\.(\d+)\.blocks\.(\d+)\.(.+)$', key)
    if match:
        rest = match.group(3)
        for old, new in _BLOCK_RENAMES:
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        return f'stages.{match.group(1)}.blocks.{match.group(2)}.{rest}'
    match = re.match(r'^extra_norms\.(\d+)\.norm\.(.+)$', key)
    if match:
        return f'out_norms.{match.group(1)}.{match.group(2)}'
    return None


def convert_official_rala(
    state_dict: Mapping[str, torch.Tensor]
) -> Tuple[Dict[str, torch.Tensor], List[str], Dict[str, Any]]:
    """Map an official RALA backbone (classifier or ``GLTA``) to RAVLT keys.

    Returns:
        tuple: ``(converted, dropped keys, hints)``; ``hints['head_dims']`` maps a stage to the
        head size its RoPE buffer implies, ``hints['official']`` is True.

    Raises:
        CheckpointError: a RoPE buffer that differs from the frequencies RAVLT computes.
    """
    converted, dropped, head_dims = {}, [], {}
    for key, value in state_dict.items():
        rope = re.match(r'^layers\.(\d+)\.RoPE\.angle$', key)
        if rope:
            stage, head_dim = int(rope.group(1)), 2 * value.numel()
            expected = rope_frequencies(head_dim) if head_dim % 4 == 0 else None
            if expected is None or not torch.allclose(value.float(), expected, rtol=1e-5, atol=0):
                raise CheckpointError(
                    f'{key} does not hold the RoPE frequencies RAVLT computes for head_dim '
                    f'{head_dim} (1 / 10000 ** linspace(0, 1, head_dim / 4), interleaved); the '
                    'weights were trained with another position encoding and would load silently '
                    'wrong')
            head_dims[stage] = head_dim
            dropped.append(key)
            continue
        new_key = _official_to_ours(key)
        converted[new_key if new_key is not None else key] = value
    return converted, dropped, {'head_dims': head_dims, 'official': True}


def infer_ravlt_arch(state_dict: Mapping[str, torch.Tensor],
                     hints: Optional[Dict] = None) -> Tuple[Dict, Dict, Dict]:
    """``arch``, constructor arguments and settings of a RAVLT state dict in our key layout.

    ``num_heads`` cannot be read from weight shapes; it comes from the official RoPE buffers
    (``hints['head_dims']``), else from the released variant with the same widths and depths,
    else it is unknown (None entries).

    Raises:
        CheckpointError: the keys do not describe a 4-stage RAVLT.
    """
    head_dims = (hints or {}).get('head_dims') or {}
    num_stages = RAVLT_ARCHS.num_stages
    embed_dims, depths, mlp_ratios = [], [], []
    for stage in range(num_stages):
        blocks = {
            int(m.group(1))
            for k in state_dict
            for m in [re.match(rf'^stages\.{stage}\.blocks\.(\d+)\.', k)] if m
        }
        cpe = state_dict.get(f'stages.{stage}.blocks.0.cpe.weight')
        fc1 = state_dict.get(f'stages.{stage}.blocks.0.ffn.fc1.weight')
        if not blocks or cpe is None or fc1 is None or blocks != set(range(max(blocks) + 1)):
            raise CheckpointError(f'unknown variant: stage {stage} has no complete block list, so '
                                  'this is not a 4-stage RAVLT backbone')
        embed_dims.append(cpe.shape[0])
        depths.append(len(blocks))
        mlp_ratios.append(fc1.shape[0] / cpe.shape[0])
    num_heads: List[Optional[int]] = [None] * num_stages
    if len(head_dims) == num_stages:
        if any(c % head_dims[i] for i, c in enumerate(embed_dims)):
            raise CheckpointError(f'unknown variant: head dims {head_dims} do not divide '
                                  f'embed_dims {embed_dims}')
        num_heads = [c // head_dims[i] for i, c in enumerate(embed_dims)]
    else:
        shown = {'embed_dims': embed_dims, 'depths': depths, 'mlp_ratios': mlp_ratios}
        name = RAVLT_ARCHS.variant_of(shown)
        if name is not None:
            num_heads = RAVLT_ARCHS.get(name)['num_heads']
    arch = {
        'embed_dims': embed_dims,
        'depths': depths,
        'num_heads': num_heads,
        'mlp_ratios': mlp_ratios
    }
    stem = state_dict.get('stem.0.conv.weight')
    build_kwargs = {'in_channels': stem.shape[1]} if stem is not None else {}
    settings = {'embed_dims': embed_dims, 'depths': depths, 'num_heads': num_heads}
    return arch, build_kwargs, settings


def _source_settings(source_arch: Optional[str], hints: Dict) -> Dict[str, Any]:
    if source_arch is not None and not source_arch.lower().startswith(('ravlt', 'rala')):
        raise CheckpointError(f"the checkpoint's arch entry {source_arch!r} is not a RAVLT model")
    if hints.get('official'):
        return {'attn_types': list(RAVLT_OFFICIAL_ATTN_TYPES)}
    return {}


def _describe(settings: Dict) -> str:
    attn = settings.get('attn_types')
    return f"attention {'/'.join(attn)}" if attn else ''


RALA_CONVERTER = FamilyConverter(
    table=RAVLT_ARCHS,
    official_signature=re.compile(r'^layers\.\d+\.blocks\.\d+\.attn\.qkvo\.weight$'),
    our_signature=re.compile(r'^stages\.\d+\.blocks\.\d+\.attn\.qkvg\.weight$'),
    official_keys=re.compile(
        r'^(patch_embed\.proj\.\d+\.|layers\.\d+\.(blocks|downsample|RoPE)\.)'),
    our_keys=re.compile(r'^(stem\.\d+\.|stages\.\d+\.(blocks|downsample)\.|out_norms\.\d+\.)'),
    convert_official=convert_official_rala,
    infer=infer_ravlt_arch,
    source_settings=_source_settings,
    optional_keys=re.compile(r'^out_norms\.'),
    classifier_keys=re.compile(r'^(proj|norm|head)\.'),
    describe=_describe)

register_family(RALA_CONVERTER)
