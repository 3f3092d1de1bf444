"""Every config in configs/ loads, follows the naming scheme and its recipe, and builds its model.

New configs are picked up by the glob. Names: ``{head}_{backbone}_{variant}_{coco|ade20k}[_3x].py``
or ``{head}_{backbone}_{variant}_demo.py``. Every model is built on the meta device (about 0.3 s
each; the smallest variant of each family with every head in the default suite, every config in
the slow one) and its parameter count compared with the papers; one detector and one segmentor
run end to end on a random image.
"""
import ast
import copy
import functools
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmlinattn.archs import ARCH_TABLES

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs'
CONFIGS = sorted(path.stem for path in CONFIG_DIR.glob('*.py'))
TABLES = {table.backbone.lower(): table for table in ARCH_TABLES.values()}  # 'ravlt', 'soft'
NAME_RE = re.compile(r'^(?P<head>maskrcnn|cascade_maskrcnn|retinanet|upernet|fpn)_'
                     rf'(?P<backbone>{"|".join(TABLES)})_(?P<variant>[a-z])_'
                     r'(?:(?P<dataset>coco|ade20k)(?P<schedule>_3x)?|demo)$')
DET_HEADS = ('maskrcnn', 'cascade_maskrcnn', 'retinanet')

SOFT_DROP_PATH = 0.1  # PVT-style recipe
SOFT_MAX_LANDMARKS = 256

# AdamW (lr, weight decay, which backbone parameters get no decay; see expected_no_decay) per
# backbone and {head}[_3x]. RAVLT: the official RALA recipes; SOFT: PVT-style (none is official).
OPTIM = {
    'ravlt': {
        'maskrcnn': (1e-4, 0.05, 'official_norm_key'),
        'maskrcnn_3x': (1e-4, 0.05, 'official_norm_key'),
        'cascade_maskrcnn_3x': (1e-4, 0.05, 'norms'),
        'retinanet': (1e-4, 1e-4, 'none'),
        'upernet': (6e-5, 0.01, 'official_norm_key'),
        'fpn': (1e-4, 1e-4, 'none'),
    },
    'soft': {
        'maskrcnn': (2e-4, 1e-4, 'none'),
        'maskrcnn_3x': (1e-4, 0.05, 'norms_and_tables'),
        'cascade_maskrcnn_3x': (1e-4, 0.05, 'norms_and_tables'),
        'retinanet': (1e-4, 1e-4, 'none'),
        'upernet': (6e-5, 0.01, 'norms_and_tables'),
        'fpn': (1e-4, 1e-4, 'none'),
    },
}

# Parameter counts (millions) in the official READMEs (RALA; SOFT for the SOFT-*-Norm models).
PAPER_PARAMS_M = {
    'retinanet_ravlt_t_coco': 24,
    'retinanet_ravlt_s_coco': 34,
    'retinanet_ravlt_b_coco': 57,
    'retinanet_ravlt_l_coco': 104,
    'maskrcnn_ravlt_t_coco': 33,
    'maskrcnn_ravlt_s_coco': 44,
    'maskrcnn_ravlt_b_coco': 67,
    'maskrcnn_ravlt_l_coco': 114,
    'maskrcnn_ravlt_s_coco_3x': 44,
    'maskrcnn_ravlt_b_coco_3x': 67,
    'maskrcnn_ravlt_l_coco_3x': 114,
    'cascade_maskrcnn_ravlt_s_coco_3x': 82,
    'cascade_maskrcnn_ravlt_b_coco_3x': 105,
    'cascade_maskrcnn_ravlt_l_coco_3x': 152,
    'fpn_ravlt_t_ade20k': 18,
    'fpn_ravlt_s_ade20k': 28,
    'fpn_ravlt_b_ade20k': 51,
    'fpn_ravlt_l_ade20k': 98,
    'upernet_ravlt_s_ade20k': 55,
    'upernet_ravlt_b_ade20k': 77,
    'upernet_ravlt_l_ade20k': 125,
    'retinanet_soft_t_coco': 23,
    'retinanet_soft_s_coco': 34,
    'retinanet_soft_m_coco': 55,
    'retinanet_soft_l_coco': 74,
    'maskrcnn_soft_t_coco': 33,
    'maskrcnn_soft_s_coco': 44,
    'maskrcnn_soft_m_coco': 65,
    'maskrcnn_soft_l_coco': 84,
    'upernet_soft_s_ade20k': 54,
    'upernet_soft_m_ade20k': 76,
}


