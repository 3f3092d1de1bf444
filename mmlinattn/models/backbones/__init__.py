# Each backbone module registers its class in the MMEngine root MODELS registry on import.
__all__ = []
from .ravlt import RAVLT  # noqa: E402

__all__ += ['RAVLT']
from .soft import SOFT  # noqa: E402

__all__ += ['SOFT']
