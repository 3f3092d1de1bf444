"""Family-independent checkpoint plumbing: safe loading, unwrapping, atomic saving, dispatch.

A model family (RALA, SOFT, ...) plugs in with :func:`register_family`, giving a ``detect``
predicate and a ``convert`` function that returns a :class:`ConversionResult`. Everything else here
(``tools/convert_checkpoint.py``, ``init_weights`` through :func:`load_pretrained`) is shared.
"""
import os
import os.path as osp
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch

from ..utils.checkpoint import UnreadableCheckpointError, UnsafeCheckpointError, safe_torch_load

__all__ = ['CONVERTER_VERSION', 'CheckpointError', 'ConversionResult', 'FamilyConverter',
           'register_family', 'registered_families', 'detect_family', 'convert_state_dict',
           'load_checkpoint_file', 'checkpoint_arch', 'unwrap_state_dict', 'save_checkpoint', 'load_pretrained']

CONVERTER_VERSION = '1.0'

# Keys under which training scripts store weights, in the order they are tried.
# Where official and mmengine files keep their weights, in order of preference. timm's saver (SOFT)
# writes the EMA weights, the ones the official results are reported with, to 'state_dict_ema'.
WEIGHT_KEYS = ('model', 'state_dict_ema', 'state_dict', 'model_ema')

# Official layouts recognised for error messages even before a family's converter is registered,
# so that e.g. a SOFT file handed to the RALA converter is named as such.
FAMILY_KEY_HINTS = {
    'soft': re.compile(r'^(patch_embed\d+\.|block\d+\.\d+\.|pos_embed\d+$)'),
}


class CheckpointError(ValueError):
    """A checkpoint that cannot or must not be converted; the message is meant for users."""


@dataclass
class ConversionResult:
    """What a family converter produced.

    Attributes:
        state_dict (dict): converted tensors (our key names).
        family (str): e.g. ``'rala'``.
        variant (str): ``'t'``, ``'s'``, ... or ``'custom'``.
        arch (dict): the inferred ``arch`` argument of the backbone.
        source_format (str): ``'official-imagenet'``, ``'official-downstream'`` or
            ``'mmlinattn'``.
        dropped (list[str]): source keys deliberately left out (classifier head, fixed buffers).
        matched, missing, unexpected, mismatched (list[str]): filled by :meth:`compare`.
    """
    state_dict: Dict[str, torch.Tensor]
    family: str
    variant: str
    arch: Dict[str, Any]
    source_format: str
    dropped: List[str] = field(default_factory=list)
    matched: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)

    def compare(self, expected: Mapping[str, torch.Size], prefix: str = '') -> 'ConversionResult':
        """Fill the key statistics against ``{key: shape}`` of the model to load into.

        Args:
            expected: shapes of the target (backbone) state dict.
            prefix: only keys of ``state_dict`` under this prefix take part (stripped).
        """
        ours = {k[len(prefix):]: v.shape for k, v in self.state_dict.items()
                if k.startswith(prefix)}
        self.matched = sorted(k for k in ours if k in expected and ours[k] == expected[k])
        self.mismatched = sorted(k for k in ours if k in expected and ours[k] != expected[k])
        self.missing = sorted(k for k in expected if k not in ours)
        self.unexpected = sorted(k for k in ours if k not in expected)
        return self

    def summary(self) -> str:
        line = (f'{len(self.matched)} matched, {len(self.missing)} missing, '
                f'{len(self.unexpected)} unexpected')
        if self.mismatched:
            line += f', {len(self.mismatched)} with wrong shape'
        return line


@dataclass
class FamilyConverter:
    """A registered family: ``detect(state_dict) -> bool`` and
    ``convert(state_dict, whole_model=False) -> ConversionResult``."""
    name: str
    detect: Callable[[Mapping[str, Any]], bool]
    convert: Callable[..., ConversionResult]


_FAMILIES: Dict[str, FamilyConverter] = {}


def register_family(name: str, detect: Callable, convert: Callable) -> None:
    """Register (or replace) the converter of a model family."""
    _FAMILIES[name] = FamilyConverter(name, detect, convert)


