"""The benchmark's building blocks: the official-algorithm path, timers, memory, targets, CLI."""
import csv
import importlib.util
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

import mmlinattn  # noqa: F401
from mmlinattn.analysis import benchmark as bm
from mmlinattn.analysis.official import official_algorithm
from mmlinattn.models.backbones.ravlt import RAVLT
from mmlinattn.models.backbones.soft import SOFT
from mmlinattn.models.layers import LayerNorm2d
from mmlinattn.ops import get_op

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DATA = osp.join(ROOT, 'tests', 'data', 'official')
SMALL_RAVLT = dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1], num_heads=[2, 2, 4, 4])
SMALL_SOFT = dict(embed_dims=[16, 32, 64, 64], depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 4])


def rel_error(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'benchmark_tool', osp.join(ROOT, 'tools', 'analysis', 'benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# official_algorithm


def test_official_ravlt_path_matches_the_official_fixture():
    """The official-algorithm path reproduces the released code's outputs (det fixture)."""
    with open(osp.join(DATA, 'ravlt_custom.json')) as f:
        kwargs = json.load(f)['detection_backbone']['kwargs']
    arch = {k: kwargs[k] for k in ('embed_dims', 'depths', 'num_heads')}
    model = RAVLT(
        arch=arch,
        init_cfg=dict(type='Pretrained', checkpoint=osp.join(DATA, 'ravlt_custom_det.pth')))
    model.init_weights()
    model.eval()
    io = torch.load(osp.join(DATA, 'ravlt_custom_io.pt'), weights_only=True)
    with torch.no_grad(), official_algorithm(model):
        outs = model(io['batch/input'])
    for i in range(4):
        assert rel_error(outs[i], io[f'batch/det_stage{i}']) <= 1e-5


def test_official_ravlt_path_equals_fast_path_forward_and_gradients():
    torch.manual_seed(0)
    model = RAVLT(arch=SMALL_RAVLT, drop_path_rate=0.0).double()
    model.init_weights()
    model.eval()  # BN on running statistics: batch statistics make the input gradient ~1e-10
    x = torch.randn(2, 3, 72, 88, dtype=torch.float64, requires_grad=True)
    fast = model(x)
    grads_fast = torch.autograd.grad(sum(o.square().mean() for o in fast), [x, *model.parameters()])
    with official_algorithm(model):
        assert model.stages[3].blocks[0].attn.attn_op is get_op('rope_softmax', 'explicit')
        ref = model(x)
        grads_ref = torch.autograd.grad(
            sum(o.square().mean() for o in ref), [x, *model.parameters()])
    for a, b in zip(fast, ref):
        assert rel_error(a, b) <= 1e-12
    for a, b in zip(grads_fast, grads_ref):
        assert rel_error(a, b) <= 1e-10


def test_official_algorithm_restores_the_model_even_on_error():
    model = RAVLT(arch=SMALL_RAVLT)
    attn = model.stages[3].blocks[0].attn
    fast_op = attn.attn_op
    norm = next(m for m in model.modules() if isinstance(m, LayerNorm2d))
    with pytest.raises(ZeroDivisionError):
        with official_algorithm(model):
            assert attn.attn_op is not fast_op and 'forward' in vars(norm)
            1 / 0
    assert attn.attn_op is fast_op
    assert 'forward' not in vars(norm)


def test_official_soft_path_grows_the_landmarks_like_the_released_models():
    torch.manual_seed(0)
    bounded = SOFT(arch=SMALL_SOFT, norm=True, max_landmarks=4, drop_path_rate=0.0).eval()
    official = SOFT(arch=SMALL_SOFT, norm=True, max_landmarks=None, drop_path_rate=0.0).eval()
    official.load_state_dict(bounded.state_dict())
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        plain = bounded(x)
        with official_algorithm(bounded):
            as_official = bounded(x)
        expected = official(x)
        restored = bounded(x)
    assert rel_error(plain[0], expected[0]) > 1e-3  # the bound changes the maths ...
    for a, b in zip(as_official, expected):  # ... and the official path undoes it
        assert rel_error(a, b) <= 1e-6
    for a, b in zip(restored, plain):
        assert torch.equal(a, b)


def test_official_algorithm_rejects_other_models():
    with pytest.raises(TypeError, match=r'needs an mmlinattn backbone \(RAVLT, SOFT'):
        with official_algorithm(torch.nn.Conv2d(3, 3, 1)):
            pass


# ---------------------------------------------------------------------------------------------
# measurement primitives


def test_peak_memory_is_the_most_tensor_bytes_live_at_once():
    mib, cpu, state = 2**20, torch.device('cpu'), {}

    def together():
        x = torch.ones(64, mib)  # 256 MiB
        y = x * 2  # + 256 MiB while x lives
        del x, y

    def one_after_another():
        for _ in range(3):
            torch.ones(64, mib).add_(1)  # 256 MiB, freed before the next

    def replace_after_freeing():  # like gradients set to None, then recomputed
        state.pop('grad', None)
        state['grad'] = torch.ones(32, mib)

    def replace_while_alive():  # the new one exists before the old is freed
        new = torch.ones(32, mib)
        state['grad'] = new

    def close(measured, expected):  # exact up to a few scalars (e.g. the 2 above)
        return abs(measured - expected) <= 4096

    assert close(bm.peak_memory(together, cpu), 512 * mib)
    assert close(bm.peak_memory(one_after_another, cpu), 256 * mib)
    assert close(bm.peak_memory(replace_after_freeing, cpu), 0)
    assert close(bm.peak_memory(replace_while_alive, cpu), 128 * mib)
    assert bm.peak_memory(lambda: None, cpu) == 0


def test_peak_of_allocations_is_the_highest_running_sum_in_time_order():
    events = [(30, -5), (10, 4), (20, 6), (40, 2), (50, -7)]  # unordered on purpose
    assert bm.peak_of_allocations(events) == 10
    assert bm.peak_of_allocations([(1, -3), (2, 2)]) == 0
    assert bm.peak_of_allocations([(1, 5), (1, -5), (1, 4)]) == 5  # equal times keep order
    assert bm.peak_of_allocations([]) == 0


HIGH_WATER_MARK = """
import json, sys, torch
from mmlinattn.analysis import benchmark as bm
from mmlinattn.models.backbones.ravlt import RAVLT

def status(key):
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))

torch.manual_seed(0)
step = bm.backbone_step(RAVLT(arch=json.loads(sys.argv[1])), torch.rand(1, 3, 384, 384), True)
step()
step()
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')                                 # reset the kernel's peak resident size
start = status('VmRSS:')
step()
kernel_peak = status('VmHWM:') - start
print(json.dumps([kernel_peak, bm.peak_memory(step, 'cpu')]))
"""


@pytest.mark.slow  # a fresh interpreter (imports mmdet/mmseg): ~5-8 s
@pytest.mark.skipif(not osp.exists('/proc/self/clear_refs'), reason='needs Linux /proc')
def test_cpu_peak_memory_matches_the_kernels_high_water_mark():
    """Independent oracle: in a process whose glibc hands every block over 64 KiB straight back to
    the kernel (mmap threshold pinned from the start), the kernel's resident high-water mark over a
    forward+backward step is the step's live memory; the profiler-based probe must agree."""
    env = dict(
        os.environ,
        MALLOC_MMAP_THRESHOLD_='65536',
        MALLOC_TRIM_THRESHOLD_='131072',
        PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, '-c', HIGH_WATER_MARK,
                          json.dumps(SMALL_RAVLT)],
                         env=env,
                         capture_output=True,
                         text=True,
                         timeout=300,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    kernel_peak, probe_peak = json.loads(out.stdout.strip().splitlines()[-1])
    assert kernel_peak > 20 * bm.MIB  # a real step, not noise
    assert abs(probe_peak - kernel_peak) <= 0.03 * kernel_peak + 2 * bm.MIB


def test_time_call_counts_calls():
    calls = []
    times = bm.time_call(lambda: calls.append(1), torch.device('cpu'), warmup=2, repeats=5)
    assert len(times) == 5 and len(calls) == 7 and all(t >= 0 for t in times)


def test_matmul_rate_is_multiply_adds_per_second():
    rate = bm.matmul_rate(torch.device('cpu'), size=256, repeats=3)
    assert 1e7 < rate < 1e13


def test_loglog_slope_and_power_law():
    xs = [4096, 8192, 16384, 65536]
    assert bm.loglog_slope(xs, [3 * x**1.5 for x in xs]) == pytest.approx(1.5)
    x, e = bm.power_law_solve(100, 10, 400, 160, 2560)
    assert e == pytest.approx(2.0) and x == pytest.approx(1600)
    with pytest.raises(ValueError):
        bm.loglog_slope([1], [1])


def test_op_rows_compute_what_they_name():
    from mmlinattn.ops import rope_softmax_attention_reference
    ops = bm.OPS()
    t = bm.make_op_inputs(120, 1, 2, 16, torch.device('cpu'), False)
    assert t['sin'].shape == (120, 16)
    sdpa = ops['RoPE softmax via SDPA (ours; RAVLT stages 3-4)'].fn(t)
    explicit = ops['RoPE softmax explicit (official)'].fn(t)
    assert rel_error(sdpa,
                     rope_softmax_attention_reference(t['q'], t['k'], t['v'], t['sin'],
                                                      t['cos'])) < 1e-5
    assert rel_error(sdpa, explicit) < 1e-5
    # bounded and official SOFT rows agree while N / 64 <= 256 landmarks
    t = bm.make_op_inputs(4096, 1, 2, 16, torch.device('cpu'), False)
    assert torch.equal(ops['SOFT++ attention (m<=256)'].fn(t),
                       ops['SOFT++ attention (official m=N/64)'].fn(t))


def test_every_backbone_row_builds_and_official_rows_share_weights():
    assert {'Swin-T', 'PVTv2-b2', 'RAVLT-S', 'SOFT++-S (bounded)'} <= set(bm.BACKBONES)
    spec = bm.BACKBONES['RAVLT-T (official alg.)']
    assert spec.role == 'official' and spec.official_of == 'RAVLT-T'
    a = bm.build_backbone(bm.BACKBONES['RAVLT-T'], torch.device('cpu'))
    b = bm.build_backbone(spec, torch.device('cpu'))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


# ---------------------------------------------------------------------------------------------
# the tool's arithmetic


def _row(model, size, fwd, mem=100.0, role='ours', **extra):
    h, w = (int(v) for v in size.split('x'))
    return dict(
        model=model,
        role=role,
        input=size,
        pixels=h * w,
        fwd_s=fwd,
        fwdbwd_s=3 * fwd,
        peak_fwd_mib=mem,
        peak_fwdbwd_mib=2 * mem,
        status='ok',
        **extra)


def test_ratios_targets_and_largest_square():
    tool = load_tool()
    rows = [
        _row('RAVLT-S', '800x1344', 2.0, achieved_gflops_s=20.0),
        _row('RAVLT-S (official alg.)', '800x1344', 4.0, role='official'),
        _row('Swin-T', '800x1344', 2.5, role='peer'),
        _row('SOFT++-S (bounded)', '800x1344', 1.0),
        _row('SOFT++-S (official alg.)', '800x1344', 30.0, role='official'),
        _row('SOFT++-S (bounded)', '512x512', 0.5, mem=100.0),
        _row('SOFT++-S (bounded)', '2048x2048', 0.5 * 16 * 1.1**4, mem=1600.0)
    ]
    ops = []
    for n in (1024, 4096, 16384, 65536):
        ops.append(
            dict(
                op='RALA',
                role='ours',
                tokens=n,
                fwd_s=n * 1e-6,
                fwdbwd_s=n * 1e-6,
                peak_fwdbwd_mib=n / 1024.0,
                status='ok'))
        ops.append(
            dict(
                op=tool.BASELINE_OP,
                role='baseline',
                tokens=n,
                fwd_s=n * 2e-6,
                fwdbwd_s=(n / 4096)**2 * 4096e-6,
                peak_fwdbwd_mib=1.0,
                status='ok'))
    tool.add_ratios(rows, ops)
    assert rows[0]['fwd_vs_official'] == pytest.approx(0.5)
    assert rows[0]['fwd_vs_swin_t'] == pytest.approx(0.8)
    train = [
        dict(model='Mask R-CNN RAVLT-S', input='2x800x1344', step_s=9.0, status='ok'),
        dict(model='Mask R-CNN Swin-T', input='2x800x1344', step_s=10.0, status='ok')
    ]
    targets = {t['target']: t for t in tool.evaluate_targets(rows, ops, train, 100e9)}
    assert targets['RAVLT-S forward 800x1344, time vs official algorithm']['met'] is True
    assert targets['Mask R-CNN train step RAVLT-S / Swin-T']['measured'] == pytest.approx(0.9)
    speedup = targets['SOFT++-S bounded vs official algorithm, 800x1344 speed-up']
    assert speedup['measured'] == pytest.approx(30.0) and speedup['met']
    growth = next(v for k, v in targets.items() if k.startswith('SOFT++-S bounded, time per'))
    assert growth['measured'] == pytest.approx(1.1) and growth['met']
    slope = targets['RALA: peak memory log-log slope 4k-64k tokens']
    assert slope['measured'] == pytest.approx(1.0) and slope['met']
    # RALA fwd+bwd: 1x SDPA at 4096 tokens (not faster), faster from 16384 on
    assert targets['RALA: fwd+bwd faster than SDPA from N tokens on']['measured'] == 16384
    assert targets['RAVLT-S: achieved FLOP/s / float32 matmul FLOP/s']['measured'] == \
        pytest.approx(0.2)
    assert targets['SOFT++ attention (m<=256): peak memory log-log slope 4k-64k tokens'][
        'met'] is None  # no rows for it: not measured
    squares = tool.largest_square(rows)
    side = squares['SOFT++-S (bounded)']['side']
    assert side == pytest.approx(math.sqrt(16 * 1024 / 1600) * 2048, rel=1e-3)


@pytest.mark.slow
def test_quick_cli_run_writes_every_artifact(tmp_path):
    tool = load_tool()
    tool.main([
        '--quick', '--out',
        str(tmp_path), '--models', 'RAVLT-T', 'RAVLT-T (official alg.)', '--sizes', '64x64',
        '64x96', '--tokens', '256', '--skip-train-step', '--flops-size', '64x64', '--repeats', '1',
        '--max-call-seconds', '600', '--onnx-models', 'RAVLT-T', '--onnx-sizes', '64x64'
    ])
    with open(tmp_path / 'onnx.csv') as f:
        onnx_rows = list(csv.DictReader(f))
    assert [(r['model'], r['input'], r['status'])
            for r in onnx_rows] == [('RAVLT-T', '64x64', 'ok')]
    assert float(onnx_rows[0]['torch_s']) > 0 and float(onnx_rows[0]['ort_s']) > 0
    assert float(onnx_rows[0]['max_normalised_error']) <= 1e-4
    assert (tmp_path / 'onnx.png').stat().st_size > 10_000
    with open(tmp_path / 'resolution.csv') as f:
        rows = list(csv.DictReader(f))
    assert [(r['model'], r['input'], r['status'])
            for r in rows] == [('RAVLT-T', '64x64', 'ok'), ('RAVLT-T', '64x96', 'ok'),
                               ('RAVLT-T (official alg.)', '64x64', 'ok'),
                               ('RAVLT-T (official alg.)', '64x96', 'ok')]
    assert float(rows[0]['gflops']) > 0 and float(rows[0]['fwd_vs_official']) > 0
    with open(tmp_path / 'ops.csv') as f:
        ops = list(csv.DictReader(f))
    assert len(ops) == len(bm.OPS()) and all(r['status'] == 'ok' for r in ops)
    assert float(next(r for r in ops if r['role'] == 'baseline')['fwd_vs_sdpa']) == 1.0
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['meta']['quick'] and summary['meta']['matmul_gflops_s'] > 0
    assert (tmp_path / 'resolution.png').stat().st_size > 10_000
    assert (tmp_path / 'ops.png').stat().st_size > 10_000
    assert '| target | measured | limit | met |' in (tmp_path / 'summary.md').read_text()


@pytest.mark.slow
def test_retain_heap_reexecutes_with_the_allocator_variables(tmp_path):
    tool = load_tool()
    args = [
        '--retain-heap', '--quick', '--out',
        str(tmp_path), '--models', 'RAVLT-T', '--sizes', '64x64', '--skip-ops', '--skip-train-step',
        '--no-plots', '--flops-size', '64x64', '--repeats', '1'
    ]
    env = {k: v for k, v in os.environ.items() if k not in tool.RETAIN_HEAP_ENV}
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'analysis', 'benchmark.py'), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['meta']['allocator'] == 'retain-heap'  # the re-executed process had them
    assert 'allocator: retain-heap' in (tmp_path / 'summary.md').read_text()
    if not tool._retain_heap_active():  # as a function it never execs
        with pytest.raises(RuntimeError, match='MALLOC_MMAP_THRESHOLD_=4294967296'):
            tool.main(args)


def test_cli_rejects_bad_input():
    tool = load_tool()
    with pytest.raises(SystemExit):
        tool.parse_args(['--models', 'RAVLT-X'])
    with pytest.raises(SystemExit):
        tool.parse_args(['--sizes', '800by1344'])


def test_committed_results_change_only_with_update_docs(capsys, monkeypatch, tmp_path):
    """The README's ``--quick`` used to overwrite docs/benchmarks with quick numbers."""
    tool = load_tool()
    monkeypatch.chdir(tmp_path)
    args = tool.parse_args(['--quick'])
    assert args.out.startswith(osp.join('work_dirs', 'benchmark', ''))
    docs = osp.join(ROOT, 'docs', 'benchmarks')
    assert osp.abspath(tool.parse_args(['--update-docs']).out) == docs
    for argv, message in [(['--quick', '--out', docs], 'a run with --quick would replace them'),
                          (['--update-docs', '--quick'], 'a run with --quick would replace them'),
                          (['--update-docs', '--models',
                            'RAVLT-S'], 'a run with --models would replace'),
                          (['--update-docs', '--skip-ops'], 'a run with --skip-ops would replace'),
                          (['--out', docs], 'update them on purpose with --update-docs'),
                          (['--update-docs', '--out', str(tmp_path)], 'drop --out')]:
        with pytest.raises(SystemExit) as info:
            tool.parse_args(argv)
        assert info.value.code == 2
        assert message in capsys.readouterr().err, argv


def test_cuda_runs_record_the_tf32_switches(tmp_path):
    """A CUDA run's meta and summary state whether TF32 was allowed (no sweep, no GPU needed)."""
    tool = load_tool()
    assert tool.precision_meta(torch.device('cpu')) == {}
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:  # monkeypatch cannot restore these (module attributes served by __getattr__)
        for matmul, cudnn in ((True, False), (False, True)):
            torch.backends.cuda.matmul.allow_tf32 = matmul
            torch.backends.cudnn.allow_tf32 = cudnn
            meta = tool.precision_meta(torch.device('cuda', 0))
            assert meta['cuda_matmul_allow_tf32'] is matmul and meta['cudnn_allow_tf32'] is cudnn
            assert meta['float32_matmul_precision'] == torch.get_float32_matmul_precision()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    meta = dict(
        date='2026-01-01 00:00',
        device_name='GPU',
        threads=1,
        torch=torch.__version__,
        matmul_gflops_s=1.0,
        quick=True,
        allocator='default',
        **meta)
    json.dumps(meta)  # summary.json holds it as it is
    tool.write_summary_md(tmp_path / 'summary.md', meta, [], {}, [])
    text = (tmp_path / 'summary.md').read_text()
    assert ('TF32: torch.backends.cuda.matmul.allow_tf32=False, '
            'torch.backends.cudnn.allow_tf32=True.') in text
    cpu_meta = {k: v for k, v in meta.items() if k not in tool.precision_meta(torch.device('cuda'))}
    tool.write_summary_md(tmp_path / 'cpu.md', cpu_meta, [], {}, [])
    assert 'TF32' not in (tmp_path / 'cpu.md').read_text()


def test_onnx_rows_skip_with_the_reason_and_enter_the_summary(tmp_path):
    """ONNX Runtime rows compare CPU runtimes: another device gives skipped rows with the reason;
    measured rows become the summary's PyTorch-vs-ONNX-Runtime table."""
    import argparse
    tool = load_tool()

    class Progress:
        done_count = 0

        def step(self, _):
            pass

        def done(self):
            self.done_count += 1

    args = argparse.Namespace(onnx_models=['RAVLT-T'], onnx_sizes=[(64, 64), (64, 96)])
    rows, progress = [], Progress()
    tool.run_onnx(args, torch.device('cuda', 0), progress, rows)
    reason = 'skipped: ONNX Runtime rows compare CPU runtimes; run with --device cpu'
    assert [r['status'] for r in rows] == [reason] * 2
    assert progress.done_count == 2
    measured = dict(
        model='RAVLT-S',
        input='800x1344',
        pixels=800 * 1344,
        threads=2,
        torch_s=3.0,
        ort_s=4.5,
        ort_vs_torch=1.5,
        max_normalised_error=2e-6,
        ort_top_ops='MatMul 60%; Softmax 20%',
        status='ok')
    meta = dict(
        date='d',
        device_name='cpu',
        threads=2,
        torch='t',
        matmul_gflops_s=1.0,
        quick=False,
        allocator='default')
    path = tmp_path / 'summary.md'
    tool.write_summary_md(str(path), meta, [], {}, [], [measured] + rows[:1])
    text = path.read_text()
    expected = '| RAVLT-S | 800x1344 | 3.000 | 4.500 | 1.50 | 2.0e-06 | MatMul 60%; Softmax 20% |'
    assert expected in text
    assert '| RAVLT-T | 64x64 | - | - | - | - | skipped: ONNX Runtime rows' in text
