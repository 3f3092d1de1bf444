"""What the timm classifiers of every family share: weights loading and pyramid features.

The classifiers are the mmdet / mmseg backbones themselves (subclasses of the family's backbone,
so there is one implementation of the blocks and stages) plus the official classification head.
Their state dicts therefore use our backbone keys beside the official head keys, and
:func:`checkpoint_filter_fn` (timm's pretrained filter) converts any layout the converters read
with the converters' own key maps. Weights of another arch are refused there, before timm loads
them, with the ``timm.create_model`` call that builds the model they fit.
"""
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from timm.models._features import feature_take_indices

from ...converters import ConversionResult, advice_notes, backbone_config, convert_state_dict
from ...utils.checkpoint import CheckpointError, CheckpointMismatchError, safe_torch_load

__all__ = [
    'checkpoint_filter_fn', 'PyramidClassifierMixin', 'imagenet_cfg', 'NoPretrainedFileError',
    'build_classifier'
]


def imagenet_cfg(**kwargs) -> Dict[str, Any]:
    """A timm ``pretrained_cfg`` of an ImageNet-1k classifier trained at 224 x 224.

    No weights are hosted: load a file with ``pretrained_cfg_overlay=dict(file=PATH)``.
    """
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    return {
        'url': '',
        'num_classes': 1000,
        'input_size': (3, 224, 224),
        'pool_size': (7, 7),
        'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN,
        'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.0.conv',
        'classifier': 'head',
        'license': 'apache-2.0',
        **kwargs
    }


class NoPretrainedFileError(RuntimeError):
    """``pretrained=True`` without a weights file: no weights are hosted for these models."""


def build_classifier(cls, variant: str, pretrained: bool, **kwargs):
    """timm's ``build_model_with_cfg`` for our classifiers (the official layouts go through
    :func:`checkpoint_filter_fn`; features from the stage getter).

    Raises:
        NoPretrainedFileError: ``pretrained=True`` without
            ``pretrained_cfg_overlay=dict(file=...)``.
    """
    from timm.models import build_model_with_cfg
    try:
        return build_model_with_cfg(
            cls,
            variant,
            pretrained,
            pretrained_filter_fn=checkpoint_filter_fn,
            feature_cfg=dict(feature_cls='getter', out_indices=(0, 1, 2, 3)),
            **kwargs)
    except RuntimeError as err:
        if not str(err).startswith('No pretrained weights exist'):
            raise
        raise NoPretrainedFileError(
            f'{variant}: no weights are hosted for this model; load a local file (official, '
            "converted or timm-saved) with timm.create_model(..., pretrained=True, "
            "pretrained_cfg_overlay=dict(file='path/to/checkpoint.pth')), or use "
            'pretrained=False') from None


def _source_file(model: torch.nn.Module) -> Optional[str]:
    """The file timm loads for ``model`` (``pretrained_cfg_overlay=dict(file=...)``), if any."""
    return (getattr(model, 'pretrained_cfg', None) or {}).get('file')


def _source_arch(model: torch.nn.Module) -> Optional[str]:
    """The ``'arch'`` entry of the file timm loads for ``model`` (timm's loader keeps only the
    weights, and for SOFT the entry is what tells SOFT from SOFT++ files)."""
    path = _source_file(model)
    if not path:
        return None
    try:
        checkpoint = safe_torch_load(path, mmap=True)
    except (CheckpointError, FileNotFoundError):
        return None
    arch = checkpoint.get('arch') if isinstance(checkpoint, dict) else None
    return arch if isinstance(arch, str) else None


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor],
                         model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """timm's ``pretrained_filter_fn``: any layout of the model's family -> the classifier's keys.

    Official ImageNet files, files written by ``tools/convert_checkpoint.py`` and timm-saved
    classifiers (EMA or not; timm picks the weights) all go through
    :func:`mmlinattn.converters.convert_state_dict`, the converters' key maps: backbone keys are
    mapped, the official classifier head is kept, the settings record is added.

    Raises:
        CheckpointError: another family's weights or a layout no converter reads (the
            converter's one-line message).
        CheckpointMismatchError: weights of another arch or head size than the model's (unless
            it has ``override_checkpoint_settings=True``), naming the ``timm.create_model`` call
            that fits them.
    """
    family = model.arch_table.family
    result = convert_state_dict(state_dict, family=family, source_arch=_source_arch(model))
    if not model.override_checkpoint_settings:
        _refuse_another_arch(result, model)
    return dict(result.state_dict)


def _refuse_another_arch(result: ConversionResult, model: torch.nn.Module) -> None:
    """Raise if the weights' arch (the entries they show) or head differs from the model's."""
    head = model.checkpoint_head_kwargs(result.state_dict)
    differ = [
        key for key, value in result.arch.items()
        if not _same_where_known(value, model.arch.get(key), result.settings.get(key))
    ] + [key for key, value in head.items() if getattr(model, key) != value]
    if not differ:
        return
    theirs = {**result.arch, **head}
    ours = {**model.arch, **{k: getattr(model, k) for k in head}}
    name = (getattr(model, 'pretrained_cfg', None) or {}).get('architecture') or \
        type(model).__name__
    arguments = ', '.join([repr(name)] +
                          [f'{k}={v!r}' for k, v in _timm_kwargs(result, model).items()])
    raise CheckpointMismatchError(
        f'{_source_file(model) or "the checkpoint"} holds weights with '
        f'{", ".join(f"{k}={theirs[k]!r}" for k in differ)}, but this {type(model).__name__} has '
        f'{", ".join(f"{k}={ours[k]!r}" for k in differ)}; build it as '
        f'timm.create_model({arguments})' + ''.join(f' ({note})' for note in advice_notes(result)))


