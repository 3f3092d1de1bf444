#!/usr/bin/env python
"""Generate the embedded demo datasets (COCO instance segmentation + ADE20K-layout semantic, and on
request a small ImageFolder classification set for timm).

Usage::

    python tools/make_demo_data.py [--out data/demo] [--seed 0] [--num-train N] [--num-val N]
                                   [--size S] [--overwrite] [--only coco|ade|cls]

writes ``<out>/coco`` (``train/``, ``val/``, ``annotations/instances_{train,val}.json``) and
``<out>/ade`` (``images/{training,validation}``, ``annotations/{training,validation}``);
``--only cls`` writes ``<out>/cls/{train,val}/{circle,square,triangle}/*.png`` (64 px by default).
Re-running with the same arguments is a no-op; a non-empty directory not written by the generator
is refused.

The generator (``mmlinattn/datasets/demo_data.py``) needs only numpy and OpenCV. It is loaded from
its file next to this script, so that generating the data does not import torch/mmengine through
``mmlinattn/__init__.py`` (seconds saved, and it works before the full environment is installed).
"""
import argparse
import importlib.util
import sys
import time
from pathlib import Path

_MODULE_FILE = Path(__file__).resolve().parents[1] / 'mmlinattn' / 'datasets' / 'demo_data.py'


def _load_generator():
    """Return the ``demo_data`` module, from the repository file if present, else the package."""
    if _MODULE_FILE.is_file():
        spec = importlib.util.spec_from_file_location('_mmlinattn_demo_data', _MODULE_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    from mmlinattn.datasets import demo_data  # installed package without the repository layout
    return demo_data


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='data/demo', help='output root (default: data/demo)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default: 0)')
    parser.add_argument('--num-train', type=int, default=64, help='training images per set (64)')
    parser.add_argument('--num-val', type=int, default=16, help='validation images per set (16)')
    parser.add_argument('--size', type=int, help='square image size in pixels (256; cls: 64)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='regenerate even if an identical generated set exists')
    parser.add_argument(
        '--only',
        choices=('coco', 'ade', 'cls'),
        help='generate only one set (cls: only on request)')
    return parser.parse_args(argv)


def _describe(summary: dict) -> str:
    state = 'generated' if summary['generated'] else 'up to date, kept'
    w, h = summary['img_size']
    if summary['kind'] == 'coco':
        parts = [
            f"{s} {v['num_images']} images / {v['num_annotations']} instances"
            for s, v in summary['splits'].items()
        ]
    else:
        parts = [f"{s} {v['num_images']} images" for s, v in summary['splits'].items()]
    return (f"[demo-data] {summary['kind']}: {summary['root']}  "
            f"({state} in {summary['elapsed_s']:.2f} s)\n"
            f"            {', '.join(parts)}; {w}x{h}; seed {summary['seed']}; "
            f"classes {', '.join(summary['classes'])}")


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    demo_data = _load_generator()
    makers = {
        'coco': demo_data.make_coco_demo,
        'ade': demo_data.make_ade_demo,
        'cls': demo_data.make_cls_demo
    }
    kinds = [args.only] if args.only else ['coco', 'ade']
    out = Path(args.out)
    for kind in kinds:
        try:
            summary = makers[kind](
                out / kind,
                num_train=args.num_train,
                num_val=args.num_val,
                img_size=args.size or (64 if kind == 'cls' else 256),
                seed=args.seed,
                overwrite=args.overwrite)
        except (FileExistsError, ValueError, OSError) as err:
            print(f'[demo-data] error: {err}', file=sys.stderr)
            return 1
        print(_describe(summary))
    print(f'[demo-data] done in {time.perf_counter() - t0:.2f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
