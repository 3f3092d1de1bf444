"""Checkpoint conversion shared by ``tools/convert_checkpoint.py`` and the backbones'
``init_weights``.

Each model family lives in its own module, a key map plus a :class:`~.common.FamilyConverter`
registered on import; the variants come from :mod:`mmlinattn.archs`, never from a model module.
Every module of this package is imported with it, so a new family is a new ``<family>.py``.
"""
from ..utils.discovery import import_submodules
from .common import (BACKBONE_PREFIX, CONVERTER_VERSION, CheckpointError, CheckpointMismatchError,
                     ConversionResult, FamilyConverter, advice_notes, backbone_advice,
                     backbone_config, checkpoint_arch, convert_state_dict, detect_family,
                     family_converter, load_checkpoint_file, load_pretrained, reference_shapes,
                     register_family, registered_families, save_checkpoint, unwrap_state_dict)

import_submodules(__name__)  # registers every family ('rala', 'soft', ...)

__all__ = [
    'BACKBONE_PREFIX', 'CONVERTER_VERSION', 'CheckpointError', 'CheckpointMismatchError',
    'ConversionResult', 'FamilyConverter', 'advice_notes', 'backbone_advice', 'backbone_config',
    'checkpoint_arch', 'convert_state_dict', 'detect_family', 'family_converter',
    'load_checkpoint_file', 'load_pretrained', 'reference_shapes', 'register_family',
    'registered_families', 'save_checkpoint', 'unwrap_state_dict'
]
