"""Import every module of a package, so that a new family registers itself by existing."""
import importlib
import pkgutil
from types import ModuleType
from typing import List

__all__ = ['import_submodules']


def import_submodules(package: str) -> List[ModuleType]:
    """Import all direct submodules of ``package`` (sorted by name, private ones skipped).

    The backbone and converter packages call this in their ``__init__``: adding
    ``models/backbones/<family>.py`` or ``converters/<family>.py`` is enough for its classes to be
    registered on ``import mmlinattn``.

    Args:
        package (str): dotted name of an imported package.

    Returns:
        list[module]: the imported submodules.
    """
    root = importlib.import_module(package)
    return [
        importlib.import_module(f'{package}.{info.name}')
        for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name)
        if not info.name.startswith('_')
    ]