@pytest.fixture(scope='module', autouse=True)
def _one_thread():
    """Tiny inputs and weight initialisation gain nothing from threads, and on a shared CPU the
    OpenMP threads spin against other processes (measured: RAVLT-T at 128 x 160 took 2.3 s with 2
    threads next to a busy process, 0.05 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module', autouse=True)
def _fast_external_bases():
    """Memoise the YAML reads behind ``mmdet::`` / ``mmseg::`` bases.

    mmengine re-reads every metafile of the package (~400 YAML files, ~0.2 s) to resolve each such
    base, which would dominate this module's run time. The result only depends on installed files.
    """
    import mmengine.config.utils as cfg_utils
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cfg_utils, 'load', functools.lru_cache(maxsize=None)(cfg_utils.load))
        yield


def parse_name(name):
    match = NAME_RE.match(name)
    assert match, (f'configs/{name}.py does not follow the naming scheme '
                   '{head}_{backbone}_{variant}_{coco|ade20k}[_3x].py or '
                   '{head}_{backbone}_{variant}_demo.py')
    return match.groupdict()


@functools.lru_cache(maxsize=None)
def _load(name):
    from mmengine.config import Config
    return Config.fromfile(str(CONFIG_DIR / f'{name}.py'))


def load(name):
    """A private copy of the config, with the backbone's pretrained file switched off."""
    cfg = copy.deepcopy(_load(name))
    cfg.model.backbone.init_cfg = None
    return cfg


def registry(cfg):
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS


def recipe_configs():
    return [name for name in CONFIGS if NAME_RE.match(name) and not name.endswith('_demo')]


# ------------------------------------------------------------------ every config


@pytest.mark.parametrize('name', CONFIGS)
def test_name_follows_scheme(name):
    parts = parse_name(name)
    if parts['dataset']:
        assert (parts['head'] in DET_HEADS) == (parts['dataset'] == 'coco'), name


@pytest.mark.parametrize('name', CONFIGS)
def test_loads_with_custom_imports_and_docstring(name):
    cfg = _load(name)
    assert 'mmlinattn' in cfg.custom_imports['imports']
    assert cfg.custom_imports.get('allow_failed_imports') is False
    source = (CONFIG_DIR / f'{name}.py').read_text()
    assert "custom_imports = dict(imports=['mmlinattn']" in source, \
        f'configs/{name}.py should set custom_imports itself, not only inherit it'
    assert ast.get_docstring(ast.parse(source)), f'configs/{name}.py needs a module docstring'
    parts = parse_name(name)
    assert cfg.default_scope == ('mmdet' if parts['head'] in DET_HEADS else 'mmseg')
    assert cfg.model.backbone.type == parts['backbone'].upper()


# ------------------------------------------------------------------ the recipes


