"""Bad checkpoints, generated at test time from the official fixtures.

Each :class:`Case` is one file plus what every entry point must say about it: the converter CLI
(exit code 2 and key words, or a successful conversion that records what the file is),
``init_cfg=dict(type='Pretrained')`` and ``load_from`` (exception type and key words).
"""
import os
import os.path as osp
import pickle
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch

DATA = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'data', 'official')
RAVLT_ARCH = dict(embed_dims=[16, 32, 48, 64], depths=[2, 1, 2, 1], num_heads=[2, 2, 4, 4])
RAVLT_OTHER_ARCH = dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1], num_heads=[2, 2, 4, 4])
SOFT_ARCH = dict(embed_dims=[16, 24, 32, 48], depths=[1, 2, 2, 1], num_heads=[2, 2, 2, 3])


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@dataclass
class Case:
    """A bad (or contradicting) checkpoint and what each entry point must answer.

    Attributes:
        path: the file.
        backbone: ``(type, kwargs)`` of the backbone it is loaded into.
        convert: key words of the converter's one-line refusal; None means the conversion must
            succeed, and ``records`` then lists ``meta['settings']`` entries it must write.
        init_cfg / load_from: ``(exception type name, key words)``.
    """
    path: str
    backbone: Tuple[str, Dict]
    convert: Optional[Tuple[str, ...]]
    init_cfg: Tuple[str, Tuple[str, ...]]
    load_from: Tuple[str, Tuple[str, ...]]
    convert_args: Tuple[str, ...] = ('--allow-custom', )
    records: Dict = field(default_factory=dict)


def _convert(src: str, dst: str) -> dict:
    """Our converted (backbone) file of an official fixture; returns its backbone tensors (the
    classifier head the converter keeps beside them left out)."""
    import convert_checkpoint

    from mmlinattn.converters import family_converter
    assert convert_checkpoint.main([src, dst, '--allow-custom', '--force']) == 0
    saved = torch.load(dst, weights_only=True)
    head = family_converter(saved['meta']['family']).classifier_keys
    return {k: v for k, v in saved['state_dict'].items() if not head.match(k)}


def _save_whole(path: str, backbone_state: dict) -> str:
    torch.save({
        'state_dict': {
            f'backbone.{k}': v
            for k, v in backbone_state.items()
        },
        'meta': {}
    }, path)
    return path


