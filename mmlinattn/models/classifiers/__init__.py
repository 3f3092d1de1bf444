"""The ImageNet classifiers as timm models (``timm.create_model('ravlt_s')``, ``'soft_norm_tiny'``,
...): the backbones of :mod:`mmlinattn.models.backbones` with the official heads."""
from .common import checkpoint_filter_fn
from .ravlt import RAVLTClassifier
from .soft import SOFTClassifier

__all__ = ['RAVLTClassifier', 'SOFTClassifier', 'checkpoint_filter_fn']
