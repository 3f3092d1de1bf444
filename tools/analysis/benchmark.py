"""Benchmark our backbones and attention ops against peers and the official algorithms.

One command measures, on the detected device (CUDA if present, else CPU):

* **resolution sweep** - forward latency (eval, no grad), forward+backward latency (train mode),
  peak memory of each, throughput and achieved FLOP/s of backbones: ours (RAVLT, SOFT++ with
  bounded landmarks), the same weights on the released code's algorithm
  (:mod:`mmlinattn.analysis.official`), and mmdet's Swin-T and PVTv2-b2;
* **token sweep** - the attention ops alone (RALA, SOFT++ attention with bounded and with
  growing landmark counts, RAVLT's RoPE softmax via SDPA and explicitly) against plain softmax
  attention through ``torch.nn.functional.scaled_dot_product_attention`` (the baseline);
* **training step** - one Mask R-CNN optimiser step with RAVLT-S and with Swin-T;
* **ONNX Runtime** - backbone forward in PyTorch eager against the same backbone exported to
  ONNX and run by ONNX Runtime (CPU execution provider, all graph optimizations, the same number of
  threads), with the exported output's error; where ONNX Runtime is slower, its profiler's most
  expensive op types (needs the ``deploy`` extra; CPU only);
* the machine's float32 matmul rate, so achieved FLOP/s are a fraction of it.

Times are medians of ``--repeats`` calls after ``--warmup``; every ratio is against a row of the
same run. Results: ``resolution.csv``, ``ops.csv``, ``train_step.csv``, ``onnx.csv``,
``summary.json``, ``summary.md`` (the targets with measured values) and PNG plots in ``--out``
(default: a new ``work_dirs/benchmark/<date>_<time>/``). The committed results in
``docs/benchmarks/`` change only with ``--update-docs`` (``make benchmark``), which takes a full,
unrestricted sweep: a quick or partial run can never replace them. ``--quick`` runs a reduced
sweep in under 2 minutes on 2 CPU cores. Examples::

    python tools/analysis/benchmark.py --quick                 # into work_dirs/benchmark/<time>/
    python tools/analysis/benchmark.py --update-docs           # full sweep into docs/benchmarks
    python tools/analysis/benchmark.py --models RAVLT-S Swin-T --sizes 800x1344 --skip-ops
    python tools/analysis/benchmark.py --retain-heap       # same glibc allocator state for all rows

Peak memory is exact on both devices (CUDA allocator statistics; on CPU the allocation events of
PyTorch's CPU allocator from ``torch.profiler``), see :mod:`mmlinattn.analysis.benchmark`.
"""
import argparse
import csv
import datetime
import json
import logging
import os
import os.path as osp
import platform
import statistics
import sys
import warnings
from contextlib import nullcontext

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DOCS_DIR = 'docs/benchmarks'  # the committed results, relative to ROOT
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from mmlinattn.analysis import benchmark as bm  # noqa: E402

FULL_SIZES = ('224x224', '512x512', '800x1344', '1024x1024', '2048x2048')
QUICK_SIZES = ('224x224', '512x512')
FULL_TOKENS = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
QUICK_TOKENS = (1024, 4096, 8192)
FULL_MODELS = ('RAVLT-S', 'RAVLT-S (official alg.)', 'SOFT++-S (configs)', 'SOFT++-S (previous)',
               'SOFT++-S (bounded)', 'SOFT++-S (official alg.)', 'Swin-T', 'PVTv2-b2')
QUICK_MODELS = ('RAVLT-S', 'RAVLT-S (official alg.)', 'SOFT++-S (configs)', 'SOFT++-S (bounded)',
                'SOFT++-S (official alg.)', 'Swin-T', 'PVTv2-b2')
BASELINE_MODEL = 'Swin-T'
ONNX_MODELS = ('RAVLT-S', 'SOFT++-S (exportable)')
FULL_ONNX_SIZES = ('224x224', '800x1344', '2048x2048')
QUICK_ONNX_SIZES = ('224x224', )
#: Forward time / Swin-T's at 224x224 in the first round's committed full run (2026-11-21), for
#: rows without a "previous" variant in the same run (a ratio, so machines and runs compare).
PREVIOUS_224_VS_SWIN = {'RAVLT-S': 1.26458}
BASELINE_OP = 'softmax attention via SDPA (baseline)'
MEMORY_BUDGET_GIB = 16
# --retain-heap: glibc keeps freed memory in the heap (no fresh, page-faulting mmap per large
# tensor, nothing trimmed back to the kernel), so every row times with the same allocator state.
RETAIN_HEAP_ENV = {
    'MALLOC_MMAP_THRESHOLD_': str(4 << 30),
    'MALLOC_TRIM_THRESHOLD_': str(16 << 30),
    'MALLOC_TOP_PAD_': str(1 << 30)
}


def parse_size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split('x'))
        assert h > 0 and w > 0
    except (ValueError, AssertionError):
        raise argparse.ArgumentTypeError(f'size {text!r} must look like 800x1344 (HxW)')
    return h, w


