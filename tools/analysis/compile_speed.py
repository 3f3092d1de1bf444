"""Eager against ``torch.compile`` backbone forward, side by side in one process.

For each backbone (names of ``tools/analysis/benchmark.py``: ``RAVLT-S``, ``SOFT++-S (configs)``,
``Swin-T``, ...) and input size: the eager forward, the first compiled call (compilation
included) and the compiled forward after it, float32, batch 1, no gradient; medians of
``--repeats`` calls after one warm-up. Ratios are against the same run's eager time and against
the compiled peer (``--peer``, default Swin-T). Results go to ``--out`` (``results.md``).

Example::

    python tools/analysis/compile_speed.py --models 'RAVLT-S' 'SOFT++-S (configs)' Swin-T \\
        --sizes 800x1344 --out work_dirs/compile_speed
"""
import argparse
import os
import os.path as osp
import statistics
import sys
import time
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mmlinattn.analysis.benchmark import BACKBONES, build_backbone, time_call  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--models',
        nargs='+',
        default=['RAVLT-S', 'SOFT++-S (configs)', 'Swin-T'],
        help='backbone names (see tools/analysis/benchmark.py)')
    parser.add_argument('--sizes', nargs='+', default=['800x1344'], help='HxW input sizes')
    parser.add_argument('--peer', default='Swin-T', help='the compiled row the ratios compare')
    parser.add_argument('--backend', default='inductor', help='torch.compile backend')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', default=osp.join('work_dirs', 'compile_speed'))
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in BACKBONES]
    if unknown:
        parser.error(f'unknown --models {unknown}; choose from {sorted(BACKBONES)}')
    return args


def measure(name, size, backend, repeats):
    """``(eager s, first compiled call s, compiled s)`` of one backbone at one size."""
    model = build_backbone(BACKBONES[name], torch.device('cpu'))
    model.eval()  # not chained: mmdet's SwinTransformer.train() returns None
    image = torch.randn(1, 3, *size)
    with torch.no_grad():
        eager = statistics.median(time_call(lambda: model(image), 'cpu', 1, repeats))
        torch._dynamo.reset()
        compiled = torch.compile(model, backend=backend, dynamic=False)
        start = time.perf_counter()
        compiled(image)
        first = time.perf_counter() - start
        steady = statistics.median(time_call(lambda: compiled(image), 'cpu', 1, repeats))
    return eager, first, steady


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split('x')) for s in args.sizes]
    rows = {}
    for size in sizes:
        for name in args.models:
            rows[name, size] = measure(name, size, args.backend, args.repeats)
            eager, first, steady = rows[name, size]
            print(
                f'{name} {size[0]}x{size[1]}: eager {eager:.3f} s, first compiled call '
                f'{first:.1f} s, compiled {steady:.3f} s ({steady / eager:.2f}x eager)',
                flush=True)
    lines = [
        f'# Eager vs torch.compile ({args.backend}) backbone forward, float32, batch 1, CPU '
        f'({torch.get_num_threads()} threads), torch {torch.__version__}', '',
        '| backbone | size | eager (s) | first compiled call (s) | compiled (s) | compiled / '
        f'eager | compiled / compiled {args.peer} |', '|---|---|---|---|---|---|---|'
    ]
    for (name, size), (eager, first, steady) in rows.items():
        peer = rows.get((args.peer, size))
        vs_peer = f'{steady / peer[2]:.2f}' if peer else '-'
        lines.append(f'| {name} | {size[0]}x{size[1]} | {eager:.3f} | {first:.1f} | '
                     f'{steady:.3f} | {steady / eager:.2f} | {vs_peer} |')
    os.makedirs(args.out, exist_ok=True)
    with open(osp.join(args.out, 'results.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print(f'wrote {osp.join(args.out, "results.md")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
