#!/usr/bin/env bash
# Set up the Python environment for mmlinattn on a CPU machine. Idempotent: a second run with the same
# inputs checks a stamp file and returns in seconds.
#
# Environment:
#   PYTHON               use this interpreter instead of creating ./.venv (e.g. PYTHON=/usr/bin/python3)
#   MMLINATTN_CACHE      where the built mmcv wheel is kept between clones (default ~/.cache/mmlinattn)
#
# Every workaround needed by this stack lives in this file, each with the reason:
#   1. setuptools<81: mmcv's setup.py and mmengine's package utils import pkg_resources, removed in 81.
#   2. mmcv 2.1.0 is built from source WITH its CPU ops (MMCV_WITH_OPS=1) and --no-build-isolation:
#      an isolated build either fails (new setuptools) or silently drops the compiled ops.
#      The wheel is built once into $MMLINATTN_CACHE/wheels and reused afterwards (~15 min saved).
#      CFLAGS replaces Python's defaults, so the full -O3 string is given (plain -g0 would mean -O0).
#   3. torchvision==0.28.0 (timm imports it when imported, and mmlinattn imports timm for its
#      classifiers, so it stays; newer versions drag in torch 2.15 + CUDA). Its PyPI wheel is a
#      CUDA build whose _C.so cannot load with CPU torch, and its _meta_registrations.py then raises
#      "operator torchvision::nms does not exist" at import. We patch those two decorators to register
#      only when the C++ ops loaded (sed below); afterwards torchvision imports, and its ops fall back
#      to Python or raise a clear error.
#   4. torch>=2.6 defaults torch.load to weights_only=True, which mmengine 0.10.7 does not expect.
#      That is handled inside the package (mmlinattn/utils/checkpoint.py), not here.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: bash tools/setup_env.sh [-h|--help]

Creates ./.venv (or uses $PYTHON) and installs torch 2.13.0 (CPU), mmengine, mmcv 2.1.0 built with
its CPU ops (cached in $MMLINATTN_CACHE/wheels, default ~/.cache/mmlinattn), mmdet, mmseg, timm and
the test tools, pinned by constraints.txt. A re-run with nothing changed returns in seconds.
`make test` and `make demo` run it first.

environment:
  PYTHON            use this interpreter instead of creating ./.venv
  MMLINATTN_CACHE   where the built mmcv wheel is kept between clones
USAGE
}
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    '') ;;
    *) echo "setup_env.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${MMLINATTN_CACHE:-$HOME/.cache/mmlinattn}"
WHEELS="$CACHE/wheels"
MMCV_CFLAGS="-Wsign-compare -DNDEBUG -g0 -fwrapv -O3 -Wall"

log() { printf '[setup] %s\n' "$*" >&2; }

if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
    STAMP_DIR="$CACHE/stamps/$(echo "$PY" | md5sum | cut -c1-12)"
else
    if [[ ! -x .venv/bin/python ]]; then
        log "creating .venv"
        python3 -m venv .venv
    fi
    PY="$ROOT/.venv/bin/python"
    STAMP_DIR="$ROOT/.venv"
fi

# The stamp covers everything that decides what gets installed.
want="$(cat constraints.txt setup.py tools/setup_env.sh | md5sum | cut -c1-32)"
stamp="$STAMP_DIR/.mmlinattn-setup"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$PY" -c "import mmlinattn" 2>/dev/null; then
    log "environment up to date ($PY)"
    exit 0
fi

start=$(date +%s)
# The machine's pip config lists local indexes that lack most packages; pip warns once per package
# ("Location ... is ignored"). Those lines are noise, everything else is shown.
pip() { "$PY" -m pip --disable-pip-version-check "$@" 2> >(grep -v 'is ignored: it is neither' >&2); }
C=(-c constraints.txt)

log "installing torch 2.13.0 (CPU), build tools"
pip install -q "${C[@]}" torch==2.13.0+cpu "setuptools<81" wheel ninja

mkdir -p "$WHEELS"
mmcv_whl=$(ls "$WHEELS"/mmcv-2.1.0-*.whl 2>/dev/null | head -n1 || true)
if [[ -z "$mmcv_whl" ]]; then
    log "building mmcv 2.1.0 with CPU ops into $WHEELS (one time, ~10-15 min on 2 cores)"
    pip install -q "${C[@]}" mmengine==0.10.7
    tmp="$(mktemp -d)"
    MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="$(nproc)" CFLAGS="$MMCV_CFLAGS" \
        pip wheel -q "${C[@]}" --no-deps --no-build-isolation mmcv==2.1.0 -w "$tmp"
    mv "$tmp"/mmcv-2.1.0-*.whl "$WHEELS"/
    rm -rf "$tmp"
    mmcv_whl=$(ls "$WHEELS"/mmcv-2.1.0-*.whl | head -n1)
fi
case "$mmcv_whl" in
    *none-any.whl) log "ERROR: $mmcv_whl has no compiled ops; delete it and rerun"; exit 1 ;;
esac

log "installing mmcv (cached wheel), mmengine, mmdet, mmseg, timm, test tools"
pip install -q "${C[@]}" "$mmcv_whl"
pip install -q "${C[@]}" -e ".[tests]" --no-build-isolation

# Workaround 3 (see header): make the CUDA torchvision wheel importable on CPU torch.
TV=$("$PY" -c 'import importlib.util as u; print(u.find_spec("torchvision").submodule_search_locations[0])')
sed -i -E 's/^@torch\.library\.register_fake\("torchvision::(q?nms)"\)/@(torch.library.register_fake("torchvision::\1") if torchvision.extension._has_ops() else (lambda f: f))/' \
    "$TV/_meta_registrations.py"

log "checking the installation"
"$PY" - <<'PYCHECK'
from mmcv.ops import nms, RoIAlign  # fails if mmcv was built without ops
import mmdet, mmseg, timm, torchvision, mmlinattn  # noqa: F401
print('[setup] ok: torch', __import__('torch').__version__, 'mmcv', __import__('mmcv').__version__,
      'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__, 'timm', timm.__version__)
PYCHECK

mkdir -p "$STAMP_DIR"
echo "$want" > "$stamp"
log "done in $(( $(date +%s) - start )) s"
