"""Architecture tables of every backbone family, as plain data.

The backbones (:mod:`mmlinattn.models.backbones`), the checkpoint converters
(:mod:`mmlinattn.converters`) and the timm models read their variants from here, so a converter
never imports a model. Nothing in this module depends on torch.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ['ArchTable', 'RAVLT_ARCHS', 'SOFT_ARCHS', 'ARCH_TABLES', 'RAVLT_OFFICIAL_ATTN_TYPES']


@dataclass(frozen=True)
class ArchTable:
    """The released variants of one backbone family.

    Attributes:
        family (str): checkpoint family (converter name), e.g. ``'rala'``.
        backbone (str): registered backbone type, e.g. ``'RAVLT'``.
        variants (dict): canonical variant name -> arch dict.
        aliases (dict): other accepted names -> canonical name.
        required_keys (tuple[str]): keys a custom arch dict must have.
        defaults (dict): optional arch keys and their values when a custom dict omits them.
        num_stages (int): stages of every variant.
        default_head_dim (int): head size assumed where neither the weights nor a record show a
            stage's head count (see :meth:`complete`).
    """
    family: str
    backbone: str
    variants: Mapping[str, Mapping[str, Any]]
    aliases: Mapping[str, str]
    required_keys: Tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    num_stages: int = 4
    default_head_dim: int = 32

    def names(self) -> Tuple[str, ...]:
        """Every accepted variant name, canonical and alias, sorted."""
        return tuple(sorted(set(self.variants) | set(self.aliases)))

    def canonical(self, name: str) -> Optional[str]:
        """Canonical name of ``name`` (case-insensitive), or None if unknown."""
        name = name.lower()
        name = self.aliases.get(name, name)
        return name if name in self.variants else None

    def get(self, name: str) -> Dict[str, Any]:
        """A copy of the arch dict of variant ``name`` with defaults filled in.

        Raises:
            KeyError: unknown name.
        """
        canonical = self.canonical(name)
        if canonical is None:
            raise KeyError(name)
        return {**self.defaults, **{k: _copy(v) for k, v in self.variants[canonical].items()}}

    def variant_of(self,
                   arch: Mapping[str, Any],
                   keys: Optional[Tuple[str, ...]] = None) -> Optional[str]:
        """Canonical name of the variant whose entries equal ``arch`` on ``keys`` (default: every
        key ``arch`` and the variant share), or None."""
        for name in self.variants:
            full = self.get(name)
            compare = keys or tuple(k for k in arch if k in full)
            if all(_same(arch.get(k), full.get(k)) for k in compare):
                return name
        return None

    def complete(self, arch: Mapping[str, Any]) -> Tuple[Dict[str, Any], str]:
        """``arch`` with its unknown (None) ``num_heads`` entries filled in, and a note on them.

        A stage's head count that no tensor shape shows (SOFT's softmax stage; RAVLT without its
        RoPE buffers or a settings record) defaults to the head size of the closest earlier stage
        whose count is known, else ``default_head_dim``, and to one head where that size does not
        divide the stage's width: an arch that builds, but an assumption.

        Returns:
            tuple: ``(arch, note)``: a copy of ``arch``, and a sentence naming every filled entry
            and that it must be checked (empty when nothing was unknown).
        """
        arch = {k: _copy(v) for k, v in arch.items()}
        heads = arch.get('num_heads')
        if heads is None or all(h is not None for h in heads):
            return arch, ''
        filled, size, why = [], self.default_head_dim, 'the default head size'
        for i, (width, count) in enumerate(zip(arch['embed_dims'], heads)):
            if count is not None:
                size, why = width // count, f'the head size of stage {i}'
            elif width % size:
                heads[i] = 1
                filled.append(f'num_heads[{i}]=1 ({why}, {size}, does not divide {width})')
            else:
                heads[i] = width // size
                filled.append(f'num_heads[{i}]={heads[i]} ({why}, {size})')
        verb = 'is' if len(filled) == 1 else 'are'
        return arch, (f'{", ".join(filled)} {verb} not recorded in the file, only assumed: check '
                      'against the model the weights were trained with')


def _copy(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


#: Attention per stage of every released RAVLT model (and so of the official checkpoints).
RAVLT_OFFICIAL_ATTN_TYPES = ('linear', 'linear', 'softmax', 'softmax')

# yapf: disable
RAVLT_ARCHS = ArchTable(
    family='rala', backbone='RAVLT',
    variants={
        't': {'embed_dims': [64, 128, 256, 512], 'depths': [2, 2, 6, 2], 'num_heads': [1, 2, 4, 8],
              'layer_scale_init_values': [1.0, 1.0, 1.0, 1.0], 'drop_path_rate': 0.1},
        's': {'embed_dims': [64, 128, 320, 512], 'depths': [3, 5, 9, 3], 'num_heads': [1, 2, 5, 8],
              'layer_scale_init_values': [1.0, 1.0, 1.0, 1.0], 'drop_path_rate': 0.15},
        'b': {'embed_dims': [96, 192, 384, 512], 'depths': [4, 6, 12, 6], 'num_heads': [1, 2, 6, 8],
              'layer_scale_init_values': [1.0, 1.0, 1e-6, 1e-6], 'drop_path_rate': 0.4},
        'l': {'embed_dims': [96, 192, 448, 640], 'depths': [4, 7, 19, 8],
              'num_heads': [1, 2, 7, 10], 'layer_scale_init_values': [1e-6, 1e-6, 1e-6, 1e-6],
              'drop_path_rate': 0.55},
    },
    aliases={'tiny': 't', 'small': 's', 'base': 'b', 'large': 'l'},
    required_keys=('embed_dims', 'depths', 'num_heads'),
    defaults={'mlp_ratios': [3.5] * 4, 'layer_scale_init_values': [1.0] * 4,
              'drop_path_rate': 0.1},
    default_head_dim=64)

SOFT_ARCHS = ArchTable(
    family='soft', backbone='SOFT',
    variants={
        'tiny': {'embed_dims': [64, 128, 320, 512], 'depths': [1, 2, 3, 2],
                 'num_heads': [2, 4, 10, 16]},
        'small': {'embed_dims': [64, 128, 320, 512], 'depths': [1, 3, 7, 4],
                  'num_heads': [2, 4, 10, 16]},
        'medium': {'embed_dims': [64, 128, 288, 512], 'depths': [1, 3, 29, 5],
                   'num_heads': [2, 4, 9, 16]},
        'large': {'embed_dims': [64, 128, 320, 512], 'depths': [1, 3, 40, 5],
                  'num_heads': [2, 4, 10, 16]},
        'huge': {'embed_dims': [64, 128, 352, 512], 'depths': [1, 5, 49, 5],
                 'num_heads': [2, 4, 11, 16]},
    },
    aliases={'t': 'tiny', 's': 'small', 'm': 'medium', 'l': 'large', 'h': 'huge'},
    required_keys=('embed_dims', 'depths', 'num_heads'),
    default_head_dim=32)
# yapf: enable

#: Family name -> table.
ARCH_TABLES = {table.family: table for table in (RAVLT_ARCHS, SOFT_ARCHS)}
