"""Config loading and pre-flight checks shared by ``tools/train.py``, ``tools/test.py``, the demo.

Everything a user can get wrong before a run starts (a config path typo, a dataset that was never
created, a config without the dataloader the command needs) is turned into a :class:`UserInputError`
whose message says what is missing and which command creates it. The tools print that one line and
exit with status 2 instead of showing a stack trace.
"""
import glob
import os.path as osp
from typing import Iterable, List, Optional, Tuple

from mmengine.config import Config

__all__ = [
    'UserInputError', 'load_config', 'task_of', 'check_datasets', 'check_checkpoint',
    'resume_checkpoint', 'check_train_loop', 'build_model_on_meta', 'explain_build_error'
]

#: which command creates the data a config points at, keyed by a substring of the data root.
_DATA_HINTS = (
    ('demo', 'create it with: python tools/make_demo_data.py'),
    ('coco', 'put COCO 2017 in data/coco/ (see README "Datasets") or point the config at it with '
     '--cfg-options train_dataloader.dataset.data_root=/path/to/coco/'),
    ('ade', 'put ADEChallengeData2016 in data/ade/ (see README "Datasets") or point the config at '
     'it with --cfg-options train_dataloader.dataset.data_root=/path/to/ADEChallengeData2016/'),
)


class UserInputError(Exception):
    """A mistake in the command line, the config or the data layout, explained in one line."""


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Load a config file with a clear error for a wrong path.

    Args:
        path (str): config file path.
        cfg_options (dict, optional): overrides merged into the config (``--cfg-options``).

    Returns:
        Config: the loaded config.
    """
    if not osp.isfile(path):
        here = osp.dirname(path) or '.'
        near = ''
        if osp.isdir(here):
            import difflib
            names = [n for n in sorted(osp.os.listdir(here)) if n.endswith('.py')]
            guess = difflib.get_close_matches(osp.basename(path), names, n=1)
            if guess:
                near = f'; did you mean {osp.join(here, guess[0])!r}?'
        raise UserInputError(f'config file {path!r} not found{near} (configs live in configs/)')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def task_of(cfg: Config) -> str:
    """``'mmdet'`` or ``'mmseg'``: which codebase runs this config (its ``default_scope``)."""
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        raise UserInputError(
            f"config has default_scope={scope!r}; mmlinattn's tools run mmdet or mmseg configs "
            "(inherit from an mmdet::/mmseg:: base or set default_scope)")
    return scope


def _dataset_roots(dataset_cfg) -> List[str]:
    """All data roots a dataset config reads, looking through dataset wrappers."""
    roots = []
    if dataset_cfg is None:
        return roots
    if 'datasets' in dataset_cfg:  # ConcatDataset
        for sub in dataset_cfg['datasets']:
            roots += _dataset_roots(sub)
    elif 'dataset' in dataset_cfg:  # RepeatDataset, ClassBalancedDataset, MultiImageMixDataset
        roots += _dataset_roots(dataset_cfg['dataset'])
    else:
        roots.append(dataset_cfg.get('data_root', '') or '')
        ann = dataset_cfg.get('ann_file', '')
        if ann and not osp.isabs(ann):
            ann = osp.join(roots[-1], ann)
        if ann:
            roots.append(ann)
    return roots


def _hint(root: str) -> str:
    for key, hint in _DATA_HINTS:
        if key in root.lower():
            return hint
    return 'check the data_root/ann_file in the config or override them with --cfg-options'


def check_datasets(cfg: Config, loaders: Iterable[str]) -> None:
    """Check that the dataloaders a command needs are configured and their files exist.

    Args:
        cfg (Config): the loaded config.
        loaders (Iterable[str]): e.g. ``('train_dataloader', 'val_dataloader')``.

    Raises:
        UserInputError: a dataloader is missing, or a data root / annotation file does not exist.
    """
    for name in loaders:
        loader = cfg.get(name)
        if not loader or not loader.get('dataset'):
            raise UserInputError(
                f'the config defines no {name}.dataset; inherit a dataset config '
                "(e.g. 'mmdet::_base_/datasets/coco_instance.py') or use one of configs/*_demo.py")
        for path in _dataset_roots(loader['dataset']):
            if path and not osp.exists(path):
                raise UserInputError(f'{name}: {path!r} does not exist; {_hint(path)}')


def _validate_checkpoint(path: str):
    """Load ``path`` cheaply (memory-mapped) through the safe loader; return it.

    Raises:
        CheckpointError: the one-line diagnosis (missing, directory, empty, truncated, not a
            checkpoint, unsafe).
    """
    from .checkpoint import CheckpointError, run_load_checks, safe_torch_load
    try:
        checkpoint = safe_torch_load(path, mmap=True)
    except FileNotFoundError:
        raise CheckpointError(f'{path}: no such file') from None
    run_load_checks(checkpoint, path)  # e.g. an official layout that must be converted first
    return checkpoint


def _weights_of(checkpoint) -> dict:
    """The state dict of a loaded checkpoint as mmengine's ``load_from`` sees it."""
    import re
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    if not isinstance(state, dict):
        return {}
    return {re.sub(r'^module\.', '', k): v for k, v in state.items()}


