"""Loading checkpoints safely under torch>=2.6 with mmengine 0.10.x, and saying why a file fails.

torch 2.6 made ``torch.load`` default to ``weights_only=True``. mmengine <= 0.10.7 still calls
``torch.load(filename, map_location=...)`` for local files, so a full training checkpoint (which
pickles ``HistoryBuffer`` objects and numpy arrays in its ``message_hub``) fails to load with
``UnpicklingError``. That breaks ``--resume``, ``load_from``, ``tools/test.py`` and the
``init_detector`` / ``init_model`` APIs.

Rather than switching the safety off globally (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), we replace
mmengine's loader for local paths with one that keeps ``weights_only=True`` and allow-lists exactly
the types that mmengine checkpoints and the official RALA / SOFT checkpoints contain. Anything else
is refused with a message naming the offending global, so an untrusted file can never run code.

When a file cannot be loaded, :func:`diagnose_checkpoint` looks at it without unpickling anything
(magic bytes, the zip directory, the pickle opcodes) and tells apart an empty file, a truncated or
corrupt one, a file that is not a checkpoint at all and one that references a Python global a
weights file never needs (``posix.system``): the cases torch reports with the same exception.
"""
import argparse
import io
import os.path as osp
import pickletools
import zipfile
from typing import Any, Iterable, List, Optional, Set

import torch
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = [
    'CheckpointError', 'UnsafeCheckpointError', 'UnreadableCheckpointError',
    'CheckpointMismatchError', 'safe_globals_for_checkpoints', 'safe_torch_load',
    'diagnose_checkpoint', 'pickle_globals', 'install_safe_checkpoint_loader',
    'is_safe_loader_installed', 'uninstall_safe_checkpoint_loader', 'loader_switch_on',
    'LOADER_ENV', 'register_load_check', 'run_load_checks', 'SETTINGS_KEY', 'encode_settings',
    'decode_settings'
]


class CheckpointError(ValueError):
    """A checkpoint that cannot or must not be used; the message is one line meant for users."""


class UnsafeCheckpointError(CheckpointError):
    """The file references a pickled global outside the allow-list (it could run code)."""


class UnreadableCheckpointError(CheckpointError):
    """The file is empty, truncated, corrupt or not a PyTorch checkpoint."""


class CheckpointMismatchError(CheckpointError):
    """The weights were trained with settings that contradict the model they are loaded into."""