def build_corpus(folder: str, marker: str) -> Dict[str, Case]:
    """Write every bad file under ``folder``; a payload that runs creates ``marker``."""
    join = lambda name: osp.join(folder, name)  # noqa: E731
    ravlt = _convert(osp.join(DATA, 'ravlt_custom_in1k.pth'), join('ravlt_ours.pth'))
    soft = _convert(osp.join(DATA, 'soft_custom_timm.pth'), join('soft_ours.pth'))
    softpp = _convert(osp.join(DATA, 'soft_norm_custom_timm.pth'), join('softpp_ours.pth'))
    ravlt_model = ('RAVLT', dict(arch=RAVLT_ARCH))
    unreadable = ('CheckpointError', )
    cases: Dict[str, Case] = {}

    def damaged(name, data, words):
        with open(join(name), 'wb') as f:
            f.write(data)
        cases[name] = Case(
            join(name), ravlt_model, words, (unreadable[0], words), (unreadable[0], words))

    good = open(join('ravlt_ours.pth'), 'rb').read()
    damaged('empty.pth', b'', ('empty file (0 bytes)', ))
    for label, cut in (('10b', 10), ('third', len(good) // 3), ('half', len(good) // 2),
                       ('end', len(good) - 20)):
        damaged(f'truncated_{label}.pth', good[:cut], ('truncated', ))
    damaged(
        'random.pth',
        bytes(
            torch.randint(
                0, 256, (4096, ), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))),
        ('not a PyTorch checkpoint', 'expected'))
    damaged('text.pth', b'these are my notes about the model\n',
            ('not a PyTorch checkpoint', 'starts with the text'))
    with open(join('pickle_exec.pth'), 'wb') as f:
        pickle.dump({'state_dict': {}, 'x': Payload(marker)}, f)
    torch.save({'state_dict': ravlt, 'x': Payload(marker)}, join('torchzip_exec.pth'))
    unsafe = ('unsafe checkpoint', 'references posix.system',
              'Do not load it with weights_only=False')
    for name in ('pickle_exec.pth', 'torchzip_exec.pth'):
        cases[name] = Case(
            join(name), ravlt_model, unsafe, ('UnsafeCheckpointError', unsafe),
            ('UnsafeCheckpointError', unsafe))

    # Readable files that contradict the model they meet.
    cases['wrong_family.pth'] = Case(
        _save_whole(join('wrong_family.pth'), soft),
        ravlt_model, ('this is a SOFT checkpoint', 'not RALA'),
        ('CheckpointError', ('this is a SOFT checkpoint', 'not RALA')),
        ('CheckpointMismatchError', ('holds SOFT weights', 'RAVLT')),
        convert_args=('--family', 'rala'))
    cases['wrong_variant.pth'] = Case(
        _save_whole(join('wrong_variant.pth'), ravlt), ('RAVLT', dict(arch=RAVLT_OTHER_ARCH)),
        None,
        ('CheckpointMismatchError', ('depths=[2, 1, 2, 1]', 'depths=[1, 1, 1, 1]', 'set arch=')),
        ('CheckpointMismatchError', ('depths=[2, 1, 2, 1]', 'depths=[1, 1, 1, 1]', 'set arch=')),
        records={'depths': [2, 1, 2, 1]})
    soft_kwargs = dict(arch=SOFT_ARCH, final_norm=True)
    cases['soft_as_softpp.pth'] = Case(
        _save_whole(join('soft_as_softpp.pth'),
                    soft), ('SOFT', dict(soft_kwargs, normalization='core')),
        None, ('CheckpointMismatchError', ("normalization='none'", "set normalization='none'")),
        ('CheckpointMismatchError', ("normalization='none'", "set normalization='none'")),
        records={'normalization': 'none'})
    cases['softpp_as_soft.pth'] = Case(
        _save_whole(join('softpp_as_soft.pth'),
                    softpp), ('SOFT', dict(soft_kwargs, normalization='none')),
        None, ('CheckpointMismatchError', ("normalization='core'", "set normalization='core'")),
        ('CheckpointMismatchError', ("normalization='core'", "set normalization='core'")),
        records={'normalization': 'core'})
    official_softpp = osp.join(DATA, 'soft_norm_custom_timm.pth')
    cases['official_softpp_as_soft.pth'] = Case(
        official_softpp, ('SOFT', dict(soft_kwargs, normalization='none')),
        None, ('CheckpointMismatchError', ("normalization='core'", "set normalization='core'")),
        ('CheckpointError', ('official', 'convert it first')),
        records={'normalization': 'core'})
    bent = dict(ravlt)
    bent['stages.1.blocks.0.attn.lepe.weight'] = bent['stages.1.blocks.0.attn.lepe.weight'][
        ..., :3, :3].contiguous()
    cases['wrong_shape.pth'] = Case(
        _save_whole(join('wrong_shape.pth'), bent), ravlt_model,
        ('do not fit the architecture', 'stages.1.blocks.0.attn.lepe.weight'),
        ('CheckpointError', ('differ in shape', 'stages.1.blocks.0.attn.lepe.weight')),
        ('CheckpointMismatchError', ('differ in shape', 'stages.1.blocks.0.attn.lepe.weight')))
    stageless = {k: v for k, v in ravlt.items() if not k.startswith('stages.3.')}
    cases['missing_stage.pth'] = Case(
        _save_whole(join('missing_stage.pth'),
                    stageless), ravlt_model, ('stage 3 has no complete block list', ),
        ('CheckpointError', ('stage 3 has no complete block list', )),
        ('CheckpointMismatchError', ('are missing', 'stages.3.')))
    return cases
