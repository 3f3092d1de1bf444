from .backbones import *  # noqa: F401,F403
from .classifiers import RAVLTClassifier, SOFTClassifier  # noqa: F401  (registers the timm models)
from .layers import LayerNorm2d  # noqa: F401
