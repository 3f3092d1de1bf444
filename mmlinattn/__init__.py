"""mmlinattn: linear-attention vision backbones (RAVLT, SOFT/SOFT++) for OpenMMLab 2.0.

Importing this package registers every backbone in the MMEngine root ``MODELS`` registry, so that
mmdet's and mmseg's child registries find them by bare type name. Its one side effect beyond
registration: mmengine's local checkpoint loader is replaced by one that keeps torch's
``weights_only=True`` loading working for mmengine checkpoints
(:func:`mmlinattn.utils.checkpoint.install_safe_checkpoint_loader`); set the environment variable
``MMLINATTN_SAFE_LOADER=0`` before the import to keep mmengine's own loader.
"""
from . import models  # noqa: F401  (registers the backbones)
from .utils.checkpoint import install_safe_checkpoint_loader, loader_switch_on
from .version import __version__

if loader_switch_on():
    install_safe_checkpoint_loader()

__all__ = ['__version__']
