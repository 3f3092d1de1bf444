"""Config loading and pre-flight checks shared by ``tools/train.py``, ``tools/test.py`` and the demo.

Everything a user can get wrong before a run starts (a config path typo, a dataset that was never
created, a config without the dataloader the command needs) is turned into a :class:`UserInputError`
whose message says what is missing and which command creates it. The tools print that one line and
exit with status 2 instead of showing a stack trace.
"""
import os.path as osp
from typing import Iterable, List, Optional

from mmengine.config import Config

__all__ = ['UserInputError', 'load_config', 'task_of', 'check_datasets']

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