def argv_has(argv, flag: str) -> bool:
    return flag in (sys.argv[1:] if argv is None else argv)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[1:]))
    p.add_argument('--quick', action='store_true', help='reduced sweep (< 2 min on 2 CPU cores)')
    p.add_argument('--out', help='output folder (default: work_dirs/benchmark/<date>_<time>/)')
    p.add_argument(
        '--update-docs',
        action='store_true',
        help=f'write the committed results in {DOCS_DIR}/ (full sweeps only)')
    p.add_argument('--device', default='auto', help="'auto' (CUDA if present), 'cpu', 'cuda'")
    p.add_argument('--models', nargs='+', help=f'backbone rows; known: {sorted(bm.BACKBONES)}')
    p.add_argument('--sizes', nargs='+', type=parse_size, help='HxW inputs of the sweep')
    p.add_argument('--tokens', nargs='+', type=int, help='token counts of the op sweep')
    p.add_argument(
        '--op-shape',
        nargs=3,
        type=int,
        default=(2, 2, 32),
        metavar=('BATCH', 'HEADS', 'HEAD_DIM'),
        help='op sweep q/k/v shape')
    p.add_argument('--repeats', type=int, help='timed calls per point (median; default 3, 2 quick)')
    p.add_argument('--warmup', type=int, default=1, help='untimed calls first')
    p.add_argument(
        '--max-call-seconds',
        type=float,
        help='skip a point whose predicted call time exceeds this (default 30, 5 quick)')
    p.add_argument(
        '--max-quadratic-gib',
        type=float,
        help='skip explicit N x N attention needing more than this '
        '(default 8, 0.5 quick)')
    p.add_argument(
        '--train-shape',
        type=parse_size,
        help='Mask R-CNN training-step input (default 800x1344, quick 256x384)')
    p.add_argument(
        '--flops-size',
        type=parse_size,
        help='input of the achieved-FLOP/s column (default 800x1344, quick 512x512)')
    p.add_argument(
        '--onnx-models',
        nargs='+',
        help=f'backbones of the ONNX Runtime rows (default: {" ".join(ONNX_MODELS)})')
    p.add_argument(
        '--onnx-sizes',
        nargs='+',
        type=parse_size,
        help=f'HxW inputs of the ONNX Runtime rows (default: {" ".join(FULL_ONNX_SIZES)}, '
        f'quick {" ".join(QUICK_ONNX_SIZES)})')
    p.add_argument('--skip-onnx', action='store_true', help='no ONNX Runtime rows')
    p.add_argument('--skip-ops', action='store_true')
    p.add_argument('--skip-backbones', action='store_true')
    p.add_argument('--skip-train-step', action='store_true')
    p.add_argument('--no-plots', action='store_true')
    p.add_argument(
        '--retain-heap',
        action='store_true',
        help='run in a process whose glibc allocator keeps freed memory (sets '
        f'{", ".join(RETAIN_HEAP_ENV)} and re-executes): every row then times '
        'with the same allocator state; by default the allocator is left as a '
        "user's process has it, whose state depends on what ran before")
    args = p.parse_args(argv)
    q = args.quick
    args.models = args.models or list(QUICK_MODELS if q else FULL_MODELS)
    args.onnx_models = args.onnx_models or list(ONNX_MODELS)
    args.onnx_sizes = args.onnx_sizes or [
        parse_size(s) for s in (QUICK_ONNX_SIZES if q else FULL_ONNX_SIZES)
    ]
    unknown = [m for m in args.models + args.onnx_models if m not in bm.BACKBONES]
    if unknown:
        p.error(f'unknown model(s) {unknown}; choose from {sorted(bm.BACKBONES)}')
    args.sizes = args.sizes or [parse_size(s) for s in (QUICK_SIZES if q else FULL_SIZES)]
    args.tokens = args.tokens or list(QUICK_TOKENS if q else FULL_TOKENS)
    args.repeats = args.repeats or (2 if q else 3)
    args.max_call_seconds = args.max_call_seconds or (5.0 if q else 30.0)
    args.max_quadratic_gib = args.max_quadratic_gib or (0.5 if q else 8.0)
    args.train_shape = args.train_shape or ((256, 384) if q else (800, 1344))
    args.flops_size = args.flops_size or ((512, 512) if q else (800, 1344))
    restricting = {
        '--quick': q,
        '--skip-ops': args.skip_ops,
        '--skip-backbones': args.skip_backbones,
        '--skip-train-step': args.skip_train_step,
        '--skip-onnx': args.skip_onnx,
    }
    for flag in ('--models', '--sizes', '--tokens', '--onnx-models', '--onnx-sizes'):
        restricting[flag] = argv_has(argv, flag)
    partial = [flag for flag, given in restricting.items() if given]
    docs = osp.abspath(osp.join(ROOT, DOCS_DIR))
    if args.update_docs:
        if args.out is not None and osp.abspath(args.out) != docs:
            p.error(f'--update-docs writes {DOCS_DIR}/; drop --out')
        args.out = docs
    elif args.out is None:
        args.out = osp.join('work_dirs', 'benchmark',
                            datetime.datetime.now().strftime('%Y%m%d_%H%M%S'))
    if osp.abspath(args.out) == docs and partial:
        p.error(f'{DOCS_DIR}/ holds the committed full results; a run with {", ".join(partial)} '
                'would replace them with partial ones: write it elsewhere (--out) or run the '
                'full sweep with --update-docs')
    if osp.abspath(args.out) == docs and not args.update_docs:
        p.error(f'{DOCS_DIR}/ holds the committed results; update them on purpose with '
                '--update-docs (make benchmark)')
    if args.device == 'auto':
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        p.error('--device cuda given but torch sees no CUDA device; use --device cpu')
    return args


