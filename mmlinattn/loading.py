"""How weights reach a whole detector or segmentor: no silent partial load.

Every mmengine front door that loads weights by key name (``load_from``, ``--resume``,
``tools/test.py``, ``init_detector``, ``init_model``, the Inferencers) ends in
``mmengine.runner.checkpoint.load_state_dict(model, state_dict, strict=False)``, which loads the
keys that match and logs the rest. A file that matches nothing therefore leaves the model as it
was initialised and the run goes on. :func:`load_state_dict_checked` takes its place (installed by
``import mmlinattn``, see :func:`install_checked_loading`) for models that contain an mmlinattn
backbone and decides, with :func:`plan_load`, what the file is for that model:

* weights of the whole model (``backbone.*`` keys present): loaded as mmengine does, with one log
  line naming the top-level modules the file holds nothing for;
* a backbone-only file (what ``tools/convert_checkpoint.py`` writes by default) given where a whole
  model is expected: loaded into ``model.backbone`` with one log line saying so and naming the
  modules that keep their initialisation (neck and heads);
* a file with none of the backbone's weights (e.g. a detector with another backbone): an error.

Models without an mmlinattn backbone, and a backbone loaded on its own, load exactly as before.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from .utils.checkpoint import CheckpointMismatchError

__all__ = [
    'LoadPlan', 'NoBackboneWeightsError', 'unwrap_model', 'find_backbone', 'plan_load',
    'backbone_state', 'foreign_keys', 'load_state_dict_checked', 'install_checked_loading',
    'uninstall_checked_loading', 'is_checked_loading_installed'
]


class NoBackboneWeightsError(CheckpointMismatchError):
    """A checkpoint given for a whole model holds none of its backbone's weights."""


def is_backbone(module: torch.nn.Module) -> bool:
    """Whether ``module`` is an mmlinattn backbone (it checks the weights it is given)."""
    return hasattr(module, 'check_state_dict') and hasattr(module, 'trained_settings')


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside any mmengine model wrappers (DDP and the like)."""
    from mmengine.model import is_model_wrapper
    while is_model_wrapper(model):
        model = model.module
    return model


def find_backbone(model: torch.nn.Module) -> Optional[Tuple[str, torch.nn.Module]]:
    """``(prefix, backbone)`` of the outermost mmlinattn backbone inside ``model``, or None.

    The prefix is the backbone's key prefix in ``model.state_dict()`` (``'backbone.'``); it is
    ``''`` when ``model`` is the backbone itself.
    """
    for name, module in unwrap_model(model).named_modules():
        if is_backbone(module):
            return (name + '.' if name else ''), module
    return None


@dataclass
class LoadPlan:
    """What a state dict is for a model, and what it leaves untouched.

    Attributes:
        kind (str): ``'whole'`` (keys of the whole model), ``'backbone'`` (a backbone-only file
            for a whole model) or ``'other'`` (no mmlinattn backbone inside a larger model: load
            as mmengine does).
        prefix (str): the backbone's key prefix in the model.
        uncovered (list[str]): top-level modules with weights the file holds nothing for.
        missing (list[str]): model keys (with weights) the file lacks.
        mismatched (list[str]): keys whose shape differs between file and model.
        backbone_keys (set[str]): the backbone's state-dict keys, relative to it.
    """
    kind: str
    prefix: str = ''
    backbone: Optional[torch.nn.Module] = None
    backbone_keys: set = field(default_factory=set)
    uncovered: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every weight of the model comes from the file, with its shape."""
        return self.kind != 'backbone' and not self.missing and not self.mismatched

    def describe_gaps(self) -> str:
        """``'neck, rpn_head and roi_head'`` style summary of what the file does not provide."""
        names = list(self.uncovered)
        partly = sorted({k.split('.', 1)[0] for k in self.missing + self.mismatched} - set(names))
        words = names + [f'part of {n}' for n in partly]
        if not words:
            return ''
        return words[0] if len(words) == 1 else ', '.join(words[:-1]) + ' and ' + words[-1]


def _top_prefixes(keys, limit: int = 4) -> str:
    seen: List[str] = []
    for key in keys:
        head = key.split('.', 1)[0] + ('.' if '.' in key else '')
        if head not in seen:
            seen.append(head)
    shown = ', '.join(repr(h) for h in seen[:limit])
    return shown + (', ...' if len(seen) > limit else '')


def plan_load(model: torch.nn.Module, state_dict: Mapping[str, Any]) -> LoadPlan:
    """Decide what ``state_dict`` (keys as mmengine passes them) is for ``model``.

    Args:
        model (nn.Module): the detector / segmentor (a model wrapper is looked through); it may
            live on the meta device (the tools' pre-flight checks).
        state_dict (Mapping): the checkpoint's weights.

    Returns:
        LoadPlan: the plan; ``kind='other'`` where mmengine's behaviour is kept.

    Raises:
        NoBackboneWeightsError: the model has an mmlinattn backbone, the file holds none of its
            weights, and it is not a backbone-only file either.
    """
    model = unwrap_model(model)
    found = find_backbone(model)
    if found is None or found[0] == '':
        return LoadPlan('other')
    prefix, backbone = found
    everything = model.state_dict()  # once: the settings record is encoded on every call
    backbone_keys = {k[len(prefix):] for k in everything if k.startswith(prefix)}
    ours = {
        k: v
        for k, v in everything.items()
        if hasattr(v, 'shape') and not k.endswith('num_batches_tracked')
    }
    if any(k.startswith(prefix) for k in state_dict):
        plan = LoadPlan('whole', prefix, backbone, backbone_keys)
        incoming = state_dict
    else:
        if not any(k in backbone_keys for k in state_dict):
            name = type(backbone).__name__
            raise NoBackboneWeightsError(
                f'the checkpoint holds no weights for model.{prefix[:-1]} ({name}): none of its '
                f'{len(state_dict)} entries is under {prefix!r} or is a {name} tensor (its keys '
                f'start with {_top_prefixes(state_dict)}); it was trained for another model. Give '
                f'a checkpoint of this model, or a {name} backbone file from '
                'tools/convert_checkpoint.py')
        plan = LoadPlan('backbone', prefix, backbone, backbone_keys)
        incoming = {prefix + k: v for k, v in state_dict.items()}
    plan.missing = [k for k in ours if k not in incoming]
    plan.mismatched = [
        k for k, v in incoming.items()
        if k in ours and hasattr(v, 'shape') and tuple(v.shape) != tuple(ours[k].shape)
    ]
    for name, child in model.named_children():
        keys = [k for k in ours if k.startswith(name + '.')]
        if keys and not any(k.startswith(name + '.') for k in incoming):
            plan.uncovered.append(name)
    return plan


