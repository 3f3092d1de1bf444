"""Checkpoint conversion shared by ``tools/convert_checkpoint.py`` and the backbones' ``init_weights``.

Each model family lives in its own module, a key map plus a :class:`~.common.FamilyConverter`
registered on import; the variants come from :mod:`mmlinattn.archs`, never from a model module.
To add a family, write ``<family>.py`` alongside :mod:`.rala` and import it below.
"""
from .common import (BACKBONE_PREFIX, CONVERTER_VERSION, CheckpointError, CheckpointMismatchError,
                     ConversionResult, FamilyConverter, backbone_config, checkpoint_arch,
                     convert_state_dict, detect_family, family_converter, load_checkpoint_file,
                     load_pretrained, reference_shapes, register_family, registered_families,
                     save_checkpoint, unwrap_state_dict)
from . import rala  # noqa: E402,F401  (registers the 'rala' family)
from . import soft  # noqa: E402,F401  (registers the 'soft' family)

__all__ = ['BACKBONE_PREFIX', 'CONVERTER_VERSION', 'CheckpointError', 'CheckpointMismatchError',
           'ConversionResult', 'FamilyConverter', 'backbone_config', 'checkpoint_arch',
           'convert_state_dict', 'detect_family', 'family_converter', 'load_checkpoint_file',
           'load_pretrained', 'reference_shapes', 'register_family', 'registered_families',
           'save_checkpoint', 'unwrap_state_dict']
