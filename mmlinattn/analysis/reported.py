"""Parameter, FLOP and accuracy numbers reported by the papers / official READMEs.

The one place in Python that holds the papers' numbers: ``tools/analysis/get_flops.py`` prints
them beside ours and ``tools/misc/generate_metafiles.py`` writes them into the metafiles.

Sources (the papers, the official READMEs and counts of the released code):

* Backbones: the ImageNet **classifiers** at 224 x 224 (so the parameters include the classifier
  neck and head, which a detection backbone does not have). For RAVLT the table also gives
  fvcore's count of the released code (which, like ours, includes the attention matmuls; the
  README's numbers roughly match a count without them). For SOFT it gives the count of the
  released code with every matmul, the kernels and the 20-step Newton inverse (PyTorch's flop
  counter, in multiply-adds), measured by the spec's author.
* Detectors: RALA README, FLOPs from mmcv 1.x ``get_model_complexity_info`` at 1280 x 800, a
  module-hook counter that does **not** see the attention matmuls. SOFT publishes parameters only.
* Segmentors: RALA README (input size not stated; 512 x 2048 is the usual convention). SOFT
  publishes parameters only.
* Accuracy (:data:`REPORTED_METRICS`): COCO val2017 box / mask AP and ADE20K val (single-scale)
  mIoU from the RALA README (``rala.md`` §3.2-3.3) and, for the SOFT++ (SOFT-*-Norm) backbones,
  the SOFT README (``soft.md`` §4; recipes unpublished, so our SOFT configs follow other
  recipes). Configs without a published result (T variants of the 3x, Cascade and UperNet
  recipes, every SOFT config beyond RetinaNet / Mask R-CNN 1x and UperNet S / M, the demos) have
  no entry.

All FLOPs are multiply-adds ("1 FMA = 1 flop"), in G; parameters in M; AP and mIoU in %.
"""
from typing import Dict, Optional

__all__ = [
    'REPORTED_BACKBONES', 'REPORTED_MODELS', 'REPORTED_METRICS', 'METRIC_NAMES',
    'reported_backbone', 'reported_model', 'reported_metrics'
]

_ALIASES = {'tiny': 't', 'small': 's', 'base': 'b', 'medium': 'm', 'large': 'l', 'huge': 'h'}

#: (backbone type, arch) -> dict(params_m, flops_g, reference_flops_g, reference).
REPORTED_BACKBONES: Dict[tuple, dict] = {
    ('RAVLT', 't'): dict(params_m=15, flops_g=2.4, reference_flops_g=2.626),
    ('RAVLT', 's'): dict(params_m=26, flops_g=4.6, reference_flops_g=4.899),
    ('RAVLT', 'b'): dict(params_m=48, flops_g=9.9, reference_flops_g=10.616),
    ('RAVLT', 'l'): dict(params_m=95, flops_g=16.0, reference_flops_g=17.256),
    ('SOFT', 't'): dict(params_m=13, flops_g=1.9, reference_flops_g=2.22),
    ('SOFT', 's'): dict(params_m=24, flops_g=3.3, reference_flops_g=3.91),
    ('SOFT', 'm'): dict(params_m=45, flops_g=7.2, reference_flops_g=9.07),
    ('SOFT', 'l'): dict(params_m=64, flops_g=11.0, reference_flops_g=13.73),
    ('SOFT', 'h'): dict(params_m=87, flops_g=16.3, reference_flops_g=19.40),
}
_BACKBONE_REFERENCE = {
    'RAVLT': 'fvcore on the released classifier',
    'SOFT': 'released classifier, all matmuls incl. 20-step inverse',
}

#: config name (file stem) -> dict(params_m, flops_g or None, shape (H, W) of the FLOPs or None).
REPORTED_MODELS: Dict[str, dict] = {}


def _add(names, params_m, flops_g=None, shape=None):
    for name in names.split():
        REPORTED_MODELS[name] = dict(params_m=params_m, flops_g=flops_g, shape=shape)


_DET = (800, 1280)
_SEG = (512, 2048)
for _v, _p, _f in (('t', 24, 201), ('s', 34, 244), ('b', 57, 353), ('l', 104, 482)):
    _add(f'retinanet_ravlt_{_v}_coco', _p, _f, _DET)
for _v, _p, _f in (('t', 33, 219), ('s', 44, 262), ('b', 67, 372), ('l', 114, 501)):
    _add(f'maskrcnn_ravlt_{_v}_coco', _p, _f, _DET)
    if _v != 't':  # no T result for 3x
        _add(f'maskrcnn_ravlt_{_v}_coco_3x', _p, _f, _DET)