def check_checkpoint(cfg: Config, path: str, flag: str, whole: bool = False):
    """Check, before any run starts, that ``path`` can be loaded into the model of ``cfg``.

    Catches what would otherwise surface as a long traceback after the config dump, or as a
    silently untrained model: a missing, damaged, non-checkpoint or unsafe file; an official RALA /
    SOFT file that must be converted first; a file that holds none of the backbone's weights
    (trained for another model); and backbone weights that do not fit the config's backbone:
    another arch, tensors of the wrong shape or missing, or a settings record that contradicts it
    (e.g. SOFT weights for a SOFT++ config; the backbone's ``override_checkpoint_settings=True``
    allows it).

    Args:
        cfg (Config): the loaded config.
        path (str): checkpoint path.
        flag (str): how the user gave the path (``'checkpoint'``, ``'--resume'``, ``'load_from'``).
        whole (bool): the run evaluates or predicts with the weights as they are (``tools/test.py``,
            ``tools/demo.py``): every weight of the model must come from the file with its shape,
            so a backbone-only file or one for other heads is refused. Defaults to False (training:
            what the file lacks is trained).

    Returns:
        The loaded (memory-mapped) checkpoint.

    Raises:
        UserInputError: one line naming the file, what is wrong and the fix.
    """
    import contextlib

    from ..loading import backbone_state, plan_load
    from .checkpoint import CheckpointError
    try:
        checkpoint = _validate_checkpoint(path)
    except CheckpointError as err:
        raise UserInputError(f'{flag}: {err}') from None
    state = _weights_of(checkpoint)
    model = build_model_on_meta(cfg)
    try:
        plan = plan_load(model, state)
        if plan.kind == 'other':
            return checkpoint
        incoming = backbone_state(plan, state)
        plan.backbone._adapt_incoming(incoming, '')
        # A backbone-only file loads as init_cfg Pretrained loads it: what it lacks keeps its init.
        partial = plan.backbone.partial_load() if plan.kind == 'backbone' else \
            contextlib.nullcontext()
        with partial:
            plan.backbone.check_state_dict(incoming, source=path)
    except CheckpointError as err:
        raise UserInputError(f'{flag}: {path}: {err}' if path not in
                             str(err) else f'{flag}: {err}') from None
    if whole and not plan.complete:
        config = cfg.filename or 'CONFIG'
        if plan.kind == 'backbone':
            raise UserInputError(
                f'{flag}: {path} is a backbone-only {type(plan.backbone).__name__} file: '
                f'{plan.describe_gaps()} would be '
                'random, so the results would mean nothing; fine-tune a whole model from it '
                f'first: python tools/train.py {config} --cfg-options load_from={path}')
        example = (plan.mismatched or plan.missing)[0]
        raise UserInputError(
            f'{flag}: {path} does not hold all weights of this model: {plan.describe_gaps()} '
            f'would stay random ({len(plan.missing)} tensor(s) missing, {len(plan.mismatched)} '
            f'of another shape, e.g. {example}); it was trained for another config. Give the '
            f'checkpoint trained with {config}')
    return checkpoint


