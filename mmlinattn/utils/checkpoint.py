"""Loading checkpoints safely under torch>=2.6 with mmengine 0.10.x.

torch 2.6 made ``torch.load`` default to ``weights_only=True``. mmengine <= 0.10.7 still calls
``torch.load(filename, map_location=...)`` for local files, so a full training checkpoint (which pickles
``HistoryBuffer`` objects and numpy arrays in its ``message_hub``) fails to load with ``UnpicklingError``.
That breaks ``--resume``, ``load_from``, ``tools/test.py`` and the ``init_detector`` / ``init_model`` APIs.

Rather than switching the safety off globally (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), we replace
mmengine's loader for local paths with one that keeps ``weights_only=True`` and allow-lists exactly the
types that mmengine checkpoints and the official RALA / SOFT checkpoints contain. Anything else is
refused with a message naming the offending type, so an untrusted file can never run code.
"""
import argparse
import os.path as osp
import pickle
import re
from typing import Any, Iterable, List, Optional

import torch
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['safe_globals_for_checkpoints', 'safe_torch_load', 'install_safe_checkpoint_loader',
           'UnsafeCheckpointError', 'UnreadableCheckpointError']


class UnsafeCheckpointError(RuntimeError):
    """Raised when a checkpoint holds a pickled object outside the allow-list."""


class UnreadableCheckpointError(RuntimeError):
    """Raised when a file is empty, truncated, corrupt or not a PyTorch checkpoint."""


def safe_globals_for_checkpoints() -> List[Any]:
    """The classes and functions a trusted checkpoint may reference.

    * ``argparse.Namespace``: the official RALA and SOFT training scripts pickle their CLI arguments.
    * ``HistoryBuffer`` and the numpy reconstruction helpers: mmengine's ``message_hub`` state.
    * ``getattr``: numpy 2 pickles dtypes as ``getattr(numpy.dtypes, 'Float64DType')``. The
      weights-only unpickler only *calls* allow-listed callables, so an attribute fetched this way
      cannot be invoked unless it is itself on this list.

    Returns:
        list: objects to pass to :func:`torch.serialization.safe_globals`.
    """
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    allowed = [argparse.Namespace, HistoryBuffer, np.ndarray, np.dtype, getattr]
    # numpy >= 2 moved the pickling helpers to numpy._core; older versions keep numpy.core.
    core = getattr(np, '_core', None) or np.core
    allowed += [core.multiarray._reconstruct, core.multiarray.scalar]
    # Concrete dtype classes (numpy >= 1.25) appear when dtypes are pickled by class.
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith('DType')]
    return allowed


def safe_torch_load(filename: str, map_location: Any = 'cpu',
                    extra_globals: Optional[Iterable[Any]] = None) -> Any:
    """``torch.load`` with ``weights_only=True`` and the checkpoint allow-list.

    The one loader of the project: mmengine's local-file scheme (``--resume``, ``load_from``,
    ``init_detector``), the converters and ``init_cfg=dict(type='Pretrained')`` all go through it,
    so every entry point refuses the same files with the same messages.

    Args:
        filename (str): path of the file to load.
        map_location: as for :func:`torch.load`. Defaults to ``'cpu'``.
        extra_globals (Iterable, optional): more types to allow for this call only.

    Returns:
        The unpickled object.

    Raises:
        FileNotFoundError: the path does not exist or is not a file.
        UnsafeCheckpointError: the file references a type outside the allow-list (named in the
            message).
        UnreadableCheckpointError: the file is empty, truncated, corrupt or not a checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename!r} does not exist (or is not a file)')
    size = osp.getsize(filename)
    if size == 0:
        raise UnreadableCheckpointError(f'{filename}: empty file (0 bytes), not a checkpoint')
    allowed = safe_globals_for_checkpoints() + list(extra_globals or ())
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except Exception as err:  # damaged files raise UnpicklingError, RuntimeError, EOFError, ...
        unsafe = isinstance(err, pickle.UnpicklingError) and re.search(
            r'Unsupported global: GLOBAL ([\w.]+)', str(err))
        if unsafe:
            raise UnsafeCheckpointError(
                f'{filename}: refusing to unpickle {unsafe.group(1)} (not on mmlinattn\'s '
                'allow-list; loading it could run arbitrary code). If you trust the file, load it '
                'once with torch.load(..., weights_only=False) and re-save only its tensors as '
                "{'state_dict': ...}") from None
        # torch's own words are kept in the message, so e.g. a bad map_location stays visible.
        raise UnreadableCheckpointError(
            f'{filename}: {_describe_unreadable(filename, size, err)}') from None


def _describe_unreadable(filename: str, size: int, err: Exception) -> str:
    with open(filename, 'rb') as f:
        magic = f.read(4)
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if magic.startswith(b'PK\x03\x04'):
        kind = f'truncated or corrupt checkpoint (zip archive unreadable, {size} bytes)'
    elif magic.startswith(b'\x80'):
        kind = f'truncated or corrupt checkpoint (legacy pickle format, {size} bytes)'
    else:
        kind = 'not a PyTorch checkpoint'
    return f'{kind}; torch said: {reason[:200]}'


def _load_from_local(filename: str, map_location: Any = None) -> Any:
    return safe_torch_load(filename, map_location=map_location)


def install_safe_checkpoint_loader() -> None:
    """Make mmengine load local checkpoints through :func:`safe_torch_load`.

    Idempotent. Called when :mod:`mmlinattn` is imported, so every entry point that imports the
    package (our tools, configs through ``custom_imports``, ``init_detector``/``init_model``) gets it.
    """
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local, force=True)
