"""Backbones, one module per family; every module here is imported (and so registers its classes
in the MMEngine root ``MODELS`` registry) when the package is."""
from ...utils.discovery import import_submodules
from .base import PyramidBackbone
from .ravlt import RAVLT
from .soft import SOFT

import_submodules(__name__)  # families added as new files register themselves too

__all__ = ['PyramidBackbone', 'RAVLT', 'SOFT']
