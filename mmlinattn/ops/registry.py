"""Named implementations ("backends") of each attention op.

An op *kind* says what is computed (``'rala'``, ``'rope_softmax'``, ``'softmax_free'``, ...); a
*backend* says how: ``'reference'`` is the plain, obviously-correct twin that spells the maths out,
``'torch'`` the fast PyTorch version, and a fused kernel (e.g. ``'triton'``) registers itself under
its own name. Every backend of a kind has the same signature and returns the same values up to
rounding; ``tests/ops/test_backends.py`` runs every registered backend against ``'reference'``,
forward and backward, so a new kernel is tested as soon as it is registered.

Layers choose an implementation with a ``backend=`` argument that is separate from what the
attention computes (``attn_types``, ``normalization``, ``pinv_mode``)::

    from mmlinattn.ops import get_op, register_op

    @register_op('rala', 'triton')
    def rala_triton(q, k, v, sin, cos, eps=1e-6):
        ...

    RAVLT(arch='s', backend='triton')
"""
from typing import Callable, Dict, List, Optional

__all__ = [
    'register_op', 'get_op', 'op_kinds', 'op_backends', 'DEFAULT_BACKEND', 'REFERENCE_BACKEND'
]

DEFAULT_BACKEND = 'torch'
REFERENCE_BACKEND = 'reference'

_OPS: Dict[str, Dict[str, Callable]] = {}


def register_op(kind: str, backend: str, fn: Optional[Callable] = None, force: bool = False):
    """Register ``fn`` as the ``backend`` implementation of op ``kind``.

    Usable directly (``register_op('rala', 'torch', fn)``) or as a decorator.

    Args:
        kind (str): what the op computes.
        backend (str): the implementation's name.
        fn (callable, optional): the implementation.
        force (bool): replace an existing registration. Defaults to False.

    Raises:
        KeyError: ``(kind, backend)`` is taken and ``force`` is False.
    """

    def add(function: Callable) -> Callable:
        backends = _OPS.setdefault(kind, {})
        if backend in backends and backends[backend] is not function and not force:
            raise KeyError(f'op {kind!r} already has a {backend!r} backend '
                           f'({backends[backend].__qualname__}); pass force=True to replace it')
        backends[backend] = function
        return function

    return add if fn is None else add(fn)


def get_op(kind: str, backend: str = DEFAULT_BACKEND) -> Callable:
    """The ``backend`` implementation of op ``kind``.

    Raises:
        ValueError: unknown kind or backend, naming the registered ones.
    """
    if kind not in _OPS:
        raise ValueError(f'op {kind!r} unknown; registered ops: {op_kinds()}')
    if backend not in _OPS[kind]:
        raise ValueError(f'op {kind!r} has no backend {backend!r}; choose one of '
                         f'{op_backends(kind)}')
    return _OPS[kind][backend]


def op_kinds() -> List[str]:
    """Registered op kinds, sorted."""
    return sorted(_OPS)


def op_backends(kind: str) -> List[str]:
    """Registered backends of op ``kind``, sorted."""
    return sorted(_OPS.get(kind, {}))