@pytest.mark.parametrize('name', recipe_configs())
def test_backbone_variant_and_pretrained_placeholder(name):
    parts = parse_name(name)
    table = TABLES[parts['backbone']]
    backbone = _load(name).model.backbone
    assert backbone.arch == parts['variant']
    arch = registry(_load(name)).get(backbone.type).parse_arch(backbone.arch)
    assert arch == table.get(parts['variant'])  # the variant its file name says
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.norm_cfg == dict(type='SyncBN', requires_grad=True)
    if parts['backbone'] == 'ravlt':
        # the variant's official rate, as in every released det/seg config
        assert backbone.drop_path_rate == table.get(parts['variant'])['drop_path_rate']
        checkpoint = f"checkpoints/ravlt_{parts['variant']}_in1k.pth"
    else:
        assert backbone.drop_path_rate == SOFT_DROP_PATH
        assert backbone.normalization == 'core' and backbone.max_landmarks == SOFT_MAX_LANDMARKS
        assert backbone.pinv_mode == 'shifted_inverse'
        checkpoint = f"checkpoints/soft_norm_{parts['variant']}_in1k.pth"
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=checkpoint)
    docstring = ast.get_docstring(ast.parse((CONFIG_DIR / f'{name}.py').read_text()))
    for needed in (checkpoint, 'tools/convert_checkpoint.py', 'Batch:', 'Paper'):
        assert needed in docstring, f'the docstring of configs/{name}.py should mention {needed}'
    if parts['backbone'] == 'soft':
        assert 'No official recipe' in docstring


@pytest.mark.parametrize('name', recipe_configs())
def test_heads_data_and_schedule(name):
    parts = parse_name(name)
    cfg = _load(name)
    model = cfg.model
    if parts['dataset'] == 'coco':
        assert cfg.train_dataloader.dataset.data_root == 'data/coco/'
        assert cfg.val_dataloader.dataset.data_root == 'data/coco/'
        heads = {
            'retinanet': lambda: [model.bbox_head],
            'maskrcnn': lambda: [model.roi_head.bbox_head, model.roi_head.mask_head],
            'cascade_maskrcnn': lambda: [*model.roi_head.bbox_head, model.roi_head.mask_head]
        }[parts['head']]()
        assert [head.num_classes for head in heads] == [80] * len(heads)
        batch = 1 if name == 'maskrcnn_ravlt_l_coco_3x' else 2  # official L 3x: 1 per GPU
        assert cfg.train_dataloader.batch_size == batch
        assert cfg.auto_scale_lr.base_batch_size == 8 * batch  # 8 GPUs assumed
        epochs, steps = (36, [27, 33]) if parts['schedule'] else (12, [8, 11])
        assert cfg.train_cfg.max_epochs == epochs
        warmup, step = cfg.param_scheduler
        assert (warmup.type, warmup.start_factor, warmup.end, warmup.by_epoch) == \
            ('LinearLR', 0.001, 500, False)
        assert (step.type, step.milestones, step.end) == ('MultiStepLR', steps, epochs)
        transforms = [t.type for t in cfg.train_dataloader.dataset.pipeline]
        assert ('RandomChoice' in transforms) == bool(parts['schedule'])
        assert [tuple(t.scale) for t in cfg.test_dataloader.dataset.pipeline
                if t.type == 'Resize'] == [(1333, 800)]
        # RAVLT's stride-4 output norm is unused when the FPN starts at stride 8 (RetinaNet).
        unused = parts['head'] == 'retinanet' and parts['backbone'] == 'ravlt'
        assert cfg.get('find_unused_parameters', False) == unused
    else:
        assert cfg.train_dataloader.dataset.data_root == 'data/ade/ADEChallengeData2016'
        assert cfg.model.pretrained is None
        assert model.decode_head.num_classes == 150
        if 'auxiliary_head' in model:
            assert model.auxiliary_head.num_classes == 150
        assert cfg.train_dataloader.batch_size == 2
        assert tuple(model.data_preprocessor.size) == (512, 512)
        if parts['head'] == 'upernet':
            assert cfg.train_cfg.max_iters == 160000
            warmup, poly = cfg.param_scheduler
            assert (warmup.type, warmup.start_factor, warmup.end) == ('LinearLR', 1e-6, 1500)
            assert (poly.type, poly.power, poly.eta_min, poly.begin, poly.end) == \
                ('PolyLR', 1.0, 0.0, 0, 160000)
            assert cfg.train_cfg.val_interval == 8000
            assert cfg.default_hooks.checkpoint.save_best == 'mIoU'
        else:
            assert cfg.train_cfg.max_iters == 80000
            (poly, ) = cfg.param_scheduler
            assert (poly.type, poly.power, poly.end) == ('PolyLR', 0.9, 80000)
            assert poly.eta_min == (1e-6 if parts['backbone'] == 'ravlt' else 0.0)
    # Every transform of the pipelines exists in the config's scope with these arguments.
    from mmengine.dataset import Compose
    registry(cfg)
    Compose(cfg.train_dataloader.dataset.pipeline)
    Compose(cfg.test_dataloader.dataset.pipeline)