class Progress:
    """A one-line progress bar on stderr (rich, which mmengine already depends on)."""

    def __init__(self, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn
        from rich.progress import Progress as RichProgress
        from rich.progress import TextColumn, TimeElapsedColumn
        self._bar = RichProgress(
            TextColumn('{task.description:<58}'),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False)
        self._task = self._bar.add_task('benchmark', total=total)
        # Not a terminal (CI logs, nohup): one plain line per point instead of a redrawn bar.
        self._plain = not self._bar.console.is_terminal
        self._total, self._count, self._start = total, 0, datetime.datetime.now()

    def __enter__(self):
        self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        self._bar.__exit__(*exc)

    def step(self, description: str):
        self._bar.update(self._task, description=description[:58])
        if self._plain:
            elapsed = (datetime.datetime.now() - self._start).total_seconds()
            print(
                f'[{self._count}/{self._total} {elapsed:6.0f} s] {description}',
                file=sys.stderr,
                flush=True)

    def done(self):
        self._count += 1
        self._bar.advance(self._task)

    def log(self, message: str):
        self._bar.console.print(message)


def _predict(history, size_key, min_exponent=1.0):
    """Predicted seconds at ``size_key`` from the last measured points of one row.

    ``min_exponent`` floors the growth: the official SOFT path's O(m^3) inverse only starts to
    dominate at detection sizes, so its small-input growth under-predicts (2.5 is used for it).
    """
    if not history:
        return 0.0
    (x1, t1), = history[-1:]
    if len(history) >= 2:
        (x0, t0) = history[-2]
        exponent = min(3.0, max(min_exponent, bm.loglog_slope([x0, x1], [t0, t1])))
    else:
        exponent = max(2.0, min_exponent)
    return t1 * (size_key / x1)**exponent


def _measure(step_fwd, step_bwd, device, args, wrap):
    """Times and peak memory of a forward and (``step_bwd`` not None) a forward+backward step."""
    bwd = mem_bwd = None
    with wrap():
        fwd = statistics.median(bm.time_call(step_fwd, device, args.warmup, args.repeats))
        mem_fwd = bm.peak_memory(step_fwd, device) / bm.MIB
        if step_bwd is not None:
            bwd = statistics.median(bm.time_call(step_bwd, device, args.warmup, args.repeats))
            mem_bwd = bm.peak_memory(step_bwd, device) / bm.MIB
    return fwd, bwd, mem_fwd, mem_bwd


# forward+backward takes about this many forward times (checked against the measurements)
BACKWARD_FACTOR = 3.0


def _skip_reason(args, predicted, quadratic_gib=0.0):
    """Why a point is not measured (None: measure it): the call-time and N x N memory guards."""
    if predicted > args.max_call_seconds:
        return (f'predicted {predicted:.0f} s per call > '
                f'--max-call-seconds {args.max_call_seconds:g}')
    if quadratic_gib > args.max_quadratic_gib:
        return (f'explicit attention needs {quadratic_gib:.1f} GiB > '
                f'--max-quadratic-gib {args.max_quadratic_gib:g}')
    return None


def run_backbones(args, device, progress, rows):
    from mmlinattn.analysis import count_backbone_flops
    from mmlinattn.analysis.official import official_algorithm
    for name in args.models:
        spec = bm.BACKBONES[name]
        progress.step(f'build {name}')
        model = bm.build_backbone(spec, device)
        wrap = (lambda m=model: official_algorithm(m)) if spec.role == 'official' else nullcontext
        history = []
        for h, w in args.sizes:
            progress.step(f'{name} {h}x{w}')
            common = dict(model=name, role=spec.role, input=f'{h}x{w}', pixels=h * w)
            predicted = _predict(history, h * w, 2.5 if spec.role == 'official' else 1.0)
            need = (
                _ravlt_attention_gib(model, h, w)
                if spec.role == 'official' and name.startswith('RAVLT') else 0.0)
            reason = _skip_reason(args, predicted, need)
            if reason:
                rows.append(dict(common, status=f'skipped: {reason}'))
                progress.done()
                continue
            image = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
            with_bwd = predicted * BACKWARD_FACTOR <= args.max_call_seconds
            try:
                fwd, bwd, mem_f, mem_b = _measure(
                    bm.backbone_step(model, image, False),
                    bm.backbone_step(model, image, True) if with_bwd else None, device, args, wrap)
            except (RuntimeError, MemoryError) as err:  # out of memory on this device
                rows.append(
                    dict(common, status=f'skipped: failed: '
                         f'{str(err).splitlines()[0][:80]}'))
                progress.done()
                continue
            history.append((h * w, fwd))
            row = dict(
                common,
                fwd_s=fwd,
                fwdbwd_s=bwd,
                peak_fwd_mib=mem_f,
                peak_fwdbwd_mib=mem_b,
                img_per_s=1.0 / fwd,
                status='ok' if with_bwd else 'ok (forward only: forward+backward '
                'predicted over --max-call-seconds)')
            if (h, w) == tuple(args.flops_size) and spec.role != 'official':
                progress.step(f'{name} {h}x{w} FLOPs')
                model.eval()
                with torch.no_grad():
                    flops = count_backbone_flops(model.cpu(), (h, w)).total
                model.to(device)
                row.update(gflops=flops / 1e9, achieved_gflops_s=flops / fwd / 1e9)
            rows.append(row)
            progress.done()
        del model


def _ravlt_attention_gib(model, h, w):
    """Bytes of the explicit attention matrices (scores + softmax) of the largest RAVLT stage."""
    worst = 0
    for i in range(len(model.stages)):
        if model.attn_types[i] != 'softmax':
            continue
        side_h, side_w = h, w
        for _ in range(i + 2):
            side_h, side_w = -(-side_h // 2), -(-side_w // 2)
        heads = model.arch['num_heads'][i]
        worst = max(worst, 2 * heads * (side_h * side_w)**2 * 4)
    return worst / 2**30


def run_ops(args, device, progress, rows):
    batch, heads, head_dim = args.op_shape
    for name, spec in bm.OPS().items():
        history = []
        for tokens in args.tokens:
            progress.step(f'op {name[:40]} {tokens}')
            common = dict(op=name, role=spec.role, tokens=tokens)
            need = 2 * batch * heads * tokens**2 * 4 / 2**30 if spec.quadratic_memory else 0.0
            reason = _skip_reason(args, _predict(history, tokens), need)
            if reason:
                rows.append(dict(common, status=f'skipped: {reason}'))
                progress.done()
                continue
            inputs = bm.make_op_inputs(tokens, batch, heads, head_dim, device, True)
            fwd, bwd, mem_f, mem_b = _measure(
                bm.op_step(spec, inputs, False), bm.op_step(spec, inputs, True), device, args,
                nullcontext)
            history.append((tokens, fwd))
            rows.append(
                dict(
                    common,
                    fwd_s=fwd,
                    fwdbwd_s=bwd,
                    peak_fwd_mib=mem_f,
                    peak_fwdbwd_mib=mem_b,
                    tokens_per_s=batch * tokens / fwd,
                    status='ok'))
            progress.done()


TRAIN_CONFIGS = {
    'Mask R-CNN RAVLT-S': 'configs/maskrcnn_ravlt_s_coco.py',
    'Mask R-CNN SOFT++-S': 'configs/maskrcnn_soft_s_coco.py',
    'Mask R-CNN Swin-T': 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
}


def run_train_step(args, device, progress, rows):
    """One AdamW step of Mask R-CNN (one image, 5 random instances) per backbone."""
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.hub import get_config
    from mmengine.model import revert_sync_batchnorm
    register_all_modules()
    h, w = args.train_shape
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    for name, path in TRAIN_CONFIGS.items():
        progress.step(f'train step {name} {h}x{w}')
        cfg = (
            get_config(path) if path.startswith('mmdet::') else Config.fromfile(
                osp.join(root, path)))
        cfg.model.backbone.init_cfg = None  # no downloads; weights do not change speed
        torch.manual_seed(0)
        model = revert_sync_batchnorm(MODELS.build(cfg.model)).to(device)
        model.init_weights()
        model.train()
        optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
        packed = demo_mm_inputs(
            batch_size=1, image_shapes=[(3, h, w)], num_items=[5], num_classes=80, with_mask=True)
        data = model.data_preprocessor(packed, True)

        def step():
            losses = model(**data, mode='loss')
            loss, _ = model.parse_losses(losses)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()

        times = bm.time_call(step, device, args.warmup, args.repeats)
        peak = bm.peak_memory(step, device)
        rows.append(
            dict(
                model=name,
                input=f'1x{h}x{w}',
                step_s=statistics.median(times),
                peak_mib=peak / bm.MIB,
                status='ok'))
        progress.done()
        model = optim = None  # free before the next config


def run_onnx(args, device, progress, rows):
    """Backbone forward: PyTorch eager against ONNX Runtime at each of ``args.onnx_sizes``.

    Each point exports the backbone at that size (static shapes, batch 1) and times both with
    the same threads (:func:`mmlinattn.deployment.onnx.benchmark_backbone`). ONNX Runtime
    evaluates RAVLT's softmax stages as explicit ``MatMul`` / ``Softmax`` nodes, so those points
    take the N x N memory guard (``--max-quadratic-gib``) as well as the call-time guard.
    """
    skip = None
    if device.type != 'cpu':
        skip = 'ONNX Runtime rows compare CPU runtimes; run with --device cpu'
    else:
        try:
            from mmlinattn.deployment.onnx import benchmark_backbone, require_onnx
            from mmlinattn.utils.run_config import UserInputError
            require_onnx()
        except (ImportError, UserInputError) as err:
            skip = str(err)
    for name in args.onnx_models:
        spec = bm.BACKBONES[name]
        if skip:
            rows.extend(
                dict(model=name, input=f'{h}x{w}', pixels=h * w, status=f'skipped: {skip}')
                for h, w in args.onnx_sizes)
            for _ in args.onnx_sizes:
                progress.done()
            continue
        progress.step(f'build {name} (ONNX)')
        model = bm.build_backbone(spec, device)
        model.eval()  # not chained: mmdet's Swin returns None from train()
        history = []
        for h, w in args.onnx_sizes:
            progress.step(f'{name} {h}x{w} ONNX Runtime')
            common = dict(model=name, input=f'{h}x{w}', pixels=h * w)
            need = _ravlt_attention_gib(model, h, w) if name.startswith('RAVLT') else 0.0
            reason = _skip_reason(args, _predict(history, h * w), need)
            if reason:
                rows.append(dict(common, status=f'skipped: {reason}'))
                progress.done()
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')  # the exporter's deprecation notes
                    result = benchmark_backbone(
                        model, (h, w), repeats=args.repeats, warmup=args.warmup, top_ops=5)
            except (RuntimeError, MemoryError) as err:
                failure = str(err).splitlines()[0][:80]
                rows.append(dict(common, status=f'skipped: failed: {failure}'))
                progress.done()
                continue
            history.append((h * w, max(result.torch_s, result.ort_s)))
            rows.append(
                dict(
                    common,
                    threads=result.threads,
                    torch_s=result.torch_s,
                    ort_s=result.ort_s,
                    ort_vs_torch=result.ratio,
                    max_normalised_error=result.max_normalised,
                    ort_top_ops='; '.join(f'{op} {share:.0%}' for op, _, share in result.top_ops),
                    status='ok'))
            progress.done()
        del model


# ----------------------------------------------------------------------------------------------
# Results


def _write_csv(path, rows):
    if not rows:
        return
    keys = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({
                k: (f'{v:.6g}' if isinstance(v, float) else v)
                for k, v in row.items()
            })


def add_ratios(backbone_rows, op_rows):
    """Ratios against the baseline / official rows of the same run (in place)."""
    ok = [r for r in backbone_rows if r['status'].startswith('ok')]
    by = {(r['model'], r['input']): r for r in ok}
    for r in ok:
        base = by.get((BASELINE_MODEL, r['input']))
        if base:
            r['fwd_vs_swin_t'] = r['fwd_s'] / base['fwd_s']
            if r['fwdbwd_s'] and base['fwdbwd_s']:
                r['fwdbwd_vs_swin_t'] = r['fwdbwd_s'] / base['fwdbwd_s']
        ref = next((s.name for s in bm.BACKBONES.values() if s.official_of == r['model']), None)
        if ref and (ref, r['input']) in by:
            r['fwd_vs_official'] = r['fwd_s'] / by[(ref, r['input'])]['fwd_s']
    ops_ok = {(r['op'], r['tokens']): r for r in op_rows if r['status'] == 'ok'}
    for r in op_rows:
        base = ops_ok.get((BASELINE_OP, r['tokens']))
        if r['status'] == 'ok' and base:
            r['fwd_vs_sdpa'] = r['fwd_s'] / base['fwd_s']
            r['fwdbwd_vs_sdpa'] = r['fwdbwd_s'] / base['fwdbwd_s']


def largest_square(backbone_rows, budget_gib=MEMORY_BUDGET_GIB):
    """Largest square forward input per backbone within ``budget_gib``, extrapolated.

    Power law through the two largest measured square inputs' forward peaks.
    """
    out = {}
    for name in dict.fromkeys(r['model'] for r in backbone_rows):
        squares = sorted(
            (r['pixels'], r['peak_fwd_mib']) for r in backbone_rows
            if r['model'] == name and r['status'].startswith('ok') and r['input'].split(
                'x')[0] == r['input'].split('x')[1] and r.get('peak_fwd_mib', 0) > 0)
        if len(squares) < 2:
            continue
        (p0, m0), (p1, m1) = squares[-2:]
        if m1 <= m0:
            continue
        pixels, exponent = bm.power_law_solve(p0, m0, p1, m1, budget_gib * 1024)
        out[name] = dict(
            side=int(pixels**0.5),
            memory_exponent=exponent,
            from_inputs=f'{int(p0 ** 0.5)}^2, {int(p1 ** 0.5)}^2')
    return out


def _get(rows, key, **match):
    for r in rows:
        if r['status'].startswith('ok') and all(r.get(k) == v for k, v in match.items()):
            return r.get(key)
    return None


def evaluate_targets(backbone_rows, op_rows, train_rows, matmul_rate):
    """The performance targets as ``(target, measured, limit, met)`` records (``met`` None: n/a).

    First those of the second performance round (SOFT++ as cheap per pixel as Swin-T), then the
    first round's.
    """
    t = []

    def add(target, value, limit, better, detail=''):
        met = None if value is None else (value <= limit if better == 'lower' else value >= limit)
        t.append(dict(target=target, measured=value, limit=limit, met=met, detail=detail))

    def ratio(a, b):
        return a / b if a and b else None

    for size, limit in (('2048x2048', 1.2), ('800x1344', 1.3), ('512x512', 1.5)):
        soft = _get(backbone_rows, 'fwd_s', model='SOFT++-S (configs)', input=size)
        swin = _get(backbone_rows, 'fwd_s', model='Swin-T', input=size)
        add(f'SOFT++-S (configs mode) / Swin-T forward {size}', ratio(soft, swin), limit, 'lower')
    soft = _get(train_rows, 'step_s', model='Mask R-CNN SOFT++-S')
    swin = _get(train_rows, 'step_s', model='Mask R-CNN Swin-T')
    add('Mask R-CNN train step SOFT++-S / Swin-T', ratio(soft, swin), 1.3, 'lower',
        next((f'input {r["input"]}' for r in train_rows), ''))
    speedups = []
    for tokens in (16384, 32768, 65536):
        new = _get(op_rows, 'fwdbwd_s', op='SOFT++ attention (m<=256, configs)', tokens=tokens)
        old = _get(op_rows, 'fwdbwd_s', op='SOFT++ attention (m<=256, previous)', tokens=tokens)
        if new and old:
            speedups.append(old / new)
    add('SOFT++ op fwd+bwd speed-up over the previous op, 16k-64k tokens (smallest)',
        min(speedups) if speedups else None, 3.0, 'higher')
    now = _get(backbone_rows, 'fwd_vs_swin_t', model='RAVLT-S', input='224x224')
    add('RAVLT-S forward 224x224 vs before (ratio of the times relative to Swin-T)',
        ratio(now, PREVIOUS_224_VS_SWIN['RAVLT-S']), 1.05, 'lower',
        'before: the first round\'s committed run')
    now = _get(backbone_rows, 'fwd_s', model='SOFT++-S (configs)', input='224x224')
    then = _get(backbone_rows, 'fwd_s', model='SOFT++-S (previous)', input='224x224')
    add('SOFT++-S forward 224x224, configs mode vs previous (time ratio)', ratio(now, then), 1.05,
        'lower')

    fwd = _get(backbone_rows, 'fwd_vs_official', model='RAVLT-S', input='800x1344')
    add('RAVLT-S forward 800x1344, time vs official algorithm', fwd, 0.7, 'lower')
    rav = _get(train_rows, 'step_s', model='Mask R-CNN RAVLT-S')
    swin = _get(train_rows, 'step_s', model='Mask R-CNN Swin-T')
    add('Mask R-CNN train step RAVLT-S / Swin-T', rav / swin if rav and swin else None, 1.0,
        'lower', next((f'input {r["input"]}' for r in train_rows), ''))
    ours = _get(backbone_rows, 'fwd_s', model='SOFT++-S (bounded)', input='800x1344')
    off = _get(backbone_rows, 'fwd_s', model='SOFT++-S (official alg.)', input='800x1344')
    add('SOFT++-S bounded vs official algorithm, 800x1344 speed-up',
        off / ours if ours and off else None, 20.0, 'higher')
    small = _get(backbone_rows, 'fwd_s', model='SOFT++-S (bounded)', input='512x512')
    large = _get(backbone_rows, 'fwd_s', model='SOFT++-S (bounded)', input='2048x2048')
    growth = (large / small)**0.25 / 2 if small and large else None
    add('SOFT++-S bounded, time per pixel growth per doubling of pixels 512^2 -> 2048^2', growth,
        1.15, 'lower', 'time(2P)/(2 time(P)), geometric mean over 4 doublings')
    for op in ('RALA', 'SOFT++ attention (m<=256)'):
        pts = sorted((r['tokens'], r['peak_fwdbwd_mib']) for r in op_rows
                     if r['op'] == op and r['status'] == 'ok' and 4096 <= r['tokens'] <= 65536
                     and r['peak_fwdbwd_mib'] > 0)
        slope = bm.loglog_slope(*zip(*pts)) if len(pts) >= 2 and pts[-1][0] == 65536 else None
        add(f'{op}: peak memory log-log slope 4k-64k tokens', slope, 1.05, 'lower')
        faster = None
        rows = sorted((r['tokens'], r.get('fwdbwd_vs_sdpa')) for r in op_rows
                      if r['op'] == op and r['status'] == 'ok' and r.get('fwdbwd_vs_sdpa'))
        for i in range(len(rows)):
            if all(ratio < 1 for _, ratio in rows[i:]):
                faster = rows[i][0]
                break
        add(f'{op}: fwd+bwd faster than SDPA from N tokens on', faster, 4096, 'lower',
            'None: not faster at the largest measured N')
    for model in ('RAVLT-S', 'SOFT++-S (bounded)'):
        rate = next((r['achieved_gflops_s']
                     for r in backbone_rows if r['model'] == model and r.get('achieved_gflops_s')),
                    None)
        add(f'{model}: achieved FLOP/s / float32 matmul FLOP/s',
            rate * 1e9 / matmul_rate if rate else None, 0.5, 'higher')
    return t


def write_summary_md(path, meta, targets, squares, train_rows, onnx_rows=()):
    lines = [
        f'# Benchmark summary ({meta["date"]})', '',
        f'Device: {meta["device_name"]}, {meta["threads"]} threads; torch '
        f'{meta["torch"]}; float32 matmul {meta["matmul_gflops_s"]:.1f} G multiply-adds/s; '
        f'mode: {"quick" if meta["quick"] else "full"}; allocator: '
        f'{meta["allocator"]}.', '', '| target | measured | limit | met |', '|---|---|---|---|'
    ]
    if 'cuda_matmul_allow_tf32' in meta:  # CUDA runs: float32 timings depend on TF32
        lines[2] += (f' TF32: torch.backends.cuda.matmul.allow_tf32='
                     f'{meta["cuda_matmul_allow_tf32"]}, torch.backends.cudnn.allow_tf32='
                     f'{meta["cudnn_allow_tf32"]}.')
    for t in targets:
        value = '-' if t['measured'] is None else f'{t["measured"]:.3g}'
        met = {True: 'yes', False: 'no', None: 'not measured'}[t['met']]
        lines.append(f'| {t["target"]} | {value} | {t["limit"]:g} | {met} |')
    lines += [
        '', f'Largest square forward input within {MEMORY_BUDGET_GIB} GiB (power law through '
        'the two largest measured squares; an extrapolation):', '',
        '| backbone | side (px) | memory exponent | from |', '|---|---|---|---|'
    ]
    for name, s in squares.items():
        lines.append(f'| {name} | {s["side"]} | {s["memory_exponent"]:.2f} | '
                     f'{s["from_inputs"]} |')
    if train_rows:
        lines += [
            '', '| training step | input | time (s) | peak memory (MiB) |', '|---|---|---|---|'
        ]
        for r in train_rows:
            lines.append(f'| {r["model"]} | {r["input"]} | {r["step_s"]:.2f} | '
                         f'{r["peak_mib"]:.0f} |')
    if onnx_rows:
        lines += [
            '', 'Backbone forward, PyTorch eager vs ONNX Runtime (CPU execution provider, graph '
            'optimizations on, same threads; error: max-normalised, ONNX Runtime vs PyTorch; op '
            "types: ONNX Runtime's profiler, share of kernel time, where it is slower):", '',
            '| backbone | input | PyTorch (s) | ONNX Runtime (s) | ORT / PyTorch | error | '
            'ONNX Runtime top ops |', '|---|---|---|---|---|---|---|'
        ]
        for r in onnx_rows:
            if r['status'] != 'ok':
                lines.append(f'| {r["model"]} | {r["input"]} | - | - | - | - | {r["status"]} |')
                continue
            lines.append(f'| {r["model"]} | {r["input"]} | {r["torch_s"]:.3f} | '
                         f'{r["ort_s"]:.3f} | {r["ort_vs_torch"]:.2f} | '
                         f'{r["max_normalised_error"]:.1e} | {r["ort_top_ops"] or "-"} |')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def plot(out, backbone_rows, op_rows, onnx_rows=()):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    written = []
    for rows, key, xlabel, fname in ((backbone_rows, 'model', 'pixels', 'resolution'),
                                     (op_rows, 'op', 'tokens', 'ops')):
        ok = [r for r in rows if r['status'].startswith('ok')]
        if not ok:
            continue
        xkey = 'pixels' if key == 'model' else 'tokens'
        fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
        for name in dict.fromkeys(r[key] for r in ok):
            mine = sorted((r for r in ok if r[key] == name), key=lambda r: r[xkey])
            style = '--' if mine[0]['role'] in ('official', 'baseline', 'peer') else '-'
            for ax, metric in zip(axes, ('fwd_s', 'fwdbwd_s', 'peak_fwdbwd_mib')):
                pts = [(r[xkey], max(r[metric], 1e-6)) for r in mine if r.get(metric) is not None]
                if pts:
                    ax.plot(*zip(*pts), style, marker='o', label=name)
        for ax, title in zip(axes,
                             ('forward (s)', 'forward+backward (s)', 'peak memory fwd+bwd (MiB)')):
            ax.set_xscale('log')
            ax.set_yscale('log')
            ax.set_xlabel(xlabel)
            ax.set_title(title)
            ax.grid(True, which='both', alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        path = osp.join(out, f'{fname}.png')
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    ok = [r for r in onnx_rows if r['status'] == 'ok']
    if ok:
        fig, ax = plt.subplots(figsize=(7, 5))
        for name in dict.fromkeys(r['model'] for r in ok):
            mine = sorted((r for r in ok if r['model'] == name), key=lambda r: r['pixels'])
            for key, style, label in (('torch_s', '-', 'PyTorch'), ('ort_s', '--', 'ONNX Runtime')):
                ax.plot([r['pixels'] for r in mine], [r[key] for r in mine],
                        style,
                        marker='o',
                        label=f'{name} {label}')
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('pixels')
        ax.set_title('backbone forward (s), PyTorch eager vs ONNX Runtime')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = osp.join(out, 'onnx.png')
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _retain_heap_active():
    return all(os.environ.get(k) == v for k, v in RETAIN_HEAP_ENV.items())


def precision_meta(device):
    """The float32 precision switches a CUDA run's timings depend on (TF32 in cuBLAS matmuls and
    cuDNN convolutions), for the run's meta; empty for other devices."""
    if device.type != 'cuda':
        return {}
    return dict(
        cuda_matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
        float32_matmul_precision=torch.get_float32_matmul_precision())


def main(argv=None):
    args = parse_args(argv)
    if args.retain_heap and not _retain_heap_active():
        # glibc reads these variables only at start-up: run the same command in a new process.
        if argv is not None:  # called as a function: never replace the caller
            raise RuntimeError('--retain-heap from Python needs the allocator variables set '
                               'before the interpreter starts: ' +
                               ' '.join(f'{k}={v}' for k, v in RETAIN_HEAP_ENV.items()))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable,
                  [sys.executable, osp.abspath(__file__), *sys.argv[1:]],
                  dict(os.environ, **RETAIN_HEAP_ENV))
    device = torch.device(args.device)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine').setLevel(logging.WARNING)  # no init_weights reports
    os.makedirs(args.out, exist_ok=True)
    started = datetime.datetime.now()
    meta = dict(
        date=started.strftime('%Y-%m-%d %H:%M'),
        quick=args.quick,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        device=str(device),
        platform=platform.platform(),
        device_name=(torch.cuda.get_device_name(device) if device.type == 'cuda' else
                     f'CPU {platform.processor() or platform.machine()} '
                     f'x{os.cpu_count()}'),
        repeats=args.repeats,
        warmup=args.warmup,
        allocator='retain-heap' if _retain_heap_active() else 'default')
    meta.update(precision_meta(device))
    meta['matmul_gflops_s'] = bm.matmul_rate(device) / 1e9
    total = ((0 if args.skip_backbones else len(args.models) * len(args.sizes)) +
             (0 if args.skip_ops else len(bm.OPS()) * len(args.tokens)) +
             (0 if args.skip_train_step else len(TRAIN_CONFIGS)) +
             (0 if args.skip_onnx else len(args.onnx_models) * len(args.onnx_sizes)))
    backbone_rows, op_rows, train_rows, onnx_rows = [], [], [], []
    with Progress(total) as progress:
        progress.log(f'float32 matmul: {meta["matmul_gflops_s"]:.1f} G multiply-adds/s on '
                     f'{meta["device_name"]}')
        if not args.skip_backbones:
            run_backbones(args, device, progress, backbone_rows)
        if not args.skip_ops:
            run_ops(args, device, progress, op_rows)
        if not args.skip_train_step:
            run_train_step(args, device, progress, train_rows)
        if not args.skip_onnx:
            run_onnx(args, device, progress, onnx_rows)
        progress.step('done')
    add_ratios(backbone_rows, op_rows)
    targets = evaluate_targets(backbone_rows, op_rows, train_rows, meta['matmul_gflops_s'] * 1e9)
    squares = largest_square(backbone_rows)
    meta['seconds'] = (datetime.datetime.now() - started).total_seconds()
    _write_csv(osp.join(args.out, 'resolution.csv'), backbone_rows)
    _write_csv(osp.join(args.out, 'ops.csv'), op_rows)
    _write_csv(osp.join(args.out, 'train_step.csv'), train_rows)
    _write_csv(osp.join(args.out, 'onnx.csv'), onnx_rows)
    with open(osp.join(args.out, 'summary.json'), 'w') as f:
        json.dump(dict(meta=meta, targets=targets, largest_square_16gib=squares), f, indent=2)
    write_summary_md(
        osp.join(args.out, 'summary.md'), meta, targets, squares, train_rows, onnx_rows)
    written = [] if args.no_plots else plot(args.out, backbone_rows, op_rows, onnx_rows)
    with open(osp.join(args.out, 'summary.md')) as f:
        print(f.read())
    print(f'wrote {args.out}/{{resolution,ops,train_step,onnx}}.csv, summary.json, summary.md' +
          (f', {", ".join(osp.basename(p) for p in written)}' if written else '') +
          f' in {meta["seconds"]:.0f} s')


if __name__ == '__main__':
    main()