def _timm_kwargs(result: ConversionResult, model: torch.nn.Module) -> Dict[str, Any]:
    """The ``timm.create_model`` arguments of the classifier that ``result``'s weights fit: the
    converter's backbone config in the classifiers' terms, and the head sizes they need."""
    kwargs = {}
    for key, value in backbone_config(result).items():
        if key in ('type', 'final_norm'):  # a classifier always has the final norm
            continue
        kwargs['in_chans' if key == 'in_channels' else key] = value
    defaults = type(model).default_arguments()
    kwargs.update({
        k: v
        for k, v in model.checkpoint_head_kwargs(result.state_dict).items() if defaults.get(k) != v
    })
    return kwargs


def _same_where_known(value: Any, ours: Any, known: Any) -> bool:
    """``value == ours``, list entries that ``known`` (the settings) leaves None not compared."""
    if not (isinstance(value, (list, tuple)) and isinstance(ours, (list, tuple))):
        return value == ours
    if len(value) != len(ours):
        return False
    known = known if isinstance(known, (list, tuple)) and len(known) == len(value) else value
    return all(k is None or v == o for v, o, k in zip(value, ours, known))


class PyramidClassifierMixin:
    """timm's feature API for a classifier built on a
    :class:`~mmlinattn.models.backbones.base.PyramidBackbone`: ``feature_info``,
    ``forward_intermediates`` and ``prune_intermediate_layers`` over the backbone's stages, whose
    maps are exactly what the mmdet / mmseg backbone returns (before its output norms)."""

    def _pyramid_feature_info(self) -> List[Dict[str, Any]]:
        return [
            dict(num_chs=c, reduction=2**(i + 2), module=f'stages.{i}')
            for i, c in enumerate(self.embed_dims)
        ]

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage maps, as timm's pyramid models return them.

        Args:
            x (Tensor): ``(B, in_chans, H, W)``.
            indices (int | list[int], optional): the last n stages (int), the listed ones, or all.
            norm (bool): apply the classifier's final norm where the family has one on the
                last map (SOFT); ignored otherwise.
            stop_early (bool): do not run the stages after the last one taken.
            output_fmt (str): ``'NCHW'`` only.
            intermediates_only (bool): return the list of maps only.

        Returns:
            list[Tensor] | tuple[Tensor, list[Tensor]]: the ``(B, C_i, H_i, W_i)`` maps, and with
            ``intermediates_only=False`` first the final features (:meth:`forward_features`).
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt {output_fmt!r} unsupported; these models give 'NCHW'")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last = max_index if (stop_early or intermediates_only) else len(self.stages) - 1
        intermediates = []
        final = None
        for i, feature, final in self.stage_outputs(x, last):
            if i in take_indices:
                intermediates.append(self.intermediate(i, feature, norm))
        if intermediates_only:
            return intermediates
        return final, intermediates

    def stage_outputs(self, x: torch.Tensor, last: Optional[int] = None):
        """Yield ``(i, map, features)`` per stage up to ``last``: the stage's map and what
        :meth:`forward_features` would return if it ended there (the map itself by default)."""
        for i, feature in self.forward_stages(x, last):
            yield i, feature, feature

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W)`` -> the features :meth:`forward_head` takes."""
        for _, _, features in self.stage_outputs(x):
            pass
        return features

    def intermediate(self, index: int, x: torch.Tensor, norm: bool) -> torch.Tensor:
        """The feature map of stage ``index`` (the family may apply a norm)."""
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W)`` -> logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))

    def prune_intermediate_layers(self,
                                  indices: Union[int, List[int]] = 1,
                                  prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drop the stages after the last one in ``indices`` and, with ``prune_head``, the head.

        Returns:
            list[int]: the absolute stage indices to take.
        """
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[:max_index + 1]
        if max_index < self.num_stages - 1 or prune_head:
            self.prune_head()
        return take_indices

    def checkpoint_head_kwargs(self, state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
        """Constructor arguments (besides ``num_classes``, which timm handles) that a state dict's
        classifier head needs, e.g. RAVLT's ``projection``; none by default."""
        return {}

    def optional_state_keys(self) -> set:
        head = self.get_classifier()
        return {f'head.{name}' for name, _ in head.named_parameters()}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Gradient checkpointing of every block (timm's switch for the backbone's ``with_cp``)."""
        self.with_cp = enable
        for stage in self.stages:
            stage.with_cp = enable

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """Parameter groups for timm's layer-wise lr decay: the stem, then each stage (coarse) or
        each downsampler and block, then everything after the stages."""
        if coarse:
            blocks = [(r'^stages\.(\d+)', None)]
        else:
            blocks = [(r'^stages\.(\d+)\.downsample', (0, )),
                      (r'^stages\.(\d+)\.blocks\.(\d+)', None)]
        return dict(stem=r'^stem', blocks=blocks + [(self.head_group, (99999, ))])
