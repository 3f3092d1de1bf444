"""Where a backbone's forward time goes: torch.profiler's operator table, for the benchmark rows.

Builds the named rows of ``tools/analysis/benchmark.py`` (same seeds, same settings), runs one
untimed forward (eval, no grad) and one profiled forward per input size, and writes the operators
by self CPU time, grouped by what they are (matmul-like, convolution, elementwise and
normalisation, memory movement, linear algebra), next to the call's wall time::

    python tools/analysis/profile_backbone.py --models 'SOFT++-S (configs)' Swin-T \\
        --sizes 800x1344 2048x2048 --out docs/benchmarks/performance2/profile.md

The groups answer "what would close the gap": a row whose time is mostly matmul-like at a low
achieved rate is bound by the matrix sizes; one whose time is elementwise and memory movement is
bound by memory traffic, which only fusion (fewer passes over the activations) reduces.
"""
import argparse
import datetime
import os
import os.path as osp
import sys
import time
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mmlinattn.analysis import benchmark as bm  # noqa: E402

#: Operator name -> group. Anything not listed is 'other'.
GROUPS = {
    'matmul-like': ('aten::mm', 'aten::bmm', 'aten::addmm', 'aten::baddbmm', 'aten::matmul',
                    'aten::linear', 'aten::_scaled_dot_product_flash_attention_for_cpu',
                    'aten::_scaled_dot_product_attention_math'),
    'convolution': ('aten::mkldnn_convolution', 'aten::_convolution', 'aten::convolution',
                    'aten::conv2d', 'aten::thnn_conv2d', 'aten::_slow_conv2d_forward',
                    'aten::_nnpack_spatial_convolution', 'aten::cudnn_convolution'),
    'linear algebra': ('aten::linalg_cholesky_ex', 'aten::cholesky_inverse', 'aten::linalg_eigh',
                       'aten::linalg_inv_ex', 'aten::linalg_solve_ex'),
    'elementwise / norm':
    ('aten::exp', 'aten::mul', 'aten::add', 'aten::sub', 'aten::div', 'aten::gelu',
     'aten::native_layer_norm', 'aten::native_batch_norm',
     'aten::_native_batch_norm_legit_no_training', 'aten::softmax', 'aten::_softmax', 'aten::sum',
     'aten::pow', 'aten::sqrt', 'aten::rsqrt', 'aten::mean', 'aten::amax', 'aten::clamp',
     'aten::sigmoid', 'aten::tanh', 'aten::neg', 'aten::where', 'aten::add_', 'aten::mul_',
     'aten::div_', 'aten::sub_', 'aten::sin', 'aten::cos', 'aten::adaptive_avg_pool2d',
     'aten::_adaptive_avg_pool2d', 'aten::avg_pool2d', 'aten::gelu_'),
    'memory movement':
    ('aten::copy_', 'aten::clone', 'aten::contiguous', 'aten::cat', 'aten::_to_copy', 'aten::roll',
     'aten::constant_pad_nd', 'aten::fill_', 'aten::zero_', 'aten::empty', 'aten::index',
     'aten::upsample_bicubic2d', 'aten::_upsample_bicubic2d_aa', 'aten::upsample_bilinear2d',
     'aten::grid_sampler_2d', 'aten::masked_fill', 'aten::pad'),
}


def group_of(name: str) -> str:
    for group, names in GROUPS.items():
        if name in names:
            return group
    return 'other'


def parse_size(text):
    h, w = text.lower().split('x')
    return int(h), int(w)


def profile_forward(model, shape, top=12):
    """Wall time of one forward and its operators by self CPU time.

    Returns:
        tuple[float, list[tuple[str, float]], dict[str, float]]: seconds of the profiled call,
        the ``top`` operators ``(name, self seconds)``, and self seconds per group.
    """
    x = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(x)  # warm-up
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            model(x)
            wall = time.perf_counter() - start
    ops = [(e.key, e.self_cpu_time_total * 1e-6) for e in prof.key_averages()]
    ops.sort(key=lambda kv: kv[1], reverse=True)
    groups = {}
    for name, seconds in ops:
        groups[group_of(name)] = groups.get(group_of(name), 0.0) + seconds
    return wall, ops[:top], groups


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', nargs='+', required=True, help=f'rows of {sorted(bm.BACKBONES)}')
    p.add_argument('--sizes', nargs='+', type=parse_size, required=True, help='HxW inputs')
    p.add_argument('--top', type=int, default=12, help='operators listed per point')
    p.add_argument('--out', help='markdown file to write (default: print only)')
    args = p.parse_args(argv)
    unknown = [m for m in args.models if m not in bm.BACKBONES]
    if unknown:
        p.error(f'unknown model(s) {unknown}; choose from {sorted(bm.BACKBONES)}')
    lines = [
        f'# Forward profiles ({datetime.datetime.now():%Y-%m-%d %H:%M}, torch {torch.__version__},'
        f' {torch.get_num_threads()} threads, batch 1, eval, no grad)', '',
        'Self CPU time per operator group and the largest operators of one profiled forward '
        '(after one warm-up; the profiler adds a few percent). Generated by '
        '`tools/analysis/profile_backbone.py`.', ''
    ]
    for name in args.models:
        model = bm.build_backbone(bm.BACKBONES[name], torch.device('cpu'))
        model.eval()  # mmdet's Swin returns None from train()
        for shape in args.sizes:
            wall, top, groups = profile_forward(model, shape, args.top)
            total = sum(groups.values()) or 1.0
            lines += [
                f'## {name}, {shape[0]}x{shape[1]}: {wall:.2f} s', '', '| group | self s | share |',
                '|---|---|---|'
            ]
            for group, seconds in sorted(groups.items(), key=lambda kv: kv[1], reverse=True):
                lines.append(f'| {group} | {seconds:.2f} | {seconds / total:.0%} |')
            lines += ['', '| operator | self s | share |', '|---|---|---|']
            lines += [f'| `{op}` | {seconds:.2f} | {seconds / total:.0%} |' for op, seconds in top]
            lines.append('')
            print('\n'.join(lines[-(len(top) + len(groups) + 8):]), flush=True)
        del model
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write('\n'.join(lines))
        print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
