"""The OpenMMLab model index lists every config once, with its measured size and paper numbers.

``model-index.yml`` imports ``configs/{ravlt,soft}/metafile.yml``; both are written by
``tools/misc/generate_metafiles.py`` and must be exactly what it writes from the current configs,
``mmlinattn.analysis.reported`` and models (FLOPs, slow to measure, are taken from the files).
Every model is built once, on the meta device (about 0.1 s each).
"""
import collections
import copy
import importlib.util
import os
import os.path as osp
import warnings

import pytest
import torch
import yaml

from mmlinattn.analysis.reported import reported_metrics

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(name[:-3] for name in os.listdir(osp.join(ROOT, 'configs'))
                 if name.endswith('.py'))
INDEX = 'model-index.yml'
FAMILY_DIRS = {'ravlt': 'configs/ravlt', 'soft': 'configs/soft'}
OFFICIAL_CODE = {
    'configs/ravlt': 'https://github.com/qhfan/RALA',
    'configs/soft': 'https://github.com/fudan-zvg/SOFT'
}
TASKS = {
    'box AP': 'Object Detection',
    'mask AP': 'Instance Segmentation',
    'mIoU': 'Semantic Segmentation'
}
REGENERATE = 'run python tools/misc/generate_metafiles.py'


def _read(rel):
    with open(osp.join(ROOT, rel), encoding='utf-8') as f:
        return f.read()


