"""Regenerate the OpenMMLab model index: ``model-index.yml`` and ``configs/*/metafile.yml``.

Every ``configs/*.py`` becomes one ``Models`` entry in the metafile of its backbone family
(``configs/ravlt/metafile.yml``, ``configs/soft/metafile.yml``); ``model-index.yml`` imports the
metafiles. What each entry says comes from:

* the config: training data, optimizer, epochs or iterations, batch size (the config's images per
  GPU times the GPU count its docstring's ``Batch:`` line states; a config without that line runs
  in one process), detector / segmentor architecture;
* :mod:`mmlinattn.analysis.reported`: the papers' accuracy (``Results``);
* the built model: ``Parameters`` in M, counted on a model built on the meta device (no memory,
  no weight initialisation; the counts equal those of a model built on the CPU);
* ``FLOPs`` in G: measured only with ``--flops``, by the functions ``tools/analysis/get_flops.py``
  uses (whole model, its default input: 800 x 1280 detection, 512 x 2048 segmentation; 1
  multiply-add = 1 FLOP, attention included). Measuring takes seconds to minutes per config on a
  CPU, so without ``--flops`` the FLOPs of the metafile being replaced are kept.

The project publishes no trained weights: every ``Weights`` is null. Examples::

    python tools/misc/generate_metafiles.py                  # rewrite, keeping the FLOPs
    python tools/misc/generate_metafiles.py --flops          # also measure every config's FLOPs
    python tools/misc/generate_metafiles.py --flops maskrcnn_ravlt_t_coco   # only these configs
    python tools/misc/generate_metafiles.py --check          # exit 1 if a file is out of date
"""
import argparse
import ast
import contextlib
import copy
import functools
import importlib.util
import os
import os.path as osp
import re
import sys
import textwrap
import time
import warnings
from typing import Dict, List, Optional

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import yaml  # noqa: E402

from mmlinattn.analysis.reported import METRIC_NAMES, reported_metrics  # noqa: E402

INDEX_FILE = 'model-index.yml'
GENERATOR = 'tools/misc/generate_metafiles.py'

#: Backbone type (``model.backbone.type``) -> its metafile directory and ``Collections`` entry.
FAMILIES = {
    'RAVLT':
    dict(
        directory='configs/ravlt',
        collection=dict(
            Name='RAVLT',
            Metadata=dict(Architecture=[
                'RAVLT', 'Rank-Augmented Linear Attention', 'Global Softmax Attention'
            ]),
            Paper=dict(
                URL='https://arxiv.org/abs/2411.07635',
                Title='Breaking the Low-Rank Dilemma of Linear Attention'),
            Code=dict(URL='https://github.com/qhfan/RALA'),
            README='README.md'),
        results_note=('Results: the official RALA README (COCO val2017, ADE20K val), whose '
                      'recipes the configs port.')),
    'SOFT':
    dict(
        directory='configs/soft',
        collection=dict(
            Name='SOFT',
            Metadata=dict(Architecture=[
                'SOFT++', 'Softmax-free Attention', 'Nystrom Approximation',
                'Newton-Schulz Pseudo-Inverse', 'Symmetric Normalization'
            ]),
            Paper=dict(
                URL='https://arxiv.org/abs/2207.03341', Title='Softmax-free Linear Transformers'),
            Code=dict(URL='https://github.com/fudan-zvg/SOFT'),
            README='README.md'),
        results_note=('Results: the official SOFT README (SOFT-*-Norm = SOFT++ backbones, COCO '
                      'val2017 1x, ADE20K val UperNet), whose det/seg recipes are unpublished; '
                      'the configs follow PVT / Swin recipes (see their docstrings).')),
}

_TASKS = {
    'box AP': 'Object Detection',
    'mask AP': 'Instance Segmentation',
    'mIoU': 'Semantic Segmentation'
}
_DETECTORS = {'MaskRCNN': 'Mask R-CNN', 'CascadeRCNN': 'Cascade R-CNN', 'RetinaNet': 'RetinaNet'}
_DECODE_HEADS = {'UPerHead': 'UperNet', 'FPNHead': 'Semantic FPN'}
_BATCH_RE = re.compile(r'Batch: (\d+) images? per GPU x (\d+) GPUs = (\d+)')


