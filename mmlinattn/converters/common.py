"""Family-independent checkpoint plumbing: unwrapping, layouts, variant inference, atomic saving.

A model family plugs in with :func:`register_family` and a :class:`FamilyConverter`: its arch
table (:mod:`mmlinattn.archs`), the key patterns that recognise its official and mmlinattn layouts,
the official -> mmlinattn key map and an arch-inference function. Everything else lives here once:
splitting detector / segmentor files into backbone and other modules, refusing mixed layouts,
checking every tensor's shape against a backbone of the inferred arch (built by registry name on
the meta device, so no converter imports a model), the *settings record* that tells e.g. SOFT from
SOFT++ weights (see :mod:`mmlinattn.models.backbones.base`), and loading into a backbone
(:func:`load_pretrained`, used by ``init_cfg=dict(type='Pretrained')``).
"""
import errno
import os
import os.path as osp
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Pattern, Tuple

import torch

from ..archs import ArchTable
from ..utils.checkpoint import (SETTINGS_KEY, CheckpointError, CheckpointMismatchError,
                                decode_settings, encode_settings, register_load_check,
                                safe_torch_load)

__all__ = [
    'CONVERTER_VERSION', 'BACKBONE_PREFIX', 'CheckpointError', 'CheckpointMismatchError',
    'ConversionResult', 'FamilyConverter', 'register_family', 'registered_families',
    'family_converter', 'detect_family', 'convert_state_dict', 'load_checkpoint_file',
    'checkpoint_arch', 'unwrap_state_dict', 'save_checkpoint', 'load_pretrained',
    'reference_shapes', 'backbone_config', 'backbone_advice', 'advice_notes'
]

CONVERTER_VERSION = '1.1'
BACKBONE_PREFIX = 'backbone.'

# Where official and mmengine files keep their weights, in order of preference. timm's saver (SOFT)
# writes the EMA weights, the ones the official results are reported with, to 'state_dict_ema'.
WEIGHT_KEYS = ('model', 'state_dict_ema', 'state_dict', 'model_ema')


