"""Checkpoint conversion shared by ``tools/convert_checkpoint.py`` and the backbones' ``init_weights``.

Each model family lives in its own module and registers itself on import with
:func:`~.common.register_family` (a ``detect(state_dict)`` predicate and a
``convert(state_dict, whole_model)`` function). To add a family, write ``<family>.py`` alongside
:mod:`.rala` and import it below.
"""
from .common import (CONVERTER_VERSION, CheckpointError, ConversionResult, FamilyConverter,
                     checkpoint_arch, convert_state_dict, detect_family, load_checkpoint_file, load_pretrained,
                     register_family, registered_families, save_checkpoint, unwrap_state_dict)
from . import rala  # noqa: E402,F401  (registers the 'rala' family)
from . import soft  # noqa: E402,F401  (registers the 'soft' family)

__all__ = ['CONVERTER_VERSION', 'CheckpointError', 'ConversionResult', 'FamilyConverter',
           'checkpoint_arch',
           'convert_state_dict', 'detect_family', 'load_checkpoint_file', 'load_pretrained',
           'register_family', 'registered_families', 'save_checkpoint', 'unwrap_state_dict']