class MetafileError(Exception):
    """A config or metafile the generator cannot describe, explained in one line."""


# ------------------------------------------------------------------ inputs


def config_names(root: str = ROOT) -> List[str]:
    """Stems of ``configs/*.py``, sorted."""
    configs = osp.join(root, 'configs')
    return sorted(name[:-3] for name in os.listdir(configs)
                  if name.endswith('.py') and osp.isfile(osp.join(configs, name)))


_MEMOISED = {}  # mmengine function -> its memoised twin, shared by every load


@contextlib.contextmanager
def memoised_base_reads():
    """Memoise what mmengine looks up to resolve ``mmdet::`` / ``mmseg::`` bases.

    For each such base mmengine re-reads the package's metafiles (hundreds of YAML files) and
    asks ``pkg_resources`` (reloaded every time) whether the package is installed and where; the
    answers only depend on the installed packages. Restores mmengine's functions on exit.
    """
    import mmengine.config.config as cfg_config
    import mmengine.config.utils as cfg_utils
    patched = [(cfg_utils, 'load'), (cfg_config, 'is_installed'),
               (cfg_config, 'get_installed_path')]
    originals = [getattr(module, attr) for module, attr in patched]
    for (module, attr), original in zip(patched, originals):
        if original not in _MEMOISED:
            _MEMOISED[original] = functools.lru_cache(maxsize=None)(original)
        setattr(module, attr, _MEMOISED[original])
    try:
        yield
    finally:
        for (module, attr), original in zip(patched, originals):
            setattr(module, attr, original)


def config_path(name: str, root: str = ROOT) -> str:
    """Path of ``configs/<name>.py`` under ``root`` (the key :func:`load_config` caches by)."""
    return osp.join(root, 'configs', f'{name}.py')


@functools.lru_cache(maxsize=None)
def load_config(path: str):
    """The config at ``path`` (cached: treat it as read-only, copy before changing it)."""
    from mmengine.config import Config
    with memoised_base_reads():
        return Config.fromfile(path)


#: In-place initialisers of ``torch.nn.init`` (what ``reset_parameters`` and mmengine call).
_INIT_FUNCTIONS = ('uniform_', 'normal_', 'trunc_normal_', 'constant_', 'ones_', 'zeros_', 'eye_',
                   'dirac_', 'xavier_uniform_', 'xavier_normal_', 'kaiming_uniform_',
                   'kaiming_normal_', 'orthogonal_', 'sparse_')


def _keep(tensor, *args, **kwargs):
    return tensor


@contextlib.contextmanager
def _no_weight_init():
    """Turn ``torch.nn.init``'s in-place initialisers into no-ops (restored on exit).

    A meta tensor has no values to set, yet its initialisation still runs through PyTorch's
    reference implementations: about half of a meta build's time. The shapes, and so the
    parameter counts, do not depend on it.
    """
    import torch.nn.init as init
    originals = {name: getattr(init, name) for name in _INIT_FUNCTIONS if hasattr(init, name)}
    for name in originals:
        setattr(init, name, _keep)
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(init, name, function)


