"""Export a config's backbone or whole model to ONNX and check it in ONNX Runtime.

Examples::

    # the backbone of a detector config, random weights, checked against PyTorch
    python tools/deployment/export_onnx.py configs/maskrcnn_soft_s_coco.py --out soft_s.onnx \\
        --shape 800 1344 --verify
    # a trained segmentor up to its logits, any batch and image size
    python tools/deployment/export_onnx.py configs/upernet_ravlt_t_demo.py \\
        --checkpoint work_dirs/upernet/iter_200.pth --out upernet.onnx --part model --dynamic \\
        --verify

``--part backbone`` (default) writes input ``input`` ``(B, 3, H, W)`` and outputs ``feat0``,
``feat1``, ...; ``--part model`` the whole network up to its raw head outputs: a segmentor's
``logits``, a one-stage detector's ``cls_score{i}`` / ``bbox_pred{i}``, a two-stage detector's
``neck{i}`` / ``rpn_cls_score{i}`` / ``rpn_bbox_pred{i}`` (NMS and the RoI heads cannot be
exported on this stack: see ``mmlinattn/deployment/onnx.py``). The input is what the config's
data preprocessor produces (normalised; no padding is needed with ``--dynamic``).

``--verify`` runs ONNX Runtime (CPU) on a random input and on a photograph (scikit-image's
``coffee``; with ``--dynamic`` also at sizes other than the export size) and prints the max
absolute and max-normalised errors against PyTorch; it exits with 1 when one exceeds
``--tolerance``. Mistakes (an unknown part, a config without a backbone, a checkpoint that does
not fit, a setting that cannot be exported, onnx / onnxruntime missing) print one line and exit
with 2.
"""
import argparse
import os
import os.path as osp
import sys
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
# mmseg's loss builders warn while a segmentor is built; the losses take no part in export.
warnings.filterwarnings('ignore', message='``build_loss`` would be deprecated')
warnings.filterwarnings('ignore', message='Default ``avg_non_ignore`` is False')
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402

import mmlinattn  # noqa: E402,F401
from mmlinattn.deployment.onnx import (DEFAULT_OPSET, PARTS, TOLERANCE, build_model, export_onnx,
                                       export_spec, require_onnx, simplify_onnx,
                                       verification_inputs, verify_onnx)
from mmlinattn.utils.run_config import build_model_on_meta  # noqa: E402
from mmlinattn.utils.run_config import UserInputError, load_config

EXIT_REFUSED = 2
EXIT_MISMATCH = 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='mmdet / mmseg config file')
    parser.add_argument(
        '--checkpoint',
        help='whole-model or backbone checkpoint; without it the weights are random (seeded)')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=(224, 224),
        metavar=('H', 'W'),
        help='input height and width of the export (default: 224 224)')
    parser.add_argument(
        '--dynamic', action='store_true', help='batch, height and width dynamic in the file')
    parser.add_argument(
        '--part',
        default='backbone',
        help=f'what to export: {" or ".join(PARTS)} (default: backbone)')
    parser.add_argument(
        '--opset', type=int, default=DEFAULT_OPSET, help=f'ONNX opset (default: {DEFAULT_OPSET})')
    parser.add_argument(
        '--verify', action='store_true', help='compare ONNX Runtime with PyTorch (see above)')
    parser.add_argument(
        '--tolerance',
        type=float,
        default=TOLERANCE,
        help=f'largest max-normalised error --verify accepts (default: {TOLERANCE:g})')
    parser.add_argument(
        '--simplify',
        action='store_true',
        help="fold constants and drop dead nodes (onnxscript's optimizer)")
    parser.add_argument(
        '--threads', type=int, help='threads of PyTorch and ONNX Runtime (default: as PyTorch)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random weights')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config entries')
    return parser.parse_args(argv)


def export(args):
    """Check the arguments, build the model, export; returns (spec, cfg)."""
    if args.part not in PARTS:
        raise UserInputError(f'unknown --part {args.part!r}; choose one of {list(PARTS)}')
    if min(args.shape) < 32:
        raise UserInputError(f'--shape {args.shape[0]} {args.shape[1]}: both sides must be at '
                             'least 32 px (stride-32 outputs)')
    require_onnx()
    cfg = load_config(args.config, args.cfg_options)
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise UserInputError(f'--checkpoint {args.checkpoint!r} does not exist')
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.checkpoint is None and isinstance(cfg.get('model'), dict) and cfg.model.get(
            'backbone'):  # with a checkpoint, build_model's check builds the model on meta
        build_model_on_meta(cfg)  # a wrong model key is one line here, not a traceback later
    model, source = build_model(cfg, args.checkpoint, args.seed, whole=args.part != 'backbone')
    print(source)
    spec = export_spec(model, args.part)
    out_dir = osp.dirname(osp.abspath(args.out))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise UserInputError(f'--out {args.out}: cannot create {out_dir}: {err.strerror}') from None
    frozen = export_onnx(spec, args.out, args.shape, dynamic=args.dynamic, opset=args.opset)
    if args.simplify:
        simplify_onnx(args.out)
    return spec, cfg, frozen


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        spec, cfg, frozen = export(args)
    except UserInputError as err:
        print(f'export_onnx: error: {err}', file=sys.stderr)
        return EXIT_REFUSED
    size_mb = osp.getsize(args.out) / 2**20
    axes = '(batch, 3, height, width), all dynamic' if args.dynamic else \
        f'(1, 3, {args.shape[0]}, {args.shape[1]}), static'
    print(f'wrote {args.out} ({size_mb:.1f} MiB, opset {args.opset}): {args.part} -> '
          f'{spec.description}')
    print(f'  input: input {axes}')
    print(f'  outputs: {", ".join(spec.output_names)}')
    for line in frozen:
        print(f'  warning: traced as a constant: {line}')
    if not args.verify:
        return 0
    inputs = verification_inputs(args.shape, args.dynamic, cfg, seed=args.seed)
    results = verify_onnx(spec, args.out, inputs, args.threads)
    print(f'verify (ONNX Runtime CPU vs PyTorch, float32, limit {args.tolerance:g} '
          'max-normalised):')
    for result in results:
        print(f'  {result}')
    worst = max(results, key=lambda r: r.max_normalised)
    if worst.max_normalised > args.tolerance:
        print(
            f'export_onnx: verify failed: {worst.label}: max-normalised error '
            f'{worst.max_normalised:.3e} > {args.tolerance:g}',
            file=sys.stderr)
        return EXIT_MISMATCH
    print('verify: ok')
    return 0


if __name__ == '__main__':
    sys.exit(main())
