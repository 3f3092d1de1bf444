"""Official RALA / RAVLT checkpoints -> :class:`mmlinattn.models.backbones.RAVLT` keys.

Handles three layouts (the official names appear only in this file):

* official ImageNet classifier (``classfication/main.py``): weights under ``'model'``, keys like
  ``patch_embed.proj.0.weight``, ``layers.0.blocks.0.attn.qkvo.weight``, ``layers.0.RoPE.angle``,
  plus the classifier neck/head ``proj.*``, ``norm.*``, ``head.*`` (dropped);
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
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from ..models.backbones.ravlt import RAVLT
from ..ops.rope import rope_frequencies
from .common import CheckpointError, ConversionResult, register_family

__all__ = ['convert_rala', 'detect_rala', 'infer_ravlt_arch']

FAMILY = 'rala'
BACKBONE_PREFIX = 'backbone.'

_OFFICIAL_KEY = re.compile(r'^(patch_embed\.proj\.\d+\.|layers\.\d+\.(blocks|downsample|RoPE)\.)')
_OUR_KEY = re.compile(r'^(stem\.\d+\.|stages\.\d+\.(blocks|downsample)\.|out_norms\.\d+\.)')
_SIGNATURE = re.compile(r'^(layers\.\d+\.blocks\.\d+\.attn\.qkvo\.weight'
                        r'|stages\.\d+\.blocks\.\d+\.attn\.qkvg\.weight)$')
_CLASSIFIER = re.compile(r'^(proj|norm|head)\.')

# Stem Sequential index in the official file -> (our stem index, layer).
_STEM = {0: (0, 'conv'), 1: (0, 'bn'), 3: (1, 'conv'), 4: (1, 'bn'), 6: (2, 'conv'), 7: (2, 'bn'),
         9: (3, 'conv'), 10: (3, 'bn')}
_BLOCK_RENAMES = [('pos.', 'cpe.'), ('gamma_1', 'layer_scale1'), ('gamma_2', 'layer_scale2'),
                  ('norm1.norm.', 'norm1.'), ('norm2.norm.', 'norm2.'),
                  ('attn.qkvo.', 'attn.qkvg.')]


def _backbone_keys(state_dict: Mapping) -> List[str]:
    """Backbone keys with any ``backbone.`` prefix removed (all keys if there is none)."""
    if any(k.startswith(BACKBONE_PREFIX) for k in state_dict):
        return [k[len(BACKBONE_PREFIX):] for k in state_dict if k.startswith(BACKBONE_PREFIX)]
    return list(state_dict)


def detect_rala(state_dict: Mapping) -> bool:
    """True for official RALA and for mmlinattn RAVLT layouts (backbone or whole model)."""
    return any(_SIGNATURE.match(k) for k in _backbone_keys(state_dict))


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


def _convert_official_backbone(state_dict: Mapping[str, torch.Tensor]
                               ) -> Tuple[Dict[str, torch.Tensor], List[str], Dict[int, int]]:
    """Returns (converted, dropped keys, {stage: head_dim from the RoPE buffer})."""
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
        if _CLASSIFIER.match(key):
            dropped.append(key)
            continue
        new_key = _official_to_ours(key)
        converted[new_key if new_key is not None else key] = value
    return converted, dropped, head_dims


def infer_ravlt_arch(state_dict: Mapping[str, torch.Tensor],
                     head_dims: Optional[Dict[int, int]] = None) -> Tuple[str, Dict]:
    """Variant name and ``arch`` dict of a RAVLT backbone state dict in our key layout.

    ``num_heads`` cannot be read from weight shapes; it comes from the official RoPE buffers
    (``head_dims``) when available, otherwise it is left out of the comparison with the zoo and
    omitted from a custom arch.

    Raises:
        CheckpointError: the keys do not describe a 4-stage RAVLT.
    """
    embed_dims, depths, mlp_ratios = [], [], []
    for stage in range(RAVLT.num_stages):
        blocks = {int(m.group(1)) for k in state_dict
                  for m in [re.match(rf'^stages\.{stage}\.blocks\.(\d+)\.', k)] if m}
        cpe = state_dict.get(f'stages.{stage}.blocks.0.cpe.weight')
        fc1 = state_dict.get(f'stages.{stage}.blocks.0.ffn.fc1.weight')
        if not blocks or cpe is None or fc1 is None or blocks != set(range(max(blocks) + 1)):
            raise CheckpointError(f'unknown variant: stage {stage} has no complete block list, so '
                                  'this is not a 4-stage RAVLT backbone')
        embed_dims.append(cpe.shape[0])
        depths.append(len(blocks))
        mlp_ratios.append(fc1.shape[0] / cpe.shape[0])
    arch = {'embed_dims': embed_dims, 'depths': depths, 'mlp_ratios': mlp_ratios}
    if head_dims and len(head_dims) == RAVLT.num_stages:
        if any(c % head_dims[i] for i, c in enumerate(embed_dims)):
            raise CheckpointError(f'unknown variant: head dims {head_dims} do not divide '
                                  f'embed_dims {embed_dims}')
        arch['num_heads'] = [c // head_dims[i] for i, c in enumerate(embed_dims)]
    for name in ('t', 's', 'b', 'l'):
        zoo = RAVLT.arch_zoo[name]
        if (zoo['embed_dims'] == embed_dims and zoo['depths'] == depths
                and all(r == 3.5 for r in mlp_ratios)
                and arch.get('num_heads', zoo['num_heads']) == zoo['num_heads']):
            return name, {**arch, 'num_heads': zoo['num_heads']}
    return 'custom', arch


def _reference_shapes(arch: Dict, in_channels: int) -> Optional[Dict[str, torch.Size]]:
    """``{key: shape}`` of a RAVLT with ``arch`` (built on the meta device, no memory)."""
    arch = dict(arch)
    arch.setdefault('num_heads', [1] * RAVLT.num_stages)  # shapes do not depend on it
    try:
        with torch.device('meta'):
            model = RAVLT(arch=arch, in_channels=in_channels)
    except ValueError:
        return None
    return {k: v.shape for k, v in model.state_dict().items()}


def convert_rala(state_dict: Mapping[str, torch.Tensor], whole_model: bool = False,
                 source_arch: Optional[str] = None) -> ConversionResult:
    """Convert any RALA layout to RAVLT keys (see the module docstring).

    Args:
        state_dict: unwrapped weights.
        whole_model (bool): for detector / segmentor files, keep the other modules' keys and put
            the converted backbone under ``backbone.``.
        source_arch (str, optional): the file's ``'arch'`` entry. Official RALA files have none;
            one that names another family (e.g. ``'soft_small'``) is refused.

    Returns:
        ConversionResult: compared against a RAVLT of the inferred arch.

    Raises:
        CheckpointError: not RALA, mixed layouts, a RoPE buffer that differs from ours, a
            structure that is not a 4-stage RAVLT, or ``whole_model`` with a backbone-only file.
    """
    if source_arch is not None and not source_arch.lower().startswith(('ravlt', 'rala')):
        raise CheckpointError(f"the checkpoint's arch entry {source_arch!r} is not a RAVLT model")
    if not detect_rala(state_dict):
        raise CheckpointError('not a RALA/RAVLT checkpoint (no layers.*.blocks.*.attn.qkvo or '
                              'stages.*.blocks.*.attn.qkvg weights)')
    is_detector = any(k.startswith(BACKBONE_PREFIX) for k in state_dict)
    if whole_model and not is_detector:
        raise CheckpointError('--whole-model needs a detector/segmentor checkpoint (keys under '
                              "'backbone.'); this file holds only a backbone or classifier")
    if is_detector:
        backbone = {k[len(BACKBONE_PREFIX):]: v for k, v in state_dict.items()
                    if k.startswith(BACKBONE_PREFIX)}
        others = {k: v for k, v in state_dict.items() if not k.startswith(BACKBONE_PREFIX)}
    else:
        backbone, others = dict(state_dict), {}

    official = any(_OFFICIAL_KEY.match(k) for k in backbone)
    ours = any(_OUR_KEY.match(k) for k in backbone)
    if official and ours:
        raise CheckpointError('the backbone mixes official RALA keys and mmlinattn RAVLT keys')
    if official:
        converted, dropped, head_dims = _convert_official_backbone(backbone)
        source_format = 'official-downstream' if is_detector else 'official-imagenet'
    else:
        converted, dropped, head_dims = backbone, [], None
        source_format = 'mmlinattn'

    variant, arch = infer_ravlt_arch(converted, head_dims)
    in_channels = converted['stem.0.conv.weight'].shape[1] if 'stem.0.conv.weight' in converted \
        else 3
    if whole_model:
        output = {**{BACKBONE_PREFIX + k: v for k, v in converted.items()}, **others}
    else:
        output = converted
        dropped += sorted(others)  # neck / head weights of a detector or segmentor
    result = ConversionResult(state_dict=output, family=FAMILY, variant=variant, arch=arch,
                              source_format=source_format, dropped=dropped)
    reference = _reference_shapes(arch, in_channels)
    if reference is not None:
        result.compare(reference, prefix=BACKBONE_PREFIX if whole_model else '')
    return result


register_family(FAMILY, detect_rala, convert_rala)
