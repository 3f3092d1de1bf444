"""Config loading and pre-flight checks shared by ``tools/train.py``, ``tools/test.py``, the demo.

Everything a user can get wrong before a run starts (a config path typo, a dataset that was never
created, a config without the dataloader the command needs) is turned into a :class:`UserInputError`
whose message says what is missing and which command creates it. The tools print that one line and
exit with status 2 instead of showing a stack trace.
"""
import glob
import os.path as osp
from typing import Iterable, List, Optional

from mmengine.config import Config

__all__ = [
    'UserInputError', 'load_config', 'task_of', 'check_datasets', 'check_checkpoint',
    'resume_checkpoint', 'check_train_loop'
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


def _backbone_state(checkpoint) -> dict:
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    return state if isinstance(state, dict) else {}


def check_checkpoint(cfg: Config, path: str, flag: str) -> None:
    """Check, before any run starts, that ``path`` can be loaded into the model of ``cfg``.

    Catches what would otherwise surface as a long traceback after the config dump: a missing,
    damaged, non-checkpoint or unsafe file; an official RALA / SOFT file that must be converted
    first; and mmlinattn backbone weights that do not fit the config's backbone: another arch,
    tensors of the wrong shape or missing, or a settings record that contradicts it (e.g. SOFT
    weights for a SOFT++ config; the backbone's ``override_checkpoint_settings=True`` allows it).

    Args:
        cfg (Config): the loaded config.
        path (str): checkpoint path.
        flag (str): how the user gave the path (``'checkpoint'``, ``'--resume'``, ``'load_from'``).

    Raises:
        UserInputError: one line naming the file, what is wrong and the fix.
    """
    from .checkpoint import CheckpointError
    try:
        checkpoint = _validate_checkpoint(path)
    except CheckpointError as err:
        raise UserInputError(f'{flag}: {err}') from None
    state = _backbone_state(checkpoint)
    model_cfg = cfg.get('model')
    backbone_cfg = model_cfg.get('backbone') if isinstance(model_cfg, dict) else None
    backbone_state = {
        k[len('backbone.'):]: v
        for k, v in state.items() if k.startswith('backbone.')
    }
    if not backbone_state or not backbone_cfg:
        return
    backbone = _build_on_meta(cfg, backbone_cfg)
    if backbone is None or not hasattr(backbone, 'check_state_dict'):
        return
    try:
        backbone._adapt_incoming(backbone_state, '')
        backbone.check_state_dict(backbone_state, source=path)
    except CheckpointError as err:
        raise UserInputError(f'{flag}: {err}') from None


def _build_on_meta(cfg: Config, backbone_cfg):
    """The config's backbone built on the meta device without pretrained init, or None."""
    import copy

    import torch
    from mmengine.registry import MODELS, DefaultScope
    backbone_cfg = copy.deepcopy(backbone_cfg)
    backbone_cfg.pop('init_cfg', None)
    scope = cfg.get('default_scope')
    try:
        with DefaultScope.overwrite_default_scope(scope), torch.device('meta'):
            return MODELS.build(backbone_cfg)
    except (KeyError, TypeError, ValueError):
        return None


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

    Raises:
        UserInputError: the checkpoint is damaged or does not fit; the message names the newest
            intact checkpoint in the work dir and the command that resumes from it.
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
        check_checkpoint(cfg, path, '--resume')
    except UserInputError as err:
        good = _intact_checkpoints(osp.dirname(path) or work_dir, skip=path)
        hint = (f'; the newest intact checkpoint there is {good}: resume from it with '
                f'--resume {good}'
                if good else '; no intact checkpoint is left there: train again without --resume')
        message = str(err)
        if named != path:
            message = message.replace(path, named, 1)
        raise UserInputError(message + hint) from None
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
