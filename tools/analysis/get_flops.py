"""Parameters and FLOPs of a config's backbone and whole model, beside the papers' numbers.

Counts with ``mmengine.analysis.FlopAnalyzer`` plus mmlinattn's handles for the operators it
skips (softmax attention through ``scaled_dot_product_attention``, SOFT's Newton-Schulz inverse):
see ``mmlinattn/analysis/flops.py``. One multiply-add counts as one flop (mmengine's and the
papers' convention). Examples::

    python tools/analysis/get_flops.py configs/maskrcnn_ravlt_t_coco.py
    python tools/analysis/get_flops.py configs/upernet_ravlt_s_ade20k.py --shape 512 512
    python tools/analysis/get_flops.py configs/*_ravlt_*_coco.py --backbone-only

Rows per config: the backbone at 224 x 224 (the papers' ImageNet classifiers are counted there)
and the whole model at ``--shape`` (default 800 x 1280 for detectors, as the RALA README's
1280 x 800; 512 x 2048 for segmentors). "attention" is the part spent in attention products,
which the RALA README's counter (mmcv 1.x, module hooks) did not see; compare its numbers with
"w/o attention".
"""
import argparse
import math
import os.path as osp
import sys
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402

import mmlinattn  # noqa: E402,F401
from mmlinattn.utils.run_config import UserInputError, load_config, task_of  # noqa: E402

DEFAULT_SHAPES = {'mmdet': (800, 1280), 'mmseg': (512, 2048)}
COLUMNS = ('config', 'part', 'input', 'params', 'params (paper)', 'FLOPs', 'attention',
           'w/o attention', 'FLOPs (paper)', 'FLOPs (official code)')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='+', help='one or more config files')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='whole-model input (default: 800 1280 det, 512 2048 seg)')
    parser.add_argument(
        '--backbone-shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        default=(224, 224),
        help='backbone input (default: 224 224)')
    parser.add_argument('--backbone-only', action='store_true', help='skip the whole model')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config entries')
    return parser.parse_args(argv)


def _giga(flops) -> str:
    if flops is None:
        return '-'
    value = flops / 1e9
    return f'{value:.3f}G' if value < 100 else f'{value:.1f}G'


def _mega(params) -> str:
    return '-' if params is None else f'{params / 1e6:.2f}M'


def _padded(shape, divisor):
    return tuple(int(math.ceil(s / divisor) * divisor) for s in shape)


def build_model(cfg, task):
    """The config's model with random weights (seeded), no pretrained file, in eval mode."""
    import torch
    from mmengine.registry import MODELS, init_default_scope

    from mmlinattn.utils.cpu import revert_sync_batchnorm_if_no_cuda
    init_default_scope(task)
    if cfg.model.get('backbone') is not None:
        cfg.model.backbone.init_cfg = None
    if 'pretrained' in cfg.model:
        cfg.model.pretrained = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return revert_sync_batchnorm_if_no_cuda(model).eval()


def rows_for(config, args):
    """Table rows (dicts keyed by :data:`COLUMNS`) for one config, and its unsupported ops."""
    from mmlinattn.analysis.flops import count_backbone_flops, count_model_flops, num_params
    from mmlinattn.analysis.reported import reported_backbone, reported_model
    cfg = load_config(config, args.cfg_options)
    task = task_of(cfg)
    name = osp.splitext(osp.basename(config))[0]
    model = build_model(cfg, task)
    backbone_cfg = cfg.model.backbone
    paper = reported_backbone(backbone_cfg.get('type'), backbone_cfg.get('arch')) or {}
    shape = tuple(args.backbone_shape)
    count = count_backbone_flops(model.backbone, shape)
    other = paper.get('reference_flops_g')
    rows = [
        dict(
            zip(COLUMNS,
                (name, f"backbone {backbone_cfg.get('type')}", f'{shape[0]}x{shape[1]}',
                 _mega(num_params(
                     model.backbone)), f"{paper['params_m']}M (classifier)" if paper else '-',
                 _giga(count.total), _giga(count.attention), _giga(count.total - count.attention),
                 f"{paper['flops_g']}G (classifier, 224)" if paper else '-',
                 f'{other}G' if other else '-')))
    ]
    unsupported = count.unsupported
    if not args.backbone_only:
        shape = tuple(args.shape) if args.shape else DEFAULT_SHAPES[task]
        divisor = cfg.model.get('data_preprocessor', {}).get('pad_size_divisor', 1) or 1
        shape = _padded(shape, divisor)
        count = count_model_flops(model, task, shape)
        paper = reported_model(name) or {}
        paper_flops = paper.get('flops_g')
        if paper_flops is not None and tuple(paper['shape']) != shape:
            paper_flops = f"{paper_flops}G (at {paper['shape'][0]}x{paper['shape'][1]})"
        elif paper_flops is not None:
            paper_flops = f'{paper_flops}G'
        rows.append(
            dict(
                zip(COLUMNS, (name, 'whole model', f'{shape[0]}x{shape[1]}', _mega(
                    num_params(model)), f"{paper['params_m']}M" if paper else '-', _giga(
                        count.total), _giga(count.attention), _giga(count.total - count.attention),
                              paper_flops or '-', '-'))))
        unsupported = unsupported + count.unsupported
    return rows, unsupported


def format_table(rows) -> str:
    widths = [max(len(col), *(len(str(row[col])) for row in rows)) for col in COLUMNS]
    lines = [
        '| ' + ' | '.join(col.ljust(w) for col, w in zip(COLUMNS, widths)) + ' |',
        '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
    ]
    for row in rows:
        lines.append('| ' + ' | '.join(str(row[col]).ljust(w)
                                       for col, w in zip(COLUMNS, widths)) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmlinattn_get_flops', log_level='WARNING')  # no init_weights report
    rows, unsupported = [], None
    try:
        for config in args.configs:
            new_rows, new_unsupported = rows_for(config, args)
            rows += new_rows
            unsupported = new_unsupported if unsupported is None else unsupported + new_unsupported
    except UserInputError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(format_table(rows))
    print('\nFLOPs: 1 multiply-add = 1 flop (mmengine.analysis + mmlinattn handles for '
          'scaled_dot_product_attention and the Newton-Schulz inverse). "attention" = attention '
          'products (matmul, SDPA, Newton inverse).')
    print('Paper: backbones are the ImageNet classifiers at 224x224; RALA detectors at 1280x800 '
          'counted by mmcv 1.x without attention matmuls (compare with "w/o attention"). '
          'Official code: RAVLT fvcore on the released classifier; SOFT all matmuls incl. the '
          '20-step inverse (sources: mmlinattn/analysis/reported.py).')
    if unsupported:
        names = ', '.join(sorted(op.split('::')[-1] for op in unsupported))
        print(f'Traced but not counted (0 flops): {names}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
