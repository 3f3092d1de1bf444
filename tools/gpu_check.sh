#!/usr/bin/env bash
# One command for the first CUDA machine: the CUDA test suite, then the benchmark sweep on the GPU.
#
#   tools/gpu_check.sh [OUT_DIR]        (OUT_DIR: $1, else $OUT, else work_dirs/gpu_check/<time>)
#
# Writes into OUT_DIR: env.txt (nvidia-smi, versions), pytest.log and pytest-junit.xml
# (`make test-gpu` with -rA: every test's outcome and skip/xfail reason), benchmark.log and
# benchmark/ (tools/analysis/benchmark.py --device cuda: csv, summary.json, summary.md, plots).
# Both parts run even if the other fails; the exit status is non-zero if either failed.
#
# The interpreter is $PYTHON, else the repository's .venv. That .venv is made by
# tools/setup_env.sh with the CPU build of torch (and its bin/python links to the base interpreter
# of the machine that made it): on the GPU machine it needs a CUDA build of the same torch version
# (e.g. the cu130 wheel from https://download.pytorch.org/whl/cu130, which matches the
# torchvision 0.28.0+cu130 that set-up installs) and, for the Mask R-CNN test, mmcv rebuilt with
# its CUDA ops (MMCV_WITH_OPS=1 FORCE_CUDA=1); without CUDA ops that one test is skipped with that
# reason. This script checks for a CUDA torch and stops with one line if there is none; it never
# runs set-up (which would install the CPU torch again).
#
# Environment:
#   PYTHON                interpreter (default: .venv/bin/python of the repository)
#   GPU_CHECK_BENCHMARK   full (default) | quick | none
#
# Time on one H200 (estimates, not measured: no GPU was available when this was written):
#   tests: about 2-3 min (CUDA/cuDNN start-up, 2 backbones x 2 dtypes at 800 x 1333 with backward,
#   the demo training steps, ~120 small op cases; the 2-GPU test is skipped on one GPU);
#   benchmark: the full sweep about 4-8 min (8 backbone rows x 5 sizes up to 2048 x 2048 and the
#   op rows up to 65,536 tokens, 4-6 timed calls each, most well under a second; the explicit
#   N x N rows skipped above 8 GiB; 3 training steps at 800 x 1344; model builds), --quick about
#   1 min. Together that can pass 10 minutes: where one command may not run that long, use
#   GPU_CHECK_BENCHMARK=quick (or run the full sweep as a second command).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT_DIR="${1:-${OUT:-}}"
if [ -z "$OUT_DIR" ]; then
    OUT_DIR="work_dirs/gpu_check/$(date +%Y%m%d_%H%M%S)"
fi
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
if [ -z "${PYTHON:-}" ]; then
    PYTHON="$ROOT/.venv/bin/python"
fi
BENCHMARK="${GPU_CHECK_BENCHMARK:-full}"
case "$BENCHMARK" in
    full | quick | none) ;;
    *) echo "error: GPU_CHECK_BENCHMARK must be full, quick or none, got '$BENCHMARK'" >&2; exit 2 ;;
esac
if [ ! -x "$PYTHON" ] && ! command -v "$PYTHON" > /dev/null; then
    echo "error: interpreter '$PYTHON' not found (set PYTHON=/path/to/python)" >&2
    exit 2
fi

{
    echo "== $(date '+%Y-%m-%d %H:%M:%S') $(hostname) $ROOT ($(git rev-parse --short HEAD 2> /dev/null || echo 'no git'))"
    echo '== nvidia-smi'
    if command -v nvidia-smi > /dev/null; then nvidia-smi || true; else echo 'nvidia-smi not found'; fi
    echo '== versions'
    "$PYTHON" - << 'PY' || true
import platform

import torch

print('python', platform.python_version(), '| torch', torch.__version__, '| CUDA (build)',
      torch.version.cuda, '| cuDNN', torch.backends.cudnn.version())
print('cuda available:', torch.cuda.is_available(), '| devices:', torch.cuda.device_count())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f'  cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor}')
print('TF32 defaults: torch.backends.cuda.matmul.allow_tf32 =',
      torch.backends.cuda.matmul.allow_tf32, '| torch.backends.cudnn.allow_tf32 =',
      torch.backends.cudnn.allow_tf32)
for name in ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'timm', 'torchvision'):
    try:
        print(name, __import__(name).__version__)
    except Exception as err:  # report, do not stop
        print(name, 'not importable:', type(err).__name__, err)
try:
    from mmcv.ops import get_compiling_cuda_version
    print('mmcv compiled CUDA ops:', get_compiling_cuda_version())
except Exception as err:
    print('mmcv ops not importable:', type(err).__name__, err)
PY
} 2>&1 | tee "$OUT_DIR/env.txt"

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null; then
    echo "error: $PYTHON has no usable CUDA (torch.cuda.is_available() is False): install a CUDA build of torch there (see tools/gpu_check.sh)" >&2
    exit 1
fi

tests_rc=0
PYTEST_ARGS="-rA --junitxml=$OUT_DIR/pytest-junit.xml"
echo "== tests: make test-gpu ($PYTEST_ARGS)"
if command -v make > /dev/null; then
    make --no-print-directory test-gpu PYTHON="$PYTHON" PYTEST_ARGS="$PYTEST_ARGS" 2>&1 |
        tee "$OUT_DIR/pytest.log" || tests_rc=$?
else  # the same command as the Makefile's test-gpu target
    # shellcheck disable=SC2086  # PYTEST_ARGS is a list of options
    "$PYTHON" -m pytest -p no:cacheprovider -m cuda --continue-on-collection-errors \
        $PYTEST_ARGS tests 2>&1 |
        tee "$OUT_DIR/pytest.log" || tests_rc=$?
fi

bench_rc=0
if [ "$BENCHMARK" != none ]; then
    bench_args=(--device cuda --out "$OUT_DIR/benchmark")
    if [ "$BENCHMARK" = quick ]; then bench_args+=(--quick); fi
    echo "== benchmark: tools/analysis/benchmark.py ${bench_args[*]}"
    "$PYTHON" tools/analysis/benchmark.py "${bench_args[@]}" 2>&1 |
        tee "$OUT_DIR/benchmark.log" || bench_rc=$?
fi

echo "== done: tests exit $tests_rc, benchmark exit $bench_rc ($BENCHMARK); results in $OUT_DIR"
if [ "$tests_rc" -ne 0 ] || [ "$bench_rc" -ne 0 ]; then
    exit 1
fi