def registered_families() -> List[str]:
    return sorted(_FAMILIES)


def _strip_prefix(keys, prefix: str):
    return [k[len(prefix):] if k.startswith(prefix) else k for k in keys]


def detect_family(state_dict: Mapping[str, Any]) -> str:
    """Name of the family whose (official or converted) layout ``state_dict`` has.

    Keys may carry a ``backbone.`` prefix (whole detectors / segmentors). A family that is only
    known by its key hints (no converter registered yet) is still returned.

    Raises:
        CheckpointError: no family, or several, recognise the keys.
    """
    found = [name for name, fam in sorted(_FAMILIES.items()) if fam.detect(state_dict)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise CheckpointError(f'the keys match several families {found}; pass --family')
    keys = _strip_prefix(state_dict, 'backbone.')
    for name, pattern in FAMILY_KEY_HINTS.items():
        if any(pattern.match(k) for k in keys):
            return name
    sample = ', '.join(list(state_dict)[:3])
    raise CheckpointError(f'no known model family recognises these weights (first keys: {sample}); '
                          f'supported families: {registered_families()}')


def _example_key(state_dict: Mapping[str, Any], family: str) -> str:
    pattern = FAMILY_KEY_HINTS.get(family)
    keys = _strip_prefix(state_dict, 'backbone.')
    for key in keys:
        if pattern is None or pattern.match(key):
            return key
    return next(iter(keys), '')


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], family: str = 'auto',
                       whole_model: bool = False,
                       source_arch: Optional[str] = None) -> ConversionResult:
    """Convert a state dict of any supported layout to mmlinattn keys.

    Args:
        state_dict: weights, e.g. from :func:`unwrap_state_dict`.
        family (str): ``'auto'`` or a family name; a mismatch with the detected family is refused.
        whole_model (bool): keep the non-backbone keys of a detector / segmentor checkpoint
            (backbone keys re-mapped under ``backbone.``); otherwise return the backbone only.
        source_arch (str, optional): the file's ``'arch'`` entry (:func:`checkpoint_arch`).

    Raises:
        CheckpointError: unknown family, family mismatch, or a refusal of the family converter.
    """
    detected = detect_family(state_dict)
    if family == 'auto':
        family = detected
    elif family != detected:
        raise CheckpointError(
            f'this is a {detected.upper()} checkpoint (keys like '
            f'{_example_key(state_dict, detected)!r}), not {family.upper()}; use --family '
            f'{detected} (or auto)')
    if family not in _FAMILIES:
        raise CheckpointError(f'no converter is installed for family {family!r}; available: '
                              f'{registered_families()}')
    return _FAMILIES[family].convert(state_dict, whole_model=whole_model,
                                     source_arch=source_arch)


def load_checkpoint_file(path: str) -> Any:
    """Load a local checkpoint through :func:`mmlinattn.utils.checkpoint.safe_torch_load`
    (``weights_only=True`` with the project's one allow-list: ``argparse.Namespace``, which the
    official training scripts pickle, and what full mmengine checkpoints hold).

    Raises:
        CheckpointError: missing, empty, truncated or non-checkpoint file, or one that references
            a Python object outside the allow-list (it could run code when unpickled).
    """
    try:
        return safe_torch_load(path)
    except FileNotFoundError:
        raise CheckpointError(f'{path}: no such file') from None
    except (UnsafeCheckpointError, UnreadableCheckpointError) as err:
        raise CheckpointError(str(err)) from None


def checkpoint_arch(checkpoint: Any) -> Optional[str]:
    """The ``'arch'`` entry of a loaded checkpoint (timm savers write it), or None.

    For SOFT it is the only thing that tells a SOFT-Norm (SOFT++) file from a plain SOFT one.
    """
    arch = checkpoint.get('arch') if isinstance(checkpoint, Mapping) else None
    return arch if isinstance(arch, str) else None


