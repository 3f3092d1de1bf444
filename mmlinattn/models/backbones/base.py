"""The base class of every mmlinattn backbone, and the argument checks they share.

:class:`PyramidBackbone` owns what is not specific to one attention: arch parsing against an
:class:`~mmlinattn.archs.ArchTable`, ``out_indices`` / ``frozen_stages`` / ``norm_eval`` /
``with_cp`` / ``drop_path_rate`` handling, pretrained initialisation through the converters, and the
*settings record*: every backbone's state dict carries, under torch's ``_extra_state`` key, the
settings that decide the function its weights compute (family, widths, depths, heads and the
family's own, e.g. SOFT's normalization). Loading weights into a backbone built with contradicting
settings is then an error (:class:`~mmlinattn.utils.checkpoint.CheckpointMismatchError`) whichever
way they arrive: ``init_cfg=dict(type='Pretrained')``, ``load_from`` / ``--resume`` of a whole
model, ``init_detector`` or plain ``load_state_dict``. ``override_checkpoint_settings=True`` turns
the error into a logged warning for deliberate changes (e.g. fine-tuning SOFT weights as SOFT++).

A family subclass sets ``arch_table`` and implements its stem, stages and
:meth:`~PyramidBackbone.function_settings`.
"""
import copy
import inspect
import numbers
from contextlib import contextmanager
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch.nn.modules.batchnorm import _BatchNorm

from ...archs import ArchTable
from ...ops.registry import DEFAULT_BACKEND, get_op
from ...utils.checkpoint import (SETTINGS_KEY, CheckpointMismatchError, decode_settings,
                                 encode_settings)

__all__ = ['PyramidBackbone', 'check_rate', 'check_positive_int', 'check_out_indices', 'run_blocks']

#: Arch keys that are part of every settings record.
ARCH_SETTINGS = ('embed_dims', 'depths', 'num_heads')


def check_rate(name: str, value: Any) -> float:
    """A probability-like rate in ``[0, 1)``.

    Raises:
        ValueError: naming ``name`` and the accepted range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f'{name} must be a number in [0, 1), got {value!r}')
    return float(value)


def check_positive_int(name: str, value: Any, allow_none: bool = False) -> Optional[int]:
    """A positive int (or None when ``allow_none``).

    Raises:
        ValueError: naming ``name``.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f'{name} must be a positive int{" or None" if allow_none else ""}, got '
                         f'{value!r}')
    return int(value)


def check_out_indices(out_indices: Union[int, Sequence[int]], num_stages: int) -> Tuple[int, ...]:
    """Normalise ``out_indices`` (an int or a sequence; negative indices count from the end).

    Returns:
        tuple[int]: sorted, non-negative stage indices.

    Raises:
        ValueError: empty, out of range, not ints, or naming a stage twice.
    """
    if isinstance(out_indices, numbers.Integral) and not isinstance(out_indices, bool):
        out_indices = (out_indices, )
    indices = list(out_indices)
    if not indices:
        raise ValueError(f'out_indices is empty; name at least one of the stages 0..'
                         f'{num_stages - 1}, e.g. out_indices=(0, 1, 2, 3)')
    normalised = []
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise ValueError(f'out_indices must hold ints, got {out_indices!r}')
        if not -num_stages <= index < num_stages:
            raise ValueError(f'out_indices must be in [0, {num_stages - 1}] (or negative from '
                             f'the end), got {index}')
        normalised.append(int(index) % num_stages)
    if len(set(normalised)) != len(normalised):
        raise ValueError(f'out_indices {tuple(indices)} names a stage twice; list each stage once, '
                         f'e.g. {tuple(sorted(set(normalised)))}')
    return tuple(sorted(normalised))


def run_blocks(blocks: nn.ModuleList,
               x: torch.Tensor,
               *args,
               with_cp: bool = False) -> torch.Tensor:
    """``x = block(x, *args)`` for each block, with gradient checkpointing when ``with_cp`` and
    ``x`` needs a gradient."""
    for block in blocks:
        if with_cp and x.requires_grad:
            x = cp.checkpoint(block, x, *args, use_reentrant=False)
        else:
            x = block(x, *args)
    return x