def safe_globals_for_checkpoints() -> List[Any]:
    """The classes and functions a trusted checkpoint may reference.

    * ``argparse.Namespace``: the official RALA and SOFT training scripts pickle their CLI
    arguments.
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


def safe_torch_load(filename: str,
                    map_location: Any = 'cpu',
                    extra_globals: Optional[Iterable[Any]] = None,
                    mmap: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True`` and the checkpoint allow-list.

    The one loader of the project: mmengine's local-file scheme (``--resume``, ``load_from``,
    ``init_detector``), the converters and ``init_cfg=dict(type='Pretrained')`` all go through it,
    so every entry point refuses the same files with the same messages.

    Args:
        filename (str): path of the file to load.
        map_location: as for :func:`torch.load`. Defaults to ``'cpu'``.
        extra_globals (Iterable, optional): more types to allow for this call only.
        mmap (bool): map zip-format files instead of reading their tensors (a cheap validity check
            of a large file). Defaults to False.

    Returns:
        The unpickled object.

    Raises:
        FileNotFoundError: the path does not exist.
        UnreadableCheckpointError: a directory, or an empty, truncated, corrupt or
            non-checkpoint file.
        UnsafeCheckpointError: the file references a global outside the allow-list (named in
            the message).
    """
    filename = osp.expanduser(filename)
    if osp.isdir(filename):
        raise UnreadableCheckpointError(f'{filename} is a directory, not a checkpoint file')
    if not osp.exists(filename):
        raise FileNotFoundError(f'checkpoint {filename!r} does not exist')
    if osp.getsize(filename) == 0:
        raise UnreadableCheckpointError(f'{filename}: empty file (0 bytes), not a checkpoint')
    allowed = safe_globals_for_checkpoints() + list(extra_globals or ())
    mmap = mmap and _is_zip(filename)
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(filename, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # damaged files raise UnpicklingError, RuntimeError, EOFError, ...
        raise diagnose_checkpoint(filename, err) from None


def _is_zip(filename: str) -> bool:
    with open(filename, 'rb') as f:
        return f.read(4) == b'PK\x03\x04'


def _allowed_global_names() -> Set[str]:
    from torch._weights_only_unpickler import _get_allowed_globals
    names = set(_get_allowed_globals())
    for obj in safe_globals_for_checkpoints() + list(torch.serialization.get_safe_globals()):
        obj = obj[0] if isinstance(obj, tuple) else obj
        names.add(f'{getattr(obj, "__module__", "")}.{getattr(obj, "__qualname__", obj)}')
    names.add('builtins.getattr')
    return names


_STRING_OPS = {
    'SHORT_BINUNICODE', 'BINUNICODE', 'BINUNICODE8', 'UNICODE', 'SHORT_BINSTRING', 'BINSTRING',
    'STRING'
}


def pickle_globals(stream: io.BufferedIOBase, max_pickles: int = 8) -> List[str]:
    """The ``module.name`` globals the pickles in ``stream`` would import, without running them.

    Scans the opcodes only (:mod:`pickletools`); ``STACK_GLOBAL`` operands are recovered from the
    string pushes and memo before it. Several pickles in a row (torch's legacy format) are read up
    to ``max_pickles``.

    Raises:
        ValueError: the opcode stream ends early or is not a pickle.
    """
    found: List[str] = []
    for index in range(max_pickles):
        if not stream.peek(1):
            break
        strings: List[str] = []
        memo = {}
        last = None
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                name = opcode.name
                if name in _STRING_OPS:
                    last = arg if isinstance(arg, str) else arg.decode('latin-1')
                    strings.append(last)
                elif name in ('GLOBAL', 'INST'):
                    found.append(_python3_name(*arg.split(' ', 1)))
                    last = None
                elif name == 'STACK_GLOBAL':
                    if len(strings) >= 2:
                        found.append(_python3_name(strings[-2], strings[-1]))
                    last = None
                elif name == 'MEMOIZE':
                    memo[len(memo)] = last
                elif name in ('BINPUT', 'LONG_BINPUT', 'PUT'):
                    memo[int(arg)] = last
                elif name in ('BINGET', 'LONG_BINGET', 'GET'):
                    last = memo.get(int(arg))
                    if isinstance(last, str):
                        strings.append(last)
                else:
                    last = None
        except ValueError as err:
            # After the first pickle, torch's legacy format continues with raw tensor bytes, which
            # are not opcodes; only running out of data there means the file was cut short.
            if index == 0 or _is_truncation(err):
                raise
            break
    return found


def _python3_name(module: str, name: str) -> str:
    """``module.name`` as Python 3 resolves a global of a protocol-2 pickle (``__builtin__``)."""
    import _compat_pickle
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f'{module}.{name}'


def _is_truncation(err: BaseException) -> bool:
    text = str(err)
    return any(
        word in text
        for word in ('exhausted', 'remain', 'not enough data', 'EOF', 'no newline found'))


class _NotTorchArchive(Exception):
    """A zip archive that torch.save did not write."""


def _read_pickle_globals(filename: str) -> List[str]:
    """Globals of the object pickle of a zip-format or legacy checkpoint, or a plain pickle."""
    if _is_zip(filename):
        with zipfile.ZipFile(filename) as archive:
            names = [n for n in archive.namelist() if n.endswith('data.pkl')]
            if not names:
                raise _NotTorchArchive(
                    f'a zip archive without data.pkl (members: {archive.namelist()[:3]})')
            return pickle_globals(io.BufferedReader(io.BytesIO(archive.read(names[0]))))
    with open(filename, 'rb') as f:
        return pickle_globals(io.BufferedReader(f))


def _describe_start(head: bytes) -> str:
    text = head[:16]
    try:
        decoded = text.decode('utf-8')
        if decoded.isprintable() or decoded.strip().isprintable():
            return f'it starts with the text {decoded[:12]!r}'
    except UnicodeDecodeError:
        pass
    return f'it starts with the bytes {text[:8].hex(" ")}'


def diagnose_checkpoint(filename: str, error: Optional[BaseException] = None) -> CheckpointError:
    """Say why ``filename`` cannot be loaded as a checkpoint, without unpickling anything.

    Args:
        filename (str): the file ``torch.load`` refused.
        error (Exception, optional): what torch raised; quoted only when nothing better is known
            (never its advice to retry with ``weights_only=False``).

    Returns:
        CheckpointError: an :class:`UnsafeCheckpointError` naming the first global outside the
        allow-list, or an :class:`UnreadableCheckpointError` naming the problem.
    """
    size = osp.getsize(filename)
    with open(filename, 'rb') as f:
        head = f.read(64)
    expected = ('a PyTorch checkpoint (a zip archive written by torch.save, starting with "PK", or '
                "torch's legacy pickle format, starting with byte 0x80)")
    if size == 0:
        return UnreadableCheckpointError(f'{filename}: empty file (0 bytes), not a checkpoint')
    if head.startswith(b'PK\x03\x04'):
        try:
            referenced = _read_pickle_globals(filename)
        except _NotTorchArchive as err:
            return UnreadableCheckpointError(
                f'{filename}: not a PyTorch checkpoint: {err}; expected {expected}')
        except (zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError) as err:
            return UnreadableCheckpointError(
                f'{filename}: truncated or corrupt checkpoint ({size} bytes; its zip archive is '
                f'unreadable: {str(err)[:80]}); the download or copy was probably cut short: '
                'fetch or copy it again')
        kind = 'zip'
    elif head.startswith(b'\x80'):
        try:
            referenced = _read_pickle_globals(filename)
        except (ValueError, EOFError) as err:
            return UnreadableCheckpointError(
                f'{filename}: truncated or corrupt checkpoint (legacy pickle format, {size} bytes; '
                f'the pickle stream is broken: {str(err)[:80]}); fetch or copy it again')
        kind = 'pickle'
    else:
        return UnreadableCheckpointError(
            f'{filename}: not a PyTorch checkpoint: expected {expected}, but '
            f'{_describe_start(head)} ({size} bytes)')
    allowed = _allowed_global_names()
    unsafe = [name for name in referenced if name not in allowed]
    if unsafe:
        return UnsafeCheckpointError(
            f'{filename}: unsafe checkpoint: it references {unsafe[0]}, which a weights file never '
            'needs (unpickling it could run code); it was not loaded. Do not load it with '
            'weights_only=False unless you trust its source; if you do, re-save only its tensors '
            "as {'state_dict': ...}")
    if kind == 'pickle' and not referenced and _is_plain_pickle(head):
        return UnreadableCheckpointError(
            f'{filename}: not a PyTorch checkpoint: a plain Python pickle without tensors; '
            f'expected {expected}')
    if error is not None and _is_truncation(error):
        return UnreadableCheckpointError(
            f'{filename}: truncated checkpoint ({size} bytes, {kind} format: the data ends before '
            'its last tensor); fetch or copy it again')
    reason = _first_line(error) if error is not None else 'unknown error'
    return UnreadableCheckpointError(
        f'{filename}: corrupt checkpoint ({size} bytes, {kind} format; torch said: {reason})')


def _is_plain_pickle(head: bytes) -> bool:
    # torch's legacy format starts with its magic number pickled as a long (protocol 2: 0x80 0x02
    # 0x8a)
    return not head.startswith(b'\x80\x02\x8a')


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [
        line for line in lines
        if not any(w in line.lower() for w in ('weights_only', 'weights only', 'global'))
    ]
    return (lines[0] if lines else type(error).__name__)[:160]


#: Functions ``(checkpoint, filename) -> None`` run on every file mmengine loads through
#: :func:`install_safe_checkpoint_loader`; they raise :class:`CheckpointError` for a file that must
#: not be loaded as it is (e.g. an official layout that needs converting first).
_LOAD_CHECKS: List[Any] = []


def register_load_check(check) -> None:
    """Add a check run on every checkpoint mmengine loads from a local file (idempotent)."""
    if check not in _LOAD_CHECKS:
        _LOAD_CHECKS.append(check)


def run_load_checks(checkpoint: Any, filename: str) -> None:
    """Run every check registered with :func:`register_load_check` on a loaded file."""
    for check in _LOAD_CHECKS:
        check(checkpoint, filename)


def _load_from_local(filename: str, map_location: Any = None) -> Any:
    checkpoint = safe_torch_load(filename, map_location=map_location)
    run_load_checks(checkpoint, filename)
    return checkpoint


#: Environment variable that, set to ``0`` before ``import mmlinattn``, keeps mmengine's own loader.
LOADER_ENV = 'MMLINATTN_SAFE_LOADER'


def install_safe_checkpoint_loader() -> None:
    """Make mmengine load local checkpoints through :func:`safe_torch_load`.

    The one side effect of ``import mmlinattn`` (switch it off with the environment variable
    ``MMLINATTN_SAFE_LOADER=0``, or undo it with :func:`uninstall_safe_checkpoint_loader`). Needed
    because mmengine 0.10.7 calls ``torch.load`` without an allow-list, which torch >= 2.6 refuses
    for full training checkpoints (``--resume``, ``load_from``, ``tools/test.py``,
    ``init_detector`` / ``init_model``). It keeps ``weights_only=True``; a file mmengine's own
    loader reads is read identically (tested), with one deliberate exception: a file in an
    official, unconverted RALA / SOFT layout, which would match no key and leave the model
    untrained, is refused with the conversion command. Idempotent.
    """
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local, force=True)