@dataclass
class ConversionResult:
    """What a conversion produced.

    Attributes:
        state_dict (dict): converted tensors (our key names, with the settings record under
            ``_extra_state``).
        family (str): e.g. ``'rala'``.
        variant (str): canonical variant name (``'t'``, ``'small'``, ...) or ``'custom'``.
        arch (dict): the inferred ``arch`` argument of the backbone, complete: entries the file
            does not show (None in ``settings``) hold the arch table's default
            (:meth:`~mmlinattn.archs.ArchTable.complete`), named in ``assumed``.
        source_format (str): ``'official-imagenet'``, ``'official-downstream'`` or
            ``'mmlinattn'``.
        settings (dict): the settings record: what the weights were trained with (``None`` where
            the file does not say).
        build_kwargs (dict): other constructor arguments the weights need (e.g. SOFT's
            ``pretrain_img_size``).
        dropped (list[str]): source keys deliberately left out (fixed buffers, the neck and heads
            of a detector when only the backbone is kept).
        classifier (list[str]): keys of an ImageNet classifier's head kept beside the backbone
            (under their names in the classifier, e.g. ``head.weight``): the timm models
            (:mod:`mmlinattn.models.classifiers`) load them, a backbone only those it has (SOFT's
            final ``norm`` with ``final_norm=True``).
        assumed (str): what ``arch`` assumes because the file does not show it, as a sentence
            to print beside it (empty if nothing).
        matched, missing, unexpected, mismatched (list[str]): filled by :meth:`compare`.
    """
    state_dict: Dict[str, torch.Tensor]
    family: str
    variant: str
    arch: Dict[str, Any]
    source_format: str
    settings: Dict[str, Any] = field(default_factory=dict)
    build_kwargs: Dict[str, Any] = field(default_factory=dict)
    dropped: List[str] = field(default_factory=list)
    classifier: List[str] = field(default_factory=list)
    assumed: str = ''
    matched: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)

    def compare(self, expected: Mapping[str, torch.Size], prefix: str = '') -> 'ConversionResult':
        """Fill the key statistics against ``{key: shape}`` of the model to load into.

        The settings record takes no part, nor do the classifier's keys that ``expected`` lacks
        (a backbone without the classifier's final norm, for instance).

        Args:
            expected: shapes of the target (backbone) state dict.
            prefix: only keys of ``state_dict`` under this prefix take part (stripped).
        """
        skip = {k for k in self.classifier if k[len(prefix):] not in expected}
        ours = {
            k[len(prefix):]: v.shape
            for k, v in self.state_dict.items()
            if k.startswith(prefix) and not _is_settings_key(k) and k not in skip
        }
        expected = {k: v for k, v in expected.items() if not _is_settings_key(k)}
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
    """How one family's checkpoints are recognised and converted.

    Attributes:
        table (ArchTable): the family's variants; ``table.family`` names the converter and
            ``table.backbone`` the registered backbone type.
        official_signature, our_signature (Pattern): a backbone key that only the official /
            mmlinattn layout has (the family is detected by either).
        official_keys, our_keys (Pattern): every backbone key of the respective layout matches
            (used to refuse files that mix both).
        convert_official (callable): ``(backbone_state_dict) -> (converted, dropped, hints)``;
            ``hints`` is a dict handed on to ``infer`` (e.g. head sizes read from buffers).
        infer (callable): ``(converted, hints) -> (arch, build_kwargs, settings)`` for our
            layout (``hints`` also holds the file's ``'arch'`` entry as ``'source_arch'``);
            ``settings`` as far as the weights show them, None where they do not (also inside
            ``num_heads``, which the arch then leaves None too).
        source_settings (callable): ``(source_arch, hints) -> settings`` from the file's
            ``'arch'`` entry and the hints; raises CheckpointError for another family's entry.
        optional_keys (Pattern): keys a backbone may lack without the file being incomplete
            (e.g. output norms that ImageNet files do not have).
        classifier_keys (Pattern): keys of the ImageNet classifier's head (official and timm
            layouts name them alike); kept beside the converted backbone.
        describe (callable): ``(settings) -> str``, a short human name of the weights' kind
            (e.g. ``'SOFT++'``).
        undecided (callable): ``(settings) -> Optional[str]``: a warning when the file does not
            say something that changes the function (e.g. SOFT vs SOFT++), else None.
    """
    table: ArchTable
    official_signature: Pattern
    our_signature: Pattern
    official_keys: Pattern
    our_keys: Pattern
    convert_official: Callable[[Dict[str, torch.Tensor]], Tuple[Dict, List[str], Dict]]
    infer: Callable[[Dict[str, torch.Tensor], Dict], Tuple[Dict, Dict, Dict]]
    source_settings: Callable[[Optional[str], Dict], Dict]
    optional_keys: Pattern = re.compile(r'$^')
    classifier_keys: Pattern = re.compile(r'$^')
    describe: Callable[[Dict], str] = lambda settings: ''
    undecided: Callable[[Dict], Optional[str]] = lambda settings: None

    @property
    def name(self) -> str:
        return self.table.family

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        keys = _split_backbone(state_dict)[0]
        return any(self.official_signature.match(k) or self.our_signature.match(k) for k in keys)


_FAMILIES: Dict[str, FamilyConverter] = {}


def register_family(converter: FamilyConverter) -> None:
    """Register (or replace) the converter of a model family."""
    _FAMILIES[converter.name] = converter


def registered_families() -> List[str]:
    return sorted(_FAMILIES)


def family_converter(name: str) -> FamilyConverter:
    """The registered converter of family ``name``.

    Raises:
        CheckpointError: no such family.
    """
    if name not in _FAMILIES:
        raise CheckpointError(f'no converter is installed for family {name!r}; available: '
                              f'{registered_families()}')
    return _FAMILIES[name]


def _is_settings_key(key: str) -> bool:
    return key == SETTINGS_KEY or key.endswith('.' + SETTINGS_KEY)