#: Exceptions a model's constructor raises for a wrong config value (mmengine re-raises them with
#: the class name in front).
_BUILD_ERRORS = (KeyError, TypeError, ValueError, AssertionError, NotImplementedError)


def _config_path_of(node, type_name: str, path: str) -> Optional[str]:
    """Dotted config path of the (last) dict with ``type == type_name`` under ``node``."""
    found = None
    if isinstance(node, dict):
        kind = node.get('type')
        if isinstance(kind, str) and kind.split('.')[-1] == type_name:
            found = path
        for key, value in node.items():
            deeper = _config_path_of(value, type_name, f'{path}.{key}')
            found = deeper or found
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found = _config_path_of(value, type_name, f'{path}.{i}') or found
    return found


def _failed_build(err: BaseException) -> Tuple[Optional[str], Optional[type]]:
    """``(type name, class)`` of the innermost registry build that ``err`` came out of."""
    name, cls = None, None
    tb = err.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == 'build_from_cfg' and 'obj_type' in frame.f_locals:
            kind = frame.f_locals['obj_type']
            name = kind if isinstance(kind, str) else getattr(kind, '__name__', None)
            cls = frame.f_locals.get('obj_cls')
        tb = tb.tb_next
    return name, cls


def explain_build_error(cfg: Config, err: BaseException) -> str:
    """One line for an exception raised while ``cfg.model`` is built: the config key of the
    module that failed, the problem and the fix (an unknown keyword gets its closest valid
    name)."""
    import difflib
    import inspect
    import re
    reason = str(err.args[0]) if err.args else type(err).__name__
    reason = re.sub(r'class `\w+` in [\w.]+: ', '', reason).strip()
    reason = reason.split(' Please check whether', 1)[0]
    name, cls = _failed_build(err)
    path = (_config_path_of(cfg.get('model'),
                            name.split('.')[-1], 'model') if name else None) or 'model'
    fix = ''
    keyword = re.search(r"unexpected keyword argument '(\w+)'", reason)
    unknown = re.match(r'(\S+) is not in the (\S+) registry', reason)
    if keyword and cls is not None:
        try:
            params = [
                p for p, v in inspect.signature(cls).parameters.items()
                if v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)
            ]
        except (TypeError, ValueError):
            params = []
        params += _base_parameters(cls)
        close = difflib.get_close_matches(keyword.group(1), params, n=1)
        reason = f'{cls.__name__} has no argument {keyword.group(1)!r}'
        if close:
            reason += f'; did you mean {close[0]!r}?'
            fix = f' {path}.{close[0]}=...'
    elif unknown:
        reason = (f'type {unknown.group(1)!r} is not registered in {unknown.group(2)} (a typo, or '
                  'a custom_imports entry missing)')
    config = cfg.filename or 'the config'
    reason = ' '.join(reason.split())  # one line, whatever the library wrote
    joint = ' Fix it' if reason.endswith('?') else '; fix it'
    return f'{path}: {reason}{joint} in {config} or with --cfg-options{fix}'


def _base_parameters(cls) -> List[str]:
    """Keyword names the bases of ``cls`` accept through ``**kwargs``."""
    import inspect
    names: List[str] = []
    for base in getattr(cls, '__mro__', ())[1:]:
        init = base.__dict__.get('__init__')
        if init is None:
            continue
        try:
            names += [
                p for p in inspect.signature(init).parameters if p not in ('self', 'args', 'kwargs')
            ]
        except (TypeError, ValueError):
            continue
    return names