def backbone_state(plan: LoadPlan, state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """The backbone's part of ``state_dict`` under ``plan``, keys relative to the backbone.

    For a backbone-only file (a pre-training file) only the keys the backbone has are kept, as
    ``init_cfg=dict(type='Pretrained')`` keeps them: an ImageNet file's classifier head and final
    norm have no place in a dense-prediction backbone (:func:`foreign_keys` lists them).
    """
    if plan.kind == 'backbone':
        return {k: v for k, v in state_dict.items() if k in plan.backbone_keys}
    return {k[len(plan.prefix):]: v for k, v in state_dict.items() if k.startswith(plan.prefix)}


def foreign_keys(plan: LoadPlan, state_dict: Mapping[str, Any]) -> List[str]:
    """Keys of a backbone-only file that the backbone does not have (not loaded)."""
    if plan.kind != 'backbone':
        return []
    return [k for k in state_dict if k not in plan.backbone_keys]


_ORIGINAL = None


def load_state_dict_checked(module: torch.nn.Module,
                            state_dict: Mapping[str, Any],
                            strict: bool = False,
                            logger: Any = None) -> None:
    """``mmengine.runner.checkpoint.load_state_dict`` with :func:`plan_load` in front.

    Same arguments as mmengine's. A backbone-only file goes into ``module.backbone`` (an error
    with ``strict=True``, which asks for every key); a file without backbone weights raises
    :class:`NoBackboneWeightsError`.
    """
    from mmengine.logging import print_log
    from mmengine.runner import checkpoint as mmengine_checkpoint
    original = _ORIGINAL or mmengine_checkpoint.load_state_dict
    plan = plan_load(module, state_dict)
    gaps = plan.describe_gaps()
    if plan.kind == 'backbone':
        target = f'model.{plan.prefix[:-1]}'
        if strict:
            raise CheckpointMismatchError(
                f'the checkpoint is a backbone-only file (keys without {plan.prefix!r}); '
                f'strict loading needs every key of the model: load it without strict, or '
                f"as the backbone's init_cfg=dict(type='Pretrained', checkpoint=...)")
        lacking = [k[len(plan.prefix):] for k in plan.missing if k.startswith(plan.prefix)]
        also = (f'; {len(lacking)} backbone tensor(s) the file lacks keep theirs too (e.g. '
                f'{lacking[0]})' if lacking else '')
        extra = foreign_keys(plan, state_dict)
        if extra:
            also += (f'; {len(extra)} tensor(s) of the file have no place in this backbone and '
                     f'are not loaded (e.g. {extra[0]}: a classifier head or final norm)')
        print_log(
            f'the checkpoint is a backbone-only {type(plan.backbone).__name__} file: loaded '
            f'into {target}; {gaps or "nothing else"} keep their initialisation (random unless '
            f'their own init_cfg loads weights){also}',
            logger='current',
            level=30)
        # As the backbone's init_cfg Pretrained: what a pre-training file lacks (e.g. the output
        # norms of a detection backbone, absent from an ImageNet classifier) keeps its init.
        with plan.backbone.partial_load():
            return original(plan.backbone, backbone_state(plan, state_dict), strict, logger)
    if plan.kind == 'whole' and plan.uncovered:
        print_log(
            f'the checkpoint holds no weights for {gaps}: they keep their initialisation',
            logger='current',
            level=30)
    return original(module, state_dict, strict, logger)


def install_checked_loading() -> None:
    """Route mmengine's key-name loading through :func:`load_state_dict_checked` (idempotent).

    mmengine's ``_load_checkpoint_to_model`` (used by ``Runner.load_checkpoint``,
    ``load_checkpoint`` and the Inferencers) looks ``load_state_dict`` up in its module when it
    runs, so replacing that one name covers every front door.
    """
    global _ORIGINAL
    from mmengine.runner import checkpoint as mmengine_checkpoint
    if mmengine_checkpoint.load_state_dict is not load_state_dict_checked:
        _ORIGINAL = mmengine_checkpoint.load_state_dict
        mmengine_checkpoint.load_state_dict = load_state_dict_checked


def uninstall_checked_loading() -> None:
    """Give mmengine back its own ``load_state_dict``."""
    from mmengine.runner import checkpoint as mmengine_checkpoint
    if _ORIGINAL is not None:
        mmengine_checkpoint.load_state_dict = _ORIGINAL


def is_checked_loading_installed() -> bool:
    """Whether mmengine's ``load_state_dict`` is :func:`load_state_dict_checked`."""
    from mmengine.runner import checkpoint as mmengine_checkpoint
    return mmengine_checkpoint.load_state_dict is load_state_dict_checked