for _v, _p, _f in (('s', 82, 741), ('b', 105, 851), ('l', 152, 979)):
    _add(f'cascade_maskrcnn_ravlt_{_v}_coco_3x', _p, _f, _DET)
for _v, _p, _f in (('t', 18, 136), ('s', 28, 180), ('b', 51, 292), ('l', 98, 424)):
    _add(f'fpn_ravlt_{_v}_ade20k', _p, _f, _SEG)
for _v, _p, _f in (('s', 55, 937), ('b', 77, 1050), ('l', 125, 1182)):
    _add(f'upernet_ravlt_{_v}_ade20k', _p, _f, _SEG)
for _v, _p in (('t', 23), ('s', 34), ('m', 55), ('l', 74)):
    _add(f'retinanet_soft_{_v}_coco', _p)
for _v, _p in (('t', 33), ('s', 44), ('m', 65), ('l', 84)):
    _add(f'maskrcnn_soft_{_v}_coco', _p)
_add('upernet_soft_s_ade20k', 54)
_add('upernet_soft_m_ade20k', 76)

#: The metric names used in :data:`REPORTED_METRICS` (OpenMMLab metafile spelling).
METRIC_NAMES = ('box AP', 'mask AP', 'mIoU')

#: config name (file stem) -> {metric name: value in %}, for the configs with a published result.
REPORTED_METRICS: Dict[str, Dict[str, float]] = {}


def _metrics(pattern, variants, **columns):
    """Add ``pattern.format(v)`` for each variant, column ``box_ap`` / ``mask_ap`` / ``miou``."""
    names = dict(box_ap='box AP', mask_ap='mask AP', miou='mIoU')
    for i, variant in enumerate(variants.split()):
        REPORTED_METRICS[pattern.format(variant)] = {
            names[key]: values[i]
            for key, values in columns.items()
        }


# RALA README (COCO val2017; ADE20K val).
_metrics('retinanet_ravlt_{}_coco', 't s b l', box_ap=(45.9, 48.3, 49.8, 50.9))
_metrics(
    'maskrcnn_ravlt_{}_coco',
    't s b l',
    box_ap=(47.3, 49.8, 51.2, 52.3),
    mask_ap=(42.7, 44.6, 45.7, 46.4))
_metrics(
    'maskrcnn_ravlt_{}_coco_3x', 's b l', box_ap=(51.4, 52.7, 53.6), mask_ap=(45.5, 46.4, 47.3))
_metrics(
    'cascade_maskrcnn_ravlt_{}_coco_3x',
    's b l',
    box_ap=(54.2, 55.3, 55.6),
    mask_ap=(46.8, 47.7, 48.0))
_metrics('fpn_ravlt_{}_ade20k', 't s b l', miou=(47.9, 49.5, 51.9, 52.6))
_metrics('upernet_ravlt_{}_ade20k', 's b l', miou=(50.7, 52.5, 53.2))
# SOFT README, SOFT-*-Norm (= SOFT++) backbones, 1x schedules (COCO val2017; ADE20K val).
_metrics('retinanet_soft_{}_coco', 't s m l', box_ap=(40.0, 42.8, 44.3, 45.3))
_metrics(
    'maskrcnn_soft_{}_coco',
    't s m l',
    box_ap=(41.2, 43.8, 46.6, 47.0),
    mask_ap=(38.2, 40.1, 42.0, 42.2))
_metrics('upernet_soft_{}_ade20k', 's m', miou=(46.2, 48.0))


def reported_backbone(backbone_type: str, arch) -> Optional[dict]:
    """The classifier's reported numbers for a backbone config, or None (custom arch, unknown).

    Returns:
        dict | None: ``params_m``, ``flops_g`` (paper/README) and ``reference_flops_g`` with its
        description ``reference``.
    """
    if not isinstance(arch, str):
        return None
    arch = _ALIASES.get(arch.lower(), arch.lower())
    numbers = REPORTED_BACKBONES.get((backbone_type, arch))
    if numbers is None:
        return None
    return dict(numbers, reference=_BACKBONE_REFERENCE[backbone_type])


def reported_model(config_name: str) -> Optional[dict]:
    """The reported numbers of a whole detector/segmentor config (by file stem), or None."""
    return REPORTED_MODELS.get(config_name)


def reported_metrics(config_name: str) -> Dict[str, float]:
    """The papers' accuracy for a config (by file stem), e.g. ``{'box AP': 47.3, 'mask AP': 42.7}``.

    Returns:
        dict: metric name (one of :data:`METRIC_NAMES`) -> value in %; empty when the papers
        report no result for this config.
    """
    return dict(REPORTED_METRICS.get(config_name, {}))
