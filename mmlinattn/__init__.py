"""mmlinattn: linear-attention vision backbones (RAVLT, SOFT/SOFT++) for OpenMMLab 2.0.

Importing this package registers every backbone in the MMEngine root ``MODELS`` registry, so that
mmdet's and mmseg's child registries find them by bare type name, and installs the checkpoint
loader that makes mmengine checkpoints load under torch>=2.6 (see :mod:`mmlinattn.utils.checkpoint`).
"""
from .version import __version__
from .utils.checkpoint import install_safe_checkpoint_loader
from . import models  # noqa: F401  (registers the backbones)

install_safe_checkpoint_loader()

__all__ = ['__version__']