def expected_no_decay(backbone, rule):
    """Names of the backbone parameters that the recipe exempts from weight decay."""
    norms = {
        f'{module_name}.{param_name}'
        for module_name, module in backbone.named_modules()
        if isinstance(module, (nn.LayerNorm, _BatchNorm))
        for param_name, _ in module.named_parameters(recurse=False)
    }
    if rule == 'none':
        return set()
    if rule == 'norms':
        return norms
    if rule == 'official_norm_key':  # all norms but the stem BNs (see the configs' comment)
        return {name for name in norms if not name.startswith('stem.')}
    assert rule == 'norms_and_tables'
    tables = {
        name
        for name, _ in backbone.named_parameters()
        if name.split('.')[-1] in ('pos_embed', 'cls_pos_embed', 'cls_token')
    }
    assert tables, 'SOFT has position tables and a cls token'
    return norms | tables


@pytest.mark.parametrize('name', recipe_configs())
def test_optimizer_and_weight_decay_groups(name):
    from mmengine.optim import build_optim_wrapper
    parts = parse_name(name)
    cfg = load(name)
    lr, weight_decay, rule = OPTIM[parts['backbone']][parts['head'] + (parts['schedule'] or '')]
    optimizer = cfg.optim_wrapper.optimizer
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert (optimizer.type, optimizer.lr, tuple(optimizer.betas), optimizer.weight_decay) == \
        ('AdamW', lr, (0.9, 0.999), weight_decay)
    assert set(optimizer) == {'type', 'lr', 'betas', 'weight_decay'}  # nothing left from SGD
    assert cfg.optim_wrapper.get('clip_grad') is None

    # Decay per parameter, on a stand-in model holding only the backbone (same names as in the
    # detector / segmentor). Parameter names do not depend on the variant, so the smallest one of
    # the family keeps this fast.
    holder = nn.Module()
    holder.backbone = registry(cfg).build(dict(cfg.model.backbone, arch='t'))
    wrapper = build_optim_wrapper(holder, cfg.optim_wrapper)
    decay = {
        id(p): group['weight_decay']
        for group in wrapper.optimizer.param_groups
        for p in group['params']
    }
    no_decay = {name for name, p in holder.backbone.named_parameters() if decay[id(p)] == 0}
    decayed = {
        name
        for name, p in holder.backbone.named_parameters() if decay[id(p)] == weight_decay
    }
    assert no_decay == expected_no_decay(holder.backbone, rule)
    assert len(no_decay) + len(decayed) == len(list(holder.backbone.parameters()))
    if parts['backbone'] == 'ravlt':  # layer scales keep their decay, as in the official runs
        assert all(name in decayed for name, _ in holder.backbone.named_parameters()
                   if 'layer_scale' in name)


# ------------------------------------------------------------------ full models

#: The default suite builds every head with the smallest variant of each family (and the demos);
#: the slow suite builds every config.
BUILT_FAST = [n for n in CONFIGS if NAME_RE.match(n) and NAME_RE.match(n)['variant'] == 't']


@pytest.mark.parametrize(
    'name', [pytest.param(n, marks=() if n in BUILT_FAST else pytest.mark.slow) for n in CONFIGS])