def build_model_on_meta(cfg: Config):
    """``cfg.model`` built on the meta device (no memory, no init), in the config's scope.

    The pre-flight form of what the runner and the inference APIs build: a wrong type, keyword or
    value in the model config becomes one line naming the config key.

    Raises:
        UserInputError: the model cannot be built from ``cfg``.
    """
    import copy

    import torch
    from mmengine.registry import MODELS, DefaultScope, init_default_scope
    model_cfg = cfg.get('model')
    if not isinstance(model_cfg, dict):
        raise UserInputError('the config defines no model dict')
    scope = cfg.get('default_scope')
    if scope:
        init_default_scope(scope)
    model_cfg = copy.deepcopy(model_cfg)
    try:
        with DefaultScope.overwrite_default_scope(scope), torch.device('meta'):
            return MODELS.build(model_cfg)
    except _BUILD_ERRORS as err:
        raise UserInputError(explain_build_error(cfg, err)) from None


def _intact_checkpoints(work_dir: str, skip: str) -> Optional[str]:
    """The newest loadable ``*.pth`` in ``work_dir`` other than ``skip``, or None."""
    candidates = [
        p for p in glob.glob(osp.join(work_dir, '*.pth')) if osp.abspath(p) != osp.abspath(skip)
    ]
    candidates.sort(key=lambda p: osp.getmtime(p), reverse=True)
    from .checkpoint import CheckpointError
    for candidate in candidates:
        try:
            _validate_checkpoint(candidate)
        except CheckpointError:
            continue
        return candidate
    return None


def resume_checkpoint(cfg: Config, resume: str) -> Optional[str]:
    """The checkpoint ``--resume`` will load, checked; None when there is nothing to resume.

    Args:
        cfg (Config): the config, with ``work_dir`` set.
        resume (str): ``'auto'`` (the file named in ``work_dir/last_checkpoint``) or a path.

    Returns:
        str | None: the checkpoint; None for ``'auto'`` when the work dir holds no checkpoint yet
        (the tools then say in one line that training starts from scratch).

    Raises:
        UserInputError: the checkpoint is damaged, does not fit, or holds weights without a
            training state; the message names the newest intact checkpoint in the work dir and
            the command that resumes from it (or the ``load_from`` that starts from the weights).
    """
    work_dir = cfg.work_dir
    if resume == 'auto':
        pointer = osp.join(work_dir, 'last_checkpoint')
        if not osp.isfile(pointer):
            return None
        with open(pointer) as f:
            path = f.read().strip()
        named = f'{path} (named in {pointer})'
    else:
        path, named = resume, resume
    try:
        checkpoint = check_checkpoint(cfg, path, '--resume', whole=True)
    except UserInputError as err:
        good = _intact_checkpoints(osp.dirname(path) or work_dir, skip=path)
        hint = (f'; the newest intact checkpoint there is {good}: resume from it with '
                f'--resume {good}'
                if good else '; no intact checkpoint is left there: train again without --resume')
        message = str(err)
        if named != path:
            message = message.replace(path, named, 1)
        raise UserInputError(message + hint) from None
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or not {'epoch', 'iter'} <= set(meta):
        raise UserInputError(
            f'--resume: {named} holds weights without a training state (no epoch / iteration '
            'count), so there is nothing to resume; start a new run from its weights with '
            f'--cfg-options load_from={path}')
    return path


def check_train_loop(cfg: Config) -> None:
    """Refuse a length override that the config's training loop does not count in.

    COCO configs count epochs (``EpochBasedTrainLoop``), ADE20K and demo configs iterations
    (``IterBasedTrainLoop``); ``--cfg-options train_cfg.max_iters=100`` on an epoch-based config
    would otherwise fail deep inside mmengine.

    Raises:
        UserInputError: naming the loop and the option that works.
    """
    train_cfg = cfg.get('train_cfg') or {}
    loop = train_cfg.get('type') or ('EpochBasedTrainLoop'
                                     if train_cfg.get('by_epoch', True) else 'IterBasedTrainLoop')
    epochs = 'Epoch' in loop
    wrong, right = ('max_iters', 'max_epochs') if epochs else ('max_epochs', 'max_iters')
    if wrong in train_cfg:
        raise UserInputError(
            f'this config trains with {loop}, which counts {right[4:]}, but train_cfg has '
            f'{wrong}; use --cfg-options train_cfg.{right}=N (and train_cfg.val_interval=N)')
