from .backbones import *  # noqa: F401,F403
from .layers import LayerNorm2d  # noqa: F401