def test_model_builds(name):
    """The whole detector / segmentor builds (on the meta device: shapes and counts without the
    memory and the random initialisation of the large variants)."""
    cfg = load(name)
    with torch.device('meta'):
        model = registry(cfg).build(cfg.model)
    backbone = model.backbone
    assert type(backbone).__name__ == cfg.model.backbone.type
    # One bad image must never poison a training batch (see BATCH_COUPLED_PINV_MODES).
    from mmlinattn.ops.soft import BATCH_COUPLED_PINV_MODES
    assert getattr(backbone, 'pinv_mode', None) not in BATCH_COUPLED_PINV_MODES, name
    channels = [backbone.embed_dims[i] for i in backbone.out_indices]
    consumer = model.neck if getattr(model, 'neck', None) is not None else model.decode_head
    assert list(consumer.in_channels) == channels
    if getattr(model, 'auxiliary_head', None) is not None:
        aux = model.auxiliary_head
        assert aux.in_channels == backbone.embed_dims[aux.in_index]
    if not parse_name(name)['dataset']:
        return
    assert any(isinstance(m, nn.SyncBatchNorm) for m in backbone.modules())
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    if name in PAPER_PARAMS_M:  # the papers round to whole millions
        assert abs(params_m - PAPER_PARAMS_M[name]) <= 0.6, (name, params_m)


# ------------------------------------------------------------------ end to end


def eval_model(cfg):
    """Build for CPU inference, as ``init_detector`` / ``init_model`` do (SyncBN -> BN)."""
    from mmengine.model import revert_sync_batchnorm
    model = registry(cfg).build(cfg.model)
    return revert_sync_batchnorm(model).eval()


def test_detector_forward_end_to_end():
    from mmdet.structures import DetDataSample
    torch.manual_seed(0)
    cfg = load('maskrcnn_ravlt_t_coco')
    # Random weights score every class alike: a zero threshold keeps boxes for the mask branch.
    # Fewer proposals and detections than on COCO keep the RoI heads cheap on a CPU.
    cfg.model.test_cfg.rpn.update(nms_pre=200, max_per_img=100)
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=10)
    model = eval_model(cfg)
    height, width = 128, 160
    meta = dict(
        img_id=0,
        img_path='random.jpg',
        ori_shape=(height, width),
        img_shape=(height, width),
        scale_factor=(1.0, 1.0))
    data = dict(
        inputs=[torch.randint(0, 256, (3, height, width), dtype=torch.uint8)],
        data_samples=[DetDataSample(metainfo=meta)])
    with torch.no_grad():
        (result, ) = model.test_step(data)
    pred = result.pred_instances
    num = len(pred)
    assert 0 < num <= 10
    assert pred.bboxes.shape == (num, 4) and pred.scores.shape == (num, )
    assert pred.labels.min() >= 0 and pred.labels.max() < 80
    assert pred.masks.shape == (num, height, width) and pred.masks.dtype == torch.bool
    assert torch.isfinite(pred.bboxes).all() and torch.isfinite(pred.scores).all()


def test_segmentor_forward_end_to_end():
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    model = eval_model(load('upernet_soft_t_ade20k'))
    height, width = 128, 160
    meta = dict(
        img_path='random.jpg',
        ori_shape=(height, width),
        img_shape=(height, width),
        pad_shape=(height, width))
    data = dict(
        inputs=[torch.randint(0, 256, (3, height, width), dtype=torch.uint8)],
        data_samples=[SegDataSample(metainfo=meta)])
    with torch.no_grad():
        (result, ) = model.test_step(data)
    assert result.seg_logits.data.shape == (150, height, width)
    assert torch.isfinite(result.seg_logits.data).all()
    labels = result.pred_sem_seg.data
    assert labels.shape == (1, height, width)
    assert labels.min() >= 0 and labels.max() < 150