@pytest.fixture(scope='module')
def generator():
    spec = importlib.util.spec_from_file_location(
        'generate_metafiles', osp.join(ROOT, 'tools', 'misc', 'generate_metafiles.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def index():
    return yaml.safe_load(_read(INDEX))


@pytest.fixture(scope='module')
def metafiles(index):
    """Imported metafile path -> its parsed content."""
    return {rel: yaml.safe_load(_read(rel)) for rel in index['Import']}


@pytest.fixture(scope='module')
def entries(metafiles):
    """Config name -> (metafile path, its ``Models`` entry); names listed twice are left out here
    (``test_every_config_has_exactly_one_entry`` reports them)."""
    return {
        model['Name']: (rel, model)
        for rel, data in metafiles.items()
        for model in data['Models']
    }


@pytest.fixture(scope='module')
def built_params(generator):
    """Parameters of every config's model, built on the meta device by the generator's
    ``meta_model`` (``test_meta_device_builds_count_like_real_models`` checks it) and counted
    here; configs with the same model config, such as 1x and 3x, share one build."""
    counts, by_model = {}, {}
    for name in CONFIGS:
        cfg = generator.load_config(generator.config_path(name))  # memoised mmdet::/mmseg:: bases
        key = (cfg.default_scope, repr(cfg.model.to_dict()))
        if key not in by_model:
            model = generator.meta_model(cfg)
            assert {p.device.type for p in model.parameters()} == {'meta'}, name
            by_model[key] = sum(p.numel() for p in model.parameters())
        counts[name] = by_model[key]
    return counts


def test_index_imports_exactly_the_metafiles(index):
    found = sorted(
        osp.relpath(osp.join(root, 'metafile.yml'), ROOT)
        for root, _, files in os.walk(osp.join(ROOT, 'configs')) if 'metafile.yml' in files)
    assert sorted(index['Import']) == found == sorted(f'{d}/metafile.yml'
                                                      for d in FAMILY_DIRS.values())
    assert len(index['Import']) == len(set(index['Import']))
    assert set(index) == {'Import'}
    for rel in found:  # configs stay flat in configs/: the family folders hold the metafile only
        assert os.listdir(osp.join(ROOT, osp.dirname(rel))) == ['metafile.yml'], rel


def test_collections(metafiles):
    for rel, data in metafiles.items():
        (collection, ) = data['Collections']
        assert collection['Name']
        assert collection['Metadata']['Architecture'], rel
        assert collection['Paper']['URL'].startswith('https://arxiv.org/abs/')
        assert collection['Paper']['Title']
        assert collection['Code']['URL'] == OFFICIAL_CODE[osp.dirname(rel)]
        assert osp.isfile(osp.join(ROOT, collection['README']))
        assert {model['In Collection'] for model in data['Models']} == {collection['Name']}


def test_every_config_has_exactly_one_entry(metafiles):
    names = collections.Counter(model['Name'] for data in metafiles.values()
                                for model in data['Models'])
    missing = sorted(set(CONFIGS) - set(names))
    unknown = sorted(set(names) - set(CONFIGS))
    twice = sorted(name for name, count in names.items() if count > 1)
    assert not (missing or unknown or twice), (
        f'no entry: {missing}; no such config: {unknown}; listed twice: {twice}; {REGENERATE}')
    for rel, data in metafiles.items():
        family = [key for key, directory in FAMILY_DIRS.items() if rel.startswith(directory)][0]
        wrong = [m['Name'] for m in data['Models'] if f'_{family}_' not in m['Name']]
        assert not wrong, f'{rel} lists configs of another family: {wrong}'


def test_entries_say_what_the_index_needs(entries):
    problems = []
    for name, (rel, entry) in sorted(entries.items()):
        meta = entry.get('Metadata') or {}
        if entry.get('Config') != f'configs/{name}.py' or not osp.isfile(
                osp.join(ROOT, entry['Config'])):
            problems.append(f'{name}: Config {entry.get("Config")!r}')
        if 'Weights' not in entry or entry['Weights'] is not None:
            problems.append(f'{name}: Weights must be present and null (no published weights)')
        if ('Epochs' in meta) == ('Iterations' in meta):
            problems.append(f'{name}: needs Epochs or Iterations')
        for key in ('Training Data', 'Training Techniques', 'Batch Size', 'Parameters'):
            if not meta.get(key):
                problems.append(f'{name}: no Metadata {key!r}')
    assert not problems, '\n'.join(problems)


def test_every_entry_has_flops(entries):
    missing = sorted(name for name, (_, entry) in entries.items()
                     if not isinstance(entry['Metadata'].get('FLOPs'), (int, float))
                     or entry['Metadata']['FLOPs'] <= 0)
    assert not missing, (f'{len(missing)} entries have no FLOPs; run python '
                         f"tools/misc/generate_metafiles.py --flops {' '.join(missing)}")


def test_parameters_are_those_of_the_built_models(entries, built_params):
    wrong = {
        name: (entry['Metadata'].get('Parameters'), round(built_params[name] / 1e6, 4))
        for name, (_, entry) in entries.items()
        if name in built_params and abs(entry['Metadata'].get('Parameters', 0) -
                                        built_params[name] / 1e6) > 0.01
    }
    assert not wrong, f'metafile vs built model (M): {wrong}; {REGENERATE}'


def test_paper_metrics_are_those_of_mmlinattn_analysis_reported(entries):
    for name, (_, entry) in sorted(entries.items()):
        metrics = {}
        for result in entry['Results']:
            assert result['Dataset'] == entry['Metadata']['Training Data'], name
            for metric, value in result['Metrics'].items():
                assert result['Task'] == TASKS[metric], (name, result)
                assert metric not in metrics, (name, metric)
                metrics[metric] = value
        assert metrics == reported_metrics(name), f'{name}: {REGENERATE}'


def test_metafiles_are_what_the_generator_writes(generator, built_params):
    files = generator.generate(params=built_params)
    assert sorted(files) == sorted([INDEX, *(f'{d}/metafile.yml' for d in FAMILY_DIRS.values())])
    stale = [
        rel for rel, text in files.items()
        if not osp.isfile(osp.join(ROOT, rel)) or _read(rel) != text
    ]
    assert not stale, f'{stale} differ from what the generator writes: {REGENERATE}'


def test_meta_device_builds_count_like_real_models(generator):
    """The meta-device build (initialisers skipped) has the parameters of a real CPU build."""
    from mmengine.registry import MODELS, DefaultScope
    for name in ('maskrcnn_ravlt_t_demo', 'upernet_ravlt_t_demo', 'retinanet_soft_t_coco'):
        cfg = generator.load_config(generator.config_path(name))
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone.init_cfg = None
        with DefaultScope.overwrite_default_scope(cfg.default_scope), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            model = MODELS.build(model_cfg)
        meta = generator.meta_model(cfg)
        assert [(n, p.shape) for n, p in meta.named_parameters()] == \
            [(n, p.shape) for n, p in model.named_parameters()], name
        assert generator.count_params(cfg) == sum(p.numel() for p in model.parameters()), name
    assert torch.nn.init.kaiming_uniform_.__name__ == 'kaiming_uniform_'  # restored