def unwrap_state_dict(checkpoint: Any) -> Dict[str, torch.Tensor]:
    """The weights of a loaded checkpoint: under the first of :data:`WEIGHT_KEYS` present, else
    the dict itself; a ``module.`` prefix is stripped.

    Raises:
        CheckpointError: no tensors found.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f'expected a dict of tensors, got {type(checkpoint).__name__}')
    state_dict = checkpoint
    for key in WEIGHT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            state_dict = checkpoint[key]
            break
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f'no tensors found (top-level keys: {sorted(checkpoint)[:8]})')
    if all(k.startswith('module.') for k in tensors):
        tensors = {k[len('module.'):]: v for k, v in tensors.items()}
    return tensors


def save_checkpoint(path: str, state_dict: Mapping[str, torch.Tensor], meta: Dict[str, Any],
                    force: bool = False) -> None:
    """Write ``{'state_dict': ..., 'meta': ...}`` atomically (temporary file in the destination
    directory, then :func:`os.replace`), so readers never see a partial file.

    Raises:
        CheckpointError: ``path`` exists and ``force`` is False.
    """
    path = osp.abspath(osp.expanduser(path))
    if osp.exists(path) and not force:
        raise CheckpointError(f'{path} exists; pass --force to overwrite it')
    directory = osp.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=f'.{osp.basename(path)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save({'state_dict': dict(state_dict), 'meta': meta}, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp_path, path)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


def _resolve_local(checkpoint: str) -> str:
    """Download ``http(s)://`` checkpoints into the torch hub cache; return a local path."""
    if not re.match(r'^https?://', checkpoint):
        return checkpoint
    cache_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(cache_dir, exist_ok=True)
    local = osp.join(cache_dir, osp.basename(checkpoint.split('?')[0]))
    if not osp.exists(local):
        torch.hub.download_url_to_file(checkpoint, local)
    return local


def load_pretrained(module: torch.nn.Module, checkpoint: str, family: str = 'auto',
                    prefix: Optional[str] = None) -> ConversionResult:
    """Load a (possibly official) checkpoint into a backbone, converting keys on the fly.

    Args:
        module: the backbone.
        checkpoint (str): local path or URL.
        family (str): expected family, or ``'auto'``.
        prefix (str, optional): keep only keys under this prefix (stripped) before converting.
            Detector / segmentor files need none: their ``backbone.`` part is found automatically.

    Returns:
        ConversionResult: with the key statistics against ``module``.

    Raises:
        CheckpointError: unreadable file, wrong family, no matching key, or shapes that do not fit
            (i.e. the checkpoint is another variant than the model).
    """
    from mmengine.logging import print_log

    loaded = load_checkpoint_file(_resolve_local(checkpoint))
    state_dict = unwrap_state_dict(loaded)
    if prefix:
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not state_dict:
            raise CheckpointError(f'{checkpoint}: no keys start with prefix {prefix!r}')
    result = convert_state_dict(state_dict, family=family, source_arch=checkpoint_arch(loaded))
    result.compare({k: v.shape for k, v in module.state_dict().items()})
    name = type(module).__name__
    if result.mismatched:
        key = result.mismatched[0]
        raise CheckpointError(
            f'{checkpoint} does not fit this {name}: {len(result.mismatched)} tensors differ in '
            f'shape, e.g. {key} {tuple(result.state_dict[key].shape)} vs '
            f'{tuple(module.state_dict()[key].shape)}; the file holds variant '
            f'{result.variant!r} with arch {result.arch}')
    if not result.matched:
        raise CheckpointError(f'{checkpoint}: no key matches this {name}')
    module.load_state_dict({k: result.state_dict[k] for k in result.matched}, strict=False)
    print_log(f'{name}: loaded {checkpoint} ({result.family}, {result.source_format}, variant '
              f'{result.variant!r}): {result.summary()}'
              + (f'; missing: {_abbreviate(result.missing)}' if result.missing else '')
              + (f'; unexpected: {_abbreviate(result.unexpected)}' if result.unexpected else ''),
              logger='current')
    return result


def _abbreviate(keys: List[str], limit: int = 6) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys)} in all)' if len(keys) > limit else '')
