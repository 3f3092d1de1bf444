#!/usr/bin/env bash
# Shared by dist_train.sh and dist_test.sh (use those): torchrun GPUS processes running a tool.
#
#   tools/dist_launch.sh GPUS TOOL CONFIG [TOOL arguments]     (TOOL: train.py, test.py)
#
#   NNODES (1)  NODE_RANK (0)  MASTER_ADDR (127.0.0.1)  PORT (29500)
#   PYTHON: interpreter (default: the repository's .venv if present, else python)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 3 ]; then
    echo "usage: $0 GPUS TOOL CONFIG [TOOL arguments]" >&2
    exit 2
fi
GPUS=$1
TOOL=$2
CONFIG=$3
shift 3
if ! [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: GPUS must be a positive number of processes per node, got '$GPUS'" >&2
    exit 2
fi
if [ ! -f "$CONFIG" ]; then
    echo "error: config file '$CONFIG' not found (configs live in configs/)" >&2
    exit 2
fi
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi

PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$GPUS" \
    "$ROOT/tools/$TOOL" "$CONFIG" "$@"