def uninstall_safe_checkpoint_loader() -> None:
    """Give mmengine back its own local-file loader."""
    from mmengine.runner.checkpoint import load_from_local
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)


def loader_switch_on() -> bool:
    """Whether ``import mmlinattn`` should install the loader (``MMLINATTN_SAFE_LOADER`` != 0)."""
    import os
    return os.environ.get(LOADER_ENV, '1').strip().lower() not in ('0', 'false', 'no', 'off')


def is_safe_loader_installed() -> bool:
    """Whether mmengine's local-file scheme is :func:`safe_torch_load`."""
    return CheckpointLoader._schemes.get('') is _load_from_local


#: State-dict key (relative to the backbone) of the settings record, torch's extra-state key.
SETTINGS_KEY = '_extra_state'
_SETTINGS_FORMAT = 'mmlinattn-settings'


def encode_settings(settings: dict) -> torch.Tensor:
    """A backbone's settings record as a 1-D ``uint8`` tensor (UTF-8 JSON).

    A tensor, not a dict, because every tool that handles state dicts (mmengine's checkpoint
    saver and EMA, timm's EMA, ``weights_only`` loading) expects tensor values.
    """
    import json
    text = json.dumps({'format': _SETTINGS_FORMAT, **settings}, sort_keys=True)
    return torch.tensor(list(text.encode('utf-8')), dtype=torch.uint8, device='cpu')


def decode_settings(value: Any) -> dict:
    """Inverse of :func:`encode_settings`.

    Raises:
        CheckpointError: ``value`` is not a settings record.
    """
    import json
    try:
        record = json.loads(bytes(value.to(torch.uint8).tolist()).decode('utf-8'))
    except (AttributeError, TypeError, ValueError) as err:
        raise CheckpointError(
            f'the checkpoint\'s {SETTINGS_KEY} entry is not an mmlinattn settings '
            f'record ({type(err).__name__})') from None
    if not isinstance(record, dict) or record.pop('format', None) != _SETTINGS_FORMAT:
        raise CheckpointError(f"the checkpoint's {SETTINGS_KEY} entry is not an mmlinattn settings "
                              'record')
    return record