def _split_backbone(state_dict: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(backbone entries without ``backbone.``, other entries); every entry is a backbone entry
    if none has the prefix."""
    if any(k.startswith(BACKBONE_PREFIX) for k in state_dict):
        return ({
            k[len(BACKBONE_PREFIX):]: v
            for k, v in state_dict.items() if k.startswith(BACKBONE_PREFIX)
        }, {
            k: v
            for k, v in state_dict.items() if not k.startswith(BACKBONE_PREFIX)
        })
    return dict(state_dict), {}


def detect_family(state_dict: Mapping[str, Any]) -> str:
    """Name of the family whose (official or converted) layout ``state_dict`` has.

    Keys may carry a ``backbone.`` prefix (whole detectors / segmentors).

    Raises:
        CheckpointError: no family, or several, recognise the keys.
    """
    found = [name for name, fam in sorted(_FAMILIES.items()) if fam.detect(state_dict)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise CheckpointError(f'the keys match several families {found}; pass --family')
    sample = ', '.join(list(state_dict)[:3])
    raise CheckpointError(f'no known model family recognises these weights (first keys: {sample}); '
                          f'supported families: {registered_families()}')


def _example_key(state_dict: Mapping[str, Any], family: str) -> str:
    converter = _FAMILIES[family]
    keys = list(_split_backbone(state_dict)[0])
    for key in keys:
        if converter.official_keys.match(key) or converter.our_keys.match(key):
            return key
    return next(iter(keys), '')


def reference_shapes(table: ArchTable, arch: Mapping[str, Any],
                     **build_kwargs) -> Optional[Dict[str, torch.Size]]:
    """``{key: shape}`` of the backbone ``table.backbone`` with ``arch``, built by registry name
    on the meta device (no memory, no import of the model module); None if that arch does not
    build."""
    from mmengine.registry import MODELS
    backbone = MODELS.get(table.backbone)
    if backbone is None:
        raise CheckpointError(f'backbone {table.backbone} is not registered; import mmlinattn '
                              'first')
    try:
        with torch.device('meta'):
            model = backbone(arch=dict(arch), **build_kwargs)
    except (ValueError, TypeError):
        return None
    return {k: v.shape for k, v in model.state_dict().items() if not _is_settings_key(k)}


def backbone_config(result: ConversionResult) -> Dict[str, Any]:
    """A ``backbone=dict(...)`` that builds the model these weights belong to (paste it into a
    config): type, arch (variant name or full dict), the recorded settings that differ from the
    backbone's defaults and the needed constructor arguments. It builds and loads the weights as
    they are; :func:`backbone_advice` adds what it had to assume."""
    table = _FAMILIES[result.family].table
    config: Dict[str, Any] = {'type': table.backbone}
    config['arch'] = result.variant if result.variant != 'custom' else {
        k: v
        for k, v in result.arch.items() if k in table.required_keys or k in table.defaults
    }
    defaults = _defaults_of(table)
    for key, value in result.settings.items():
        if key in ('family', 'embed_dims', 'depths', 'num_heads') or value is None:
            continue
        if key in defaults and _plain(defaults[key]) == _plain(value):
            continue
        config[key] = tuple(value) if isinstance(value, list) else value
    for key, value in result.build_kwargs.items():
        if key in defaults and _plain(defaults[key]) == _plain(value):
            continue
        config[key] = tuple(value) if isinstance(value, list) else value
    return config


def backbone_advice(result: ConversionResult) -> str:
    """:func:`backbone_config` as text, followed by what it assumes and must be checked (values
    the file does not record, e.g. SOFT's stage-3 heads or SOFT vs SOFT++), in parentheses."""
    return str(backbone_config(result)) + ''.join(f' ({note})' for note in advice_notes(result))


def advice_notes(result: ConversionResult) -> List[str]:
    """What a printed backbone config assumes for these weights: the arch entries the file does
    not show and the family's undecided settings (see :class:`FamilyConverter`)."""
    undecided = _FAMILIES[result.family].undecided(result.settings)
    return [note for note in (result.assumed, undecided) if note]


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _defaults_of(table: ArchTable) -> Dict[str, Any]:
    from mmengine.registry import MODELS
    backbone = MODELS.get(table.backbone)
    return backbone.default_arguments() if hasattr(backbone, 'default_arguments') else {}


def convert_state_dict(state_dict: Mapping[str, torch.Tensor],
                       family: str = 'auto',
                       whole_model: bool = False,
                       source_arch: Optional[str] = None) -> ConversionResult:
    """Convert a state dict of any supported layout to mmlinattn keys.

    Args:
        state_dict: weights, e.g. from :func:`unwrap_state_dict`.
        family (str): ``'auto'`` or a family name; a mismatch with the detected family is refused.
        whole_model (bool): keep the non-backbone keys of a detector / segmentor checkpoint
            (backbone keys re-mapped under ``backbone.``); otherwise return the backbone only.
        source_arch (str, optional): the file's ``'arch'`` entry (:func:`checkpoint_arch`); also
            handed to the family's ``infer`` as ``hints['source_arch']``.

    Returns:
        ConversionResult: compared against a backbone of the inferred arch.

    Raises:
        CheckpointError: unknown family, family mismatch, a layout mixing official and mmlinattn
            keys, a structure that is not this family's backbone, or ``whole_model`` for a
            backbone-only file.
    """
    detected = detect_family(state_dict)
    if family == 'auto':
        family = detected
    elif family != detected:
        raise CheckpointError(
            f'this is a {detected.upper()} checkpoint (keys like '
            f'{_example_key(state_dict, detected)!r}), not {family.upper()}; use --family '
            f'{detected} (or auto)')
    converter = family_converter(family)
    backbone, others = _split_backbone(state_dict)
    is_detector = any(k.startswith(BACKBONE_PREFIX) for k in state_dict)
    if whole_model and not is_detector:
        raise CheckpointError('--whole-model needs a detector/segmentor checkpoint (keys under '
                              "'backbone.'); this file holds only a backbone or classifier")
    recorded = backbone.pop(SETTINGS_KEY, None)
    classifier = {} if is_detector else {
        k: v
        for k, v in backbone.items() if converter.classifier_keys.match(k)
    }
    backbone = {k: v for k, v in backbone.items() if k not in classifier}
    official = any(converter.official_keys.match(k) for k in backbone)
    ours = any(converter.our_keys.match(k) for k in backbone)
    if official and ours:
        raise CheckpointError(f'the backbone mixes official {family.upper()} keys and mmlinattn '
                              f'{converter.table.backbone} keys')
    dropped: List[str] = []
    hints: Dict[str, Any] = {}
    if official:
        converted, dropped, hints = converter.convert_official(backbone)
        source_format = 'official-downstream' if is_detector else 'official-imagenet'
    else:
        converted, source_format = backbone, 'mmlinattn'
    hints = {**hints, 'source_arch': source_arch}
    arch, build_kwargs, settings = converter.infer(converted, hints)
    settings = {
        **settings,
        **{
            k: v
            for k, v in converter.source_settings(source_arch, hints).items() if v is not None
        }
    }
    if recorded is not None:
        settings = _merge_record(settings, decode_settings(recorded), family)
    for key in converter.table.required_keys:
        known = settings.get(key)
        if known is not None and len(known) == len(arch[key]):
            arch[key] = [a if k is None else k for a, k in zip(arch[key], known)]
    arch, assumed = converter.table.complete(arch)
    variant = converter.table.variant_of(arch, keys=converter.table.required_keys) or 'custom'
    settings = {'family': family, **settings}
    converted = dict(converted)
    converted[SETTINGS_KEY] = encode_settings(settings)
    if whole_model:
        output = {**{BACKBONE_PREFIX + k: v for k, v in converted.items()}, **others}
    else:
        output = {**converted, **classifier}
        dropped += sorted(others)  # neck / head weights of a detector or segmentor
    result = ConversionResult(
        state_dict=output,
        family=family,
        variant=variant,
        arch=arch,
        source_format=source_format,
        settings=settings,
        build_kwargs=build_kwargs,
        dropped=dropped,
        classifier=sorted(classifier),
        assumed=assumed)
    reference = reference_shapes(converter.table, arch, **build_kwargs)
    if reference is not None:
        result.compare(reference, prefix=BACKBONE_PREFIX if whole_model else '')
    return result


def _merge_record(inferred: Dict[str, Any], recorded: Dict[str, Any],
                  family: str) -> Dict[str, Any]:
    """The file's own settings record, checked against what its tensors show; an entry that
    one of them leaves unknown (None) is taken from the other."""
    if recorded.get('family') not in (None, family):
        raise CheckpointError(f"the file's settings record says family {recorded['family']!r}, but "
                              f'its tensors are {family.upper()}')
    for key, value in inferred.items():
        mine = recorded.get(key)
        if value is None or mine is None:
            continue
        if isinstance(value, list) and isinstance(mine, list) and len(value) == len(mine):
            if all(v is None or m is None or v == m for v, m in zip(value, mine)):
                continue
        elif value == mine:
            continue
        raise CheckpointError(f"the file's settings record says {key}={mine!r}, but its tensors "
                              f'show {key}={value!r}; the file is inconsistent (edited by hand?)')
    merged = dict(inferred)
    for key, mine in recorded.items():
        value = merged.get(key)
        if key == 'family' or (mine is None and value is not None):
            continue
        if isinstance(value, list) and isinstance(mine, list) and len(value) == len(mine):
            mine = [v if m is None else m for v, m in zip(value, mine)]
        merged[key] = mine
    return merged


def load_checkpoint_file(path: str) -> Any:
    """Load a local checkpoint through :func:`mmlinattn.utils.checkpoint.safe_torch_load`
    (``weights_only=True`` with the project's one allow-list: ``argparse.Namespace``, which the
    official training scripts pickle, and what full mmengine checkpoints hold).

    Raises:
        CheckpointError: missing, empty, truncated or non-checkpoint file, a directory, or one that
            references a Python global outside the allow-list (it could run code).
    """
    try:
        return safe_torch_load(path)
    except FileNotFoundError:
        raise CheckpointError(f'{path}: no such file') from None


def refuse_official_layout(checkpoint: Any, filename: str) -> None:
    """Refuse an official (unconverted) layout where mmengine loads a file as it is.

    mmengine's ``load_from`` / ``init_detector`` / ``init_model`` load by key name: an official
    RALA or SOFT file would match no key and leave the model untrained with only a log line.
    Registered with :func:`mmlinattn.utils.checkpoint.register_load_check`.

    Raises:
        CheckpointError: the file's weights are in an official layout.
    """
    if not isinstance(checkpoint, Mapping):
        return
    try:
        weights = unwrap_state_dict(checkpoint)
    except CheckpointError:
        return
    backbone = _split_backbone(weights)[0]
    for name, converter in sorted(_FAMILIES.items()):
        if any(converter.official_signature.match(k)
               for k in backbone) and not any(converter.our_keys.match(k) for k in backbone):
            whole = ' --whole-model' if any(k.startswith(BACKBONE_PREFIX) for k in weights) \
                else ''
            raise CheckpointError(
                f'{filename} holds an official {name.upper()} checkpoint, which mmengine cannot '
                f'load by key name; convert it first: python tools/convert_checkpoint.py '
                f'{filename} CONVERTED.pth{whole} (or use it as the backbone\'s '
                "init_cfg=dict(type='Pretrained', checkpoint=...), which converts on the fly)")


register_load_check(refuse_official_layout)


def checkpoint_arch(checkpoint: Any) -> Optional[str]:
    """The ``'arch'`` entry of a loaded checkpoint (timm savers write it), or None.

    For SOFT it is the only thing in an official file that tells a SOFT-Norm (SOFT++) file from a
    plain SOFT one.
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


def save_checkpoint(path: str,
                    state_dict: Mapping[str, torch.Tensor],
                    meta: Dict[str, Any],
                    force: bool = False) -> None:
    """Write ``{'state_dict': ..., 'meta': ...}`` atomically (temporary file in the destination
    directory, then :func:`os.replace`), so readers never see a partial file.

    On any failure the destination is untouched and no temporary file is left behind.

    Raises:
        CheckpointError: ``path`` exists and ``force`` is False, ``path`` is a directory, or the
            write failed (permissions, disk full, ...), with the reason in one line.
    """
    path = osp.abspath(osp.expanduser(path))
    if osp.isdir(path):
        raise CheckpointError(f'{path} is a directory; give a file name for the output')
    if osp.exists(path) and not force:
        raise CheckpointError(f'{path} exists; pass --force to overwrite it')
    directory = osp.dirname(path)
    tmp_path = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(
            dir=directory, prefix=f'.{osp.basename(path)}.', suffix='.tmp')
        with os.fdopen(fd, 'wb') as f:
            torch.save({'state_dict': dict(state_dict), 'meta': meta}, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp_path, path)
        tmp_path = None
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno == errno.ENOSPC:
            reason = 'no space left on the device'
        raise CheckpointError(f'cannot write {path}: {reason}; nothing was written') from None
    except RuntimeError as err:  # torch.save reports a failed write as RuntimeError
        raise CheckpointError(f'cannot write {path}: {str(err).splitlines()[0][:120]}; nothing '
                              'was written') from None
    finally:
        if tmp_path is not None and osp.exists(tmp_path):
            os.remove(tmp_path)


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


def load_pretrained(module: torch.nn.Module,
                    checkpoint: str,
                    family: str = 'auto',
                    prefix: Optional[str] = None) -> ConversionResult:
    """Load a (possibly official) checkpoint into a backbone, converting keys on the fly.

    Args:
        module: the backbone (a :class:`~mmlinattn.models.backbones.base.PyramidBackbone`).
        checkpoint (str): local path or URL.
        family (str): expected family, or ``'auto'``.
        prefix (str, optional): keep only keys under this prefix (stripped) before converting.
            Detector / segmentor files need none: their ``backbone.`` part is found automatically.

    Returns:
        ConversionResult: with the key statistics against ``module``.

    Raises:
        CheckpointError: unreadable file, wrong family, no matching key, or shapes that do not fit
            (i.e. the checkpoint is another variant than the model).
        CheckpointMismatchError: the weights were trained with settings (e.g. SOFT vs SOFT++) that
            contradict the backbone's, unless it has ``override_checkpoint_settings=True``.
    """
    from mmengine.logging import print_log

    loaded = load_checkpoint_file(_resolve_local(checkpoint))
    state_dict = unwrap_state_dict(loaded)
    if prefix:
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not state_dict:
            raise CheckpointError(f'{checkpoint}: no keys start with prefix {prefix!r}')
    try:
        result = convert_state_dict(state_dict, family=family, source_arch=checkpoint_arch(loaded))
    except CheckpointError as err:
        raise type(err)(f'{checkpoint}: {err}') from None
    target = module.state_dict()
    result.compare({k: v.shape for k, v in target.items()})
    name = type(module).__name__
    if result.mismatched:
        key = result.mismatched[0]
        raise CheckpointError(
            f'{checkpoint} does not fit this {name}: {len(result.mismatched)} tensors differ in '
            f'shape, e.g. {key} {tuple(result.state_dict[key].shape)} vs '
            f'{tuple(target[key].shape)}; the file holds variant {result.variant!r}: build the '
            f'backbone as {backbone_advice(result)}')
    if not result.matched:
        raise CheckpointError(f'{checkpoint}: no key matches this {name}')
    if hasattr(module, 'check_checkpoint_settings'):
        module.check_checkpoint_settings(result.settings, source=checkpoint)
    warning = _FAMILIES[result.family].undecided(result.settings)
    if warning:
        print_log(f'{name}: {checkpoint}: {warning}', logger='current', level=30)
    weights = {k: result.state_dict[k] for k in result.matched}
    if hasattr(module, 'partial_load'):
        with module.partial_load():
            module.load_state_dict(weights, strict=False)
    else:
        module.load_state_dict(weights, strict=False)
    kind = _FAMILIES[result.family].describe(result.settings)
    print_log(
        f'{name}: loaded {checkpoint} ({result.family}{", " + kind if kind else ""}, '
        f'{result.source_format}, variant {result.variant!r}): {result.summary()}' +
        (f'; missing: {_abbreviate(result.missing)}' if result.missing else '') +
        (f'; unexpected: {_abbreviate(result.unexpected)}' if result.unexpected else ''),
        logger='current')
    return result


def _abbreviate(keys: List[str], limit: int = 6) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys)} in all)' if len(keys) > limit else '')
