"""mmlinattn: linear-attention vision backbones (RAVLT, SOFT/SOFT++) for OpenMMLab 2.0.

Importing this package registers every backbone in the MMEngine root ``MODELS`` registry, so that
mmdet's and mmseg's child registries find them by bare type name. Its one side effect beyond
registration: mmengine's checkpoint loading is made safe and checked. Its local checkpoint loader
is replaced by one that keeps torch's ``weights_only=True`` loading working for mmengine
checkpoints (:func:`mmlinattn.utils.checkpoint.install_safe_checkpoint_loader`), and its key-name
loading into a model that holds an mmlinattn backbone refuses files without backbone weights and
loads backbone-only files into the backbone (:func:`mmlinattn.loading.install_checked_loading`).
Set the environment variable ``MMLINATTN_SAFE_LOADER=0`` before the import to keep both of
mmengine's own.
"""
from . import engine  # noqa: F401  (registers the runner hooks)
from . import models  # noqa: F401  (registers the backbones)
from .loading import install_checked_loading
from .utils.checkpoint import install_safe_checkpoint_loader, loader_switch_on
from .version import __version__

if loader_switch_on():
    install_safe_checkpoint_loader()
    install_checked_loading()

__all__ = ['__version__']