class PyramidBackbone(BaseModule):
    """Base of the 4-stage pyramid backbones (strides 4, 8, 16, 32).

    Owns the arguments every family shares; a family's ``__init__`` takes its own arguments and
    passes the rest here as keywords. Subclasses set :attr:`arch_table`, build ``self.stem`` and
    ``self.stages`` (an ``nn.ModuleList``) after calling this ``__init__``, call
    :meth:`_freeze_stages` at its end, and implement :meth:`function_settings` (and
    :meth:`_init_family_parameters` for parameters other than weights and biases).

    Args:
        arch (str | dict): a variant name of :attr:`arch_table` or a custom dict (see the
            family).
        in_channels (int): input image channels. Defaults to 3.
        out_indices (int | Sequence[int]): stages whose outputs are returned, each once
            (negative indices count from the end). Defaults to ``(0, 1, 2, 3)``.
        drop_path_rate (float, optional): stochastic depth, increasing linearly over all blocks
            from 0 to this value, in ``[0, 1)``. None: the variant's ``drop_path_rate`` if its
            arch has one (RAVLT's official rates), else 0.1. Defaults to None.
        norm_cfg (dict): norm of the stem and downsamplers (the official detection and
            segmentation models use ``dict(type='SyncBN')``). Defaults to ``dict(type='BN')``.
        frozen_stages (int): ``-1`` freezes nothing, ``0`` the stem, ``k`` also stages
            ``0 .. k - 1`` (eval mode, no gradients). Defaults to -1.
        norm_eval (bool): keep every BN layer (SyncBN included) in eval mode while training.
            Defaults to False.
        with_cp (bool): gradient checkpointing per block (less memory, slower). Defaults to False.
        backend (str | dict): implementation of the attention ops, independent of what they
            compute: ``'torch'``, ``'reference'`` (the plain twins, for debugging) or any backend
            registered with :func:`mmlinattn.ops.register_op`; a dict chooses per op kind (kinds
            it omits use ``'torch'``). Defaults to ``'torch'``.
        override_checkpoint_settings (bool): weights whose settings record (see the module
            docstring) or tensors contradict this backbone are refused with an error naming the
            fix; True loads them with a warning instead (e.g. SOFT weights into a SOFT++ model
            to fine-tune them). Defaults to False.
        init_cfg (dict | list[dict], optional): ``None`` initialises from scratch;
            ``dict(type='Pretrained', checkpoint=PATH[, prefix=...])`` loads an official or
            converted file through :func:`mmlinattn.converters.load_pretrained` and logs matched /
            missing / unexpected counts. Defaults to None.
    """

    arch_table: ArchTable
    num_stages: int
    #: op kinds the family's attention uses (checked against ``backend`` at build time).
    op_kinds: Tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if 'arch_table' in cls.__dict__:
            cls.num_stages = cls.arch_table.num_stages

    def __init__(self,
                 arch: Union[str, Dict],
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 drop_path_rate: Optional[float] = None,
                 norm_cfg: Dict = dict(type='BN'),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 backend: Union[str, Dict[str, str]] = DEFAULT_BACKEND,
                 override_checkpoint_settings: bool = False,
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch = self.parse_arch(arch)
        self.embed_dims = self.arch['embed_dims']
        self.in_channels = check_positive_int('in_channels', in_channels)
        self.out_indices = check_out_indices(out_indices, self.num_stages)
        if drop_path_rate is None:
            drop_path_rate = self.arch.get('drop_path_rate', 0.1)
        self.drop_path_rate = check_rate('drop_path_rate', drop_path_rate)
        self.norm_cfg = copy.deepcopy(norm_cfg)
        if (isinstance(frozen_stages, bool) or not isinstance(frozen_stages, numbers.Integral)
                or not -1 <= frozen_stages <= self.num_stages):
            raise ValueError(f'frozen_stages must be an int in [-1, {self.num_stages}] (-1: '
                             f'nothing frozen), got {frozen_stages!r}')
        self.frozen_stages = int(frozen_stages)
        self.norm_eval = bool(norm_eval)
        self.with_cp = bool(with_cp)
        self.backend = backend
        for kind in self.op_kinds:
            self.op_for(kind)  # an unknown backend fails here, once
        self.override_checkpoint_settings = bool(override_checkpoint_settings)

    def op_for(self, kind: str) -> Callable:
        """The implementation of op ``kind`` that ``backend`` selects (a name, or a dict from op
        kind to name where missing kinds use ``'torch'``).

        Raises:
            ValueError: an unknown backend for that op.
        """
        backend = self.backend
        if isinstance(backend, Mapping):
            backend = backend.get(kind, DEFAULT_BACKEND)
        return get_op(kind, backend)

    @classmethod
    def default_arguments(cls) -> Dict[str, Any]:
        """Constructor defaults of this family and of the base, by argument name."""
        defaults: Dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if isinstance(klass, type) and issubclass(klass, PyramidBackbone):
                signature = inspect.signature(klass.__init__)
                defaults.update({
                    name: p.default
                    for name, p in signature.parameters.items()
                    if p.default is not inspect.Parameter.empty
                })
        return defaults

    # ------------------------------------------------------------------------------ arch
    @classmethod
    def parse_arch(cls, arch: Union[str, Dict]) -> Dict:
        """Resolve a variant name or validate a custom arch dict.

        Returns:
            dict: all arch keys (defaults filled in), lists copied.

        Raises:
            ValueError: unknown name, missing / unknown keys, wrong lengths or values.
            TypeError: ``arch`` is neither a str nor a dict.
        """
        table = cls.arch_table
        required, defaults = table.required_keys, dict(table.defaults)
        if isinstance(arch, str):
            if table.canonical(arch) is None:
                raise ValueError(f'arch {arch!r} unknown; choose one of {list(table.names())} '
                                 f'or pass a dict with keys {list(required)}')
            return table.get(arch)
        if not isinstance(arch, Mapping):
            raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')
        missing = [k for k in required if k not in arch]
        if missing:
            raise ValueError(f'custom arch is missing {missing}; it needs the keys '
                             f'{list(required)} (optional: {list(defaults)})')
        unknown = sorted(set(arch) - set(required) - set(defaults))
        if unknown:
            raise ValueError(f'custom arch has unknown keys {unknown}; allowed keys are '
                             f'{list(required) + list(defaults)}')
        parsed = {**defaults, **arch}
        for key, value in list(parsed.items()):
            if isinstance(defaults.get(key, []), list):
                if not isinstance(value, (list, tuple)) or len(value) != table.num_stages:
                    raise ValueError(f'arch[{key!r}] must list {table.num_stages} values (one '
                                     f'per stage), got {value!r}')
                parsed[key] = list(value)
        for key in ARCH_SETTINGS:
            for i, value in enumerate(parsed[key]):
                check_positive_int(f'arch[{key!r}][{i}] (stage {i})', value)
            parsed[key] = [int(v) for v in parsed[key]]
        for i, (dims, heads) in enumerate(zip(parsed['embed_dims'], parsed['num_heads'])):
            if dims % heads:
                raise ValueError(f'stage {i}: embed_dims {dims} is not divisible by num_heads '
                                 f'{heads}')
        cls._check_arch(parsed)
        return parsed

    @classmethod
    def _check_arch(cls, arch: Dict) -> None:
        """Family-specific checks of a parsed custom arch (raise ValueError)."""

    def block_drop_path_rates(self) -> List[List[float]]:
        """Per stage, the stochastic-depth rate of each block (linear from 0 over all blocks)."""
        depths = self.arch['depths']
        rates = torch.linspace(0, self.drop_path_rate, sum(depths), device='cpu').tolist()
        return [rates[sum(depths[:i]):sum(depths[:i + 1])] for i in range(len(depths))]

    # ------------------------------------------------------------------ freezing, norm_eval
    def _frozen_modules(self) -> List[nn.Module]:
        """Modules frozen by ``frozen_stages``; subclasses add modules outside the stages."""
        return (([self.stem] if self.frozen_stages >= 0 else []) +
                list(self.stages[:max(self.frozen_stages, 0)]))

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):  # BN and SyncBN alike
                    module.eval()
        return self

    # ------------------------------------------------------------------------------ init
    def init_weights(self) -> None:
        """``init_cfg=None``: from scratch. ``Pretrained``: from scratch, then the file through
        :func:`mmlinattn.converters.load_pretrained` (official and converted layouts; keys the file
        lacks keep their from-scratch values). Other types go to :class:`BaseModule`."""
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            from ...converters import load_pretrained
            self._init_from_scratch()
            load_pretrained(
                self,
                init_cfg['checkpoint'],
                family=self.arch_table.family,
                prefix=init_cfg.get('prefix'))
            self._is_init = True
        elif init_cfg is None:
            self._init_from_scratch()
            self._is_init = True
        else:
            super().init_weights()

    #: Layer types whose weights start truncated-normal (std 0.02) with zero bias.
    truncated_normal_init: Tuple[type, ...] = (nn.Conv2d, )

    def _init_from_scratch(self) -> None:
        """Truncated-normal weights (std 0.02, zero bias) for :attr:`truncated_normal_init`
        layers, unit / zero LayerNorms, then :meth:`_init_family_parameters`."""
        for module in self.modules():
            if isinstance(module, self.truncated_normal_init):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self._init_family_parameters()

    def _init_family_parameters(self) -> None:
        """Initialise the family's own parameters (layer scales, position tables, ...)."""

    # ------------------------------------------------------------------------------ forward
    def output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """What the backbone returns for stage ``index`` given the stage's map ``x`` (e.g. through
        an output norm). The identity by default."""
        return x

    def forward_stages(self, x: torch.Tensor, last: Optional[int] = None):
        """Yield ``(i, map)`` for each stage ``i`` up to ``last`` (all by default); the map is
        the stage's output before :meth:`output`. ``x`` is ``(B, in_channels, H, W)``."""
        x = self.stem(x)
        last = self.num_stages - 1 if last is None else last
        for i, stage in enumerate(self.stages[:last + 1]):
            x = stage(x)
            yield i, x

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """x: ``(B, in_channels, H, W)``. Returns one ``(B, C_i, H_i, W_i)`` map per out index,
        ``H_i = ceil(H / 2 ** (i + 2))``."""
        return tuple(
            self.output(i, x) for i, x in self.forward_stages(x, max(self.out_indices))
            if i in self.out_indices)

    def official_algorithm_patches(self) -> List[Tuple[Any, str, Any]]:
        """``(object, attribute, value)`` changes that make this backbone evaluate its maths as
        the released code does (same weights, same function up to rounding or, where ours bounds
        a cost, the released cost); applied and undone by
        :func:`mmlinattn.analysis.official.official_algorithm`. None by default."""
        return []

    # ------------------------------------------------------------------ settings record
    def function_settings(self) -> Dict[str, Any]:
        """Family-specific settings that change the function of the same weights (JSON values)."""
        return {}

    def trained_settings(self) -> Dict[str, Any]:
        """The settings record saved with this backbone's weights.

        Returns:
            dict: ``family``, ``embed_dims``, ``depths``, ``num_heads`` and
            :meth:`function_settings`.
        """
        return {
            'family': self.arch_table.family,
            **{
                k: list(self.arch[k])
                for k in ARCH_SETTINGS
            },
            **self.function_settings()
        }

    def get_extra_state(self) -> torch.Tensor:
        return encode_settings(self.trained_settings())

    def set_extra_state(self, state: Any) -> None:
        self.check_checkpoint_settings(decode_settings(state))

    def _adapt_incoming(self, state_dict: Dict[str, Any], prefix: str) -> None:
        """Adapt a state dict in place before it is checked and loaded (e.g. resize position
        tables); ``prefix`` is this backbone's key prefix in it."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # torch and mmengine call this on the backbone before its children: adapt and check the
        # whole subtree here, then let torch load (which also applies the settings record).
        self._adapt_incoming(state_dict, prefix)
        self.check_state_dict({
            k[len(prefix):]: v
            for k, v in state_dict.items() if k.startswith(prefix)
        })
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @contextmanager
    def partial_load(self):
        """Within it, loading a state dict that lacks some of this backbone's tensors is no error
        (pretrained initialisation keeps the from-scratch values of what a file lacks)."""
        previous, self._partial_load = getattr(self, '_partial_load', False), True
        try:
            yield
        finally:
            self._partial_load = previous

    def optional_state_keys(self) -> set:
        """Keys a loaded state dict may lack without an error here (a classifier's head, which
        timm drops when the number of classes changes; torch's ``strict`` still applies)."""
        return set()

    def check_state_dict(self,
                         state_dict: Mapping[str, Any],
                         source: str = 'the checkpoint') -> None:
        """Check backbone weights (keys relative to the backbone) before they are loaded.

        Nothing is checked when ``state_dict`` holds no backbone key at all (a checkpoint of other
        modules). Otherwise a tensor whose shape differs from this backbone's, or a backbone
        tensor the file lacks, is an error (a warning with ``override_checkpoint_settings``) instead
        of the log line with which ``load_state_dict(strict=False)`` would skip it, and so is a
        tensor for a module this backbone does not have (e.g. output norms); the settings
        record, when present, is checked as in :meth:`check_checkpoint_settings`.

        Raises:
            CheckpointMismatchError: naming the first offending tensors and the fix.
        """
        incoming = {k: v for k, v in state_dict.items() if k != SETTINGS_KEY}
        if not incoming:
            return
        record = state_dict.get(SETTINGS_KEY)
        if record is not None:
            self.check_checkpoint_settings(decode_settings(record), source=source)
        ours = {k: v.shape for k, v in self.state_dict().items() if k != SETTINGS_KEY}
        wrong = [
            k for k, v in incoming.items()
            if k in ours and hasattr(v, 'shape') and tuple(v.shape) != tuple(ours[k])
        ]
        optional = self.optional_state_keys()
        missing = [] if getattr(self, '_partial_load', False) else [
            k for k in ours if k not in incoming and k not in optional
        ]
        unexpected = [k for k in incoming if k not in ours]
        if not wrong and not missing and not unexpected:
            return
        name = type(self).__name__
        parts = []
        if wrong:
            key = wrong[0]
            parts.append(f'{len(wrong)} tensor(s) differ in shape (e.g. {key}: '
                         f'{tuple(incoming[key].shape)} there, {tuple(ours[key])} here)')
        if missing:
            parts.append(f'{len(missing)} tensor(s) of this {name} are missing (e.g. '
                         f'{missing[0]})')
        if unexpected:
            parts.append(f'{len(unexpected)} tensor(s) belong to no module of this {name} (e.g. '
                         f'{unexpected[0]})')
        message = f"{source}'s backbone weights do not fit this {name}: {' and '.join(parts)}"
        if self.override_checkpoint_settings:
            print_log(
                f'{message}; loading the rest because override_checkpoint_settings=True',
                logger='current',
                level=30)
            return
        raise CheckpointMismatchError(
            f'{message}; build the backbone the weights were trained with (or set '
            'override_checkpoint_settings=True to load the tensors that fit)')

    def _setting_fix(self, key: str, value: Any, recorded: Mapping[str, Any]) -> str:
        """The backbone-config change that makes this backbone match ``recorded[key]``."""
        if key in ARCH_SETTINGS:
            arch = {k: recorded.get(k, self.arch[k]) for k in ARCH_SETTINGS}
            arch, assumed = self.arch_table.complete(arch)  # entries the record leaves None
            name = self.arch_table.variant_of(arch, keys=ARCH_SETTINGS)
            fix = f'arch={name!r}' if name else f'arch={arch}'
            return f'{fix} ({assumed})' if assumed else fix
        return f'{key}={tuple(value) if isinstance(value, list) else value!r}'

    def check_checkpoint_settings(self,
                                  recorded: Mapping[str, Any],
                                  source: str = 'the checkpoint') -> List[str]:
        """Compare a settings record with this backbone's settings.

        Entries that are missing or None in ``recorded`` (not known for that file) are not
        compared.

        Args:
            recorded (dict): e.g. from the checkpoint's ``_extra_state`` or a converter.
            source (str): how to name the weights in messages (a file path).

        Returns:
            list[str]: the keys that differ (only with ``override_checkpoint_settings``).

        Raises:
            CheckpointMismatchError: another family, or settings that differ without
                ``override_checkpoint_settings``.
        """
        name = type(self).__name__
        family = recorded.get('family')
        if family is not None and family != self.arch_table.family:
            raise CheckpointMismatchError(
                f'{source} holds {family.upper()} weights, but this backbone is {name} '
                f'({self.arch_table.family.upper()}); build the backbone type that matches them')
        ours = self.trained_settings()
        differ = []
        for key, value in recorded.items():
            if key == 'family' or key not in ours or value is None:
                continue
            if isinstance(value, list) and isinstance(ours[key], list):
                if len(value) == len(ours[key]) and all(v is None or v == o
                                                        for v, o in zip(value, ours[key])):
                    continue
            elif value == ours[key]:
                continue
            differ.append(key)
        if not differ:
            return []
        trained = ', '.join(f'{k}={recorded[k]!r}' for k in differ)
        built = ', '.join(f'{k}={ours[k]!r}' for k in differ)
        fixes = []
        for key in differ:
            fix = self._setting_fix(key, recorded[key], recorded)
            if fix not in fixes:
                fixes.append(fix)
        message = (f'{source} holds weights trained with {trained}, but this {name} is built with '
                   f'{built}')
        if self.override_checkpoint_settings:
            print_log(
                f'{message}; loading them anyway because override_checkpoint_settings=True',
                logger='current',
                level=30)
            return differ
        raise CheckpointMismatchError(
            f'{message}; set {" and ".join(fixes)} in the backbone config to match them (or '
            'override_checkpoint_settings=True to load them into this model on purpose)')