def meta_model(cfg):
    """The config's model built on the meta device (no memory, no pretrained file, no init).

    Args:
        cfg (Config): a loaded config (not modified).

    Returns:
        nn.Module: the detector / segmentor, every parameter on the ``meta`` device.
    """
    import torch
    from mmengine.registry import MODELS, DefaultScope
    model_cfg = copy.deepcopy(cfg.model)
    if model_cfg.get('backbone') is not None:
        model_cfg.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope), torch.device('meta'), \
            _no_weight_init(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # mmseg's deprecation notes, once per model
        return MODELS.build(model_cfg)


_PARAMS = {}  # (scope, model config) -> parameter count: the 1x and 3x configs share models


def count_params(cfg) -> int:
    """Number of parameters (trainable or not) of the config's model, built on the meta device."""
    key = (cfg.default_scope, repr(cfg.model.to_dict()))
    if key not in _PARAMS:
        _PARAMS[key] = sum(p.numel() for p in meta_model(cfg).parameters())
    return _PARAMS[key]


def _train_dataset(cfg):
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:  # RepeatDataset, MultiImageMixDataset, ...
        dataset = dataset.dataset
    return dataset


def _training_data(name: str, cfg) -> str:
    dataset = _train_dataset(cfg)
    kind = {'CocoDataset': 'COCO', 'ADE20KDataset': 'ADE20K'}.get(dataset.type)
    if kind is None:
        raise MetafileError(f'configs/{name}.py: training dataset type {dataset.type!r} is '
                            f'neither CocoDataset nor ADE20KDataset; extend {GENERATOR}')
    if 'demo' in (dataset.get('data_root') or ''):
        return f"Generated demo data ({'COCO format' if kind == 'COCO' else 'ADE20K layout'})"
    return kind


def _techniques(cfg) -> List[str]:
    techniques = [cfg.optim_wrapper.optimizer.type]
    pipeline = [t.type for t in _train_dataset(cfg).pipeline]
    if 'RandomChoice' in pipeline or 'RandomChoiceResize' in pipeline:
        techniques.append('Multi-Scale Training')
    if cfg.optim_wrapper.type == 'AmpOptimWrapper':
        techniques.append('Mixed Precision Training')
    return techniques


def _batch_size(name: str, cfg, docstring: str) -> int:
    per_gpu = cfg.train_dataloader.batch_size
    match = _BATCH_RE.search(' '.join(docstring.split()))
    if match is None:
        return per_gpu  # one process (the demo configs)
    images, gpus, total = (int(g) for g in match.groups())
    if images != per_gpu or images * gpus != total:
        raise MetafileError(f"configs/{name}.py: docstring says 'Batch: {match.group(0)[7:]}' "
                            f'but train_dataloader.batch_size is {per_gpu}')
    return total


def _schedule(name: str, cfg) -> dict:
    train_cfg = cfg.train_cfg
    if 'max_epochs' in train_cfg:
        return {'Epochs': train_cfg.max_epochs}
    if 'max_iters' in train_cfg:
        return {'Iterations': train_cfg.max_iters}
    raise MetafileError(f'configs/{name}.py: train_cfg sets neither max_epochs nor max_iters')


def _architecture(family: str, cfg) -> List[str]:
    model = cfg.model
    backbone = model.backbone
    name = family
    if family == 'SOFT':  # as SOFT._resolve_attention: normalization wins, norm=True means 'core'
        normalization = backbone.get('normalization') or ('core'
                                                          if backbone.get('norm') else 'none')
        name = 'SOFT' if normalization == 'none' else 'SOFT++'
    parts = [name]
    if model.get('neck') is not None:
        parts.append(model.neck.type)
    if cfg.default_scope == 'mmdet':
        detector = _DETECTORS.get(model.type, model.type)
        roi_head = model.get('roi_head') or {}
        if model.type == 'CascadeRCNN' and roi_head.get('mask_head') is not None:
            detector = 'Cascade Mask R-CNN'
        parts.append(detector)
    else:
        head = model.decode_head.type
        parts.append(_DECODE_HEADS.get(head, head))
    return parts


def describe(name: str, root: str = ROOT, params: Optional[int] = None) -> dict:
    """Everything the metafile says about one config except its FLOPs.

    Args:
        name (str): config stem (``configs/<name>.py``).
        root (str): repository root. Defaults to this repository.
        params (int, optional): parameter count, if already known; counted on the meta device
            otherwise.

    Returns:
        dict: ``family`` (backbone type), ``entry`` (the ``Models`` entry, without FLOPs).
    """
    path = config_path(name, root)
    cfg = load_config(path)
    family = cfg.model.get('backbone', {}).get('type')
    if family not in FAMILIES:
        raise MetafileError(f'configs/{name}.py: backbone type {family!r} has no model-index '
                            f'collection; add it to FAMILIES in {GENERATOR}')
    with open(path, encoding='utf-8') as f:
        docstring = ast.get_docstring(ast.parse(f.read())) or ''
    if params is None:
        params = count_params(cfg)
    data = _training_data(name, cfg)
    metadata = {
        'Architecture': _architecture(family, cfg),
        'Training Data': data,
        'Training Techniques': _techniques(cfg),
        **_schedule(name, cfg), 'Batch Size': _batch_size(name, cfg, docstring),
        'Parameters': round(params / 1e6, 2)
    }
    results = []
    for metric, value in reported_metrics(name).items():
        if data not in ('COCO', 'ADE20K'):
            raise MetafileError(f'configs/{name}.py: paper metrics for a config trained on {data}')
        if metric not in METRIC_NAMES:
            raise MetafileError(f'{name}: unknown metric {metric!r} in mmlinattn.analysis.reported')
        results.append({'Task': _TASKS[metric], 'Dataset': data, 'Metrics': {metric: value}})
    entry = {
        'Name': name,
        'In Collection': FAMILIES[family]['collection']['Name'],
        'Config': f'configs/{name}.py',
        'Metadata': metadata,
        'Results': results,
        'Weights': None
    }
    return dict(family=family, entry=entry)


# ------------------------------------------------------------------ FLOPs


@functools.lru_cache(maxsize=None)
def _get_flops_tool():
    path = osp.join(ROOT, 'tools', 'analysis', 'get_flops.py')
    spec = importlib.util.spec_from_file_location('mmlinattn_get_flops_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmlinattn_get_flops', log_level='WARNING')  # as the tool: no init report
    return module


def measure_flops(name: str, root: str = ROOT) -> float:
    """Whole-model FLOPs of a config in G, as ``tools/analysis/get_flops.py CONFIG`` counts them.

    The model is built as the tool builds it (seeded random weights: a two-stage detector's RoI
    heads run on the proposals the RPN keeps), at the tool's default input for the task, padded
    to the model's size divisor. Rounded as the tool prints: 3 decimals below 100 G, else 1.
    """
    from mmlinattn.analysis.flops import count_model_flops
    tool = _get_flops_tool()
    cfg = copy.deepcopy(load_config(config_path(name, root)))
    task = cfg.default_scope
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # mmseg's deprecation notes
        model = tool.build_model(cfg, task)
    divisor = cfg.model.get('data_preprocessor', {}).get('pad_size_divisor', 1) or 1
    shape = tool._padded(tool.DEFAULT_SHAPES[task], divisor)
    value = count_model_flops(model, task, shape).total / 1e9
    return round(value, 3) if value < 100 else round(value, 1)


def existing_flops(root: str = ROOT) -> Dict[str, float]:
    """FLOPs (G) per config name in the metafiles now on disk (configs without them left out)."""
    flops = {}
    for family in FAMILIES.values():
        rel = f"{family['directory']}/metafile.yml"
        text = _read_text(osp.join(root, rel))
        if text is None:
            continue
        try:
            data = yaml.safe_load(text) or {}
            for model in data.get('Models') or []:
                value = (model.get('Metadata') or {}).get('FLOPs')
                if value is not None:
                    flops[model['Name']] = value
        except (yaml.YAMLError, AttributeError, KeyError, TypeError) as err:
            raise MetafileError(f'{rel} cannot be read for its FLOPs ({type(err).__name__}); '
                                'restore it with git checkout or rebuild it with --flops')
    return flops


def _read_text(path: str) -> Optional[str]:
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return f.read()


# ------------------------------------------------------------------ output


class _IndentedDumper(yaml.SafeDumper):
    """Indents list items under their key, as the OpenMMLab metafiles are written."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _dump(data: dict) -> str:
    return yaml.dump(
        data,
        Dumper=_IndentedDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100)


def _header(family: str) -> str:
    paragraphs = [
        f'{FAMILIES[family]["collection"]["Name"]} configs in the OpenMMLab model-index format. '
        f'Generated by {GENERATOR} from configs/*.py and mmlinattn/analysis/reported.py: do not '
        'edit by hand, rerun it (add --flops to re-measure FLOPs).',
        '',
        'Weights: null everywhere. This project publishes no trained weights (no model was '
        'trained on COCO or ADE20K here), so Results are the accuracies the papers report, not '
        'ours, and empty where none is published (and for the demo configs).',
        FAMILIES[family]['results_note'],
        '',
        'Parameters: M, counted on the built model. FLOPs: G, the whole-model count of '
        'tools/analysis/get_flops.py (1 multiply-add = 1 FLOP, attention matmuls included) at '
        '800x1280 (detection) or 512x2048 (segmentation), the demo configs too. Batch Size: in '
        'total (images per GPU x the GPU count the config docstring assumes).',
    ]
    lines = []
    for paragraph in paragraphs:
        lines += textwrap.wrap(
            paragraph, width=100, initial_indent='# ', subsequent_indent='# ') or ['#']
    return '\n'.join(lines) + '\n'


def render(descriptions: List[dict], flops: Dict[str, float]) -> Dict[str, str]:
    """The text of every metafile and of the model index.

    Args:
        descriptions (list[dict]): :func:`describe` of every config.
        flops (dict): FLOPs (G) by config name; configs without one get no ``FLOPs`` key.

    Returns:
        dict: path relative to the repository root -> file text.
    """
    files = {}
    for family, spec in FAMILIES.items():
        models = []
        for description in descriptions:
            if description['family'] != family:
                continue
            entry = copy.deepcopy(description['entry'])
            if entry['Name'] in flops:
                entry['Metadata']['FLOPs'] = flops[entry['Name']]
            models.append(entry)
        body = _dump({'Collections': [spec['collection']], 'Models': models})
        files[f"{spec['directory']}/metafile.yml"] = _header(family) + '\n' + body
    index = {'Import': [f"{spec['directory']}/metafile.yml" for spec in FAMILIES.values()]}
    files[INDEX_FILE] = (f'# OpenMMLab model index of mmlinattn. Generated by {GENERATOR}.\n' +
                         _dump(index))
    return files


def generate(root: str = ROOT,
             flops: Optional[Dict[str, float]] = None,
             params: Optional[Dict[str, int]] = None) -> Dict[str, str]:
    """The files as the generator writes them without ``--flops``.

    Args:
        root (str): repository root. Defaults to this repository.
        flops (dict, optional): FLOPs (G) by config name; default: those of the metafiles on disk.
        params (dict, optional): parameter counts by config name, if already known.

    Returns:
        dict: path relative to ``root`` -> file text.
    """
    params = params or {}
    descriptions = [describe(name, root, params.get(name)) for name in config_names(root)]
    return render(descriptions, existing_flops(root) if flops is None else flops)


def _write(root: str, files: Dict[str, str]) -> List[str]:
    """Write the files that differ from those on disk; returns their paths."""
    changed = []
    for rel, text in files.items():
        path = osp.join(root, rel)
        if _read_text(path) != text:
            os.makedirs(osp.dirname(path) or '.', exist_ok=True)
            with open(path + '.tmp', 'w', encoding='utf-8') as f:
                f.write(text)
            os.replace(path + '.tmp', path)
            changed.append(rel)
    return changed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        '--flops',
        nargs='*',
        metavar='CONFIG',
        help='measure FLOPs (slow): of every config, or of the named ones (config '
        'stems); the others keep those of the current metafiles')
    mode.add_argument(
        '--check',
        action='store_true',
        help='write nothing; exit 1 if a file differs from what would be written')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        names = config_names(ROOT)
        todo = []
        if args.flops is not None:
            todo = args.flops or names
            unknown = sorted(set(todo) - set(names))
            if unknown:
                raise MetafileError(f"no such config: {', '.join(unknown)} (give stems of "
                                    'configs/*.py, e.g. maskrcnn_ravlt_t_coco)')
        descriptions = [describe(name, ROOT) for name in names]
        flops = existing_flops(ROOT)
        if args.check:
            stale = [
                rel for rel, text in render(descriptions, flops).items()
                if _read_text(osp.join(ROOT, rel)) != text
            ]
            for rel in stale:
                print(f'{rel} is out of date: run python {GENERATOR}', file=sys.stderr)
            return 1 if stale else 0
        changed = set(_write(ROOT, render(descriptions, flops)))
        start = time.time()
        for i, name in enumerate(todo, 1):
            tic = time.time()
            flops[name] = measure_flops(name, ROOT)
            print(
                f'[{i}/{len(todo)}] {name}: {flops[name]} GFLOPs ({time.time() - tic:.0f} s)',
                flush=True)
            changed.update(_write(ROOT, render(descriptions, flops)))  # keep what is measured
        if todo:
            print(f'FLOPs of {len(todo)} configs measured in {time.time() - start:.0f} s')
        missing = [name for name in names if name not in flops]
        if missing:
            print(f"{len(missing)} configs have no FLOPs yet ({', '.join(missing[:3])}"
                  f"{', ...' if len(missing) > 3 else ''}): run with --flops")
    except MetafileError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    for rel in sorted(changed):
        print(f'wrote {rel}')
    if not changed:
        print('metafiles up to date')
    return 0


if __name__ == '__main__':
    sys.exit(main())
