#!/usr/bin/env bash
# Distributed evaluation with torchrun: PyTorch DDP via mmengine's launcher (--launcher pytorch).
#
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py options]
#
# GPUS is the number of processes on this node (on a machine without CUDA: CPU processes, gloo
# backend). Several nodes: run it on each with NNODES, NODE_RANK and MASTER_ADDR set.
#   NNODES (1)  NODE_RANK (0)  MASTER_ADDR (127.0.0.1)  PORT (29500)
#   PYTHON: interpreter (default: the repository's .venv if present, else python)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [tools/test.py options]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
shift 3
if ! [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: GPUS must be a positive number of processes per node, got '$GPUS'" >&2
    exit 2
fi
if [ ! -f "$CONFIG" ]; then
    echo "error: config file '$CONFIG' not found (configs live in configs/)" >&2
    exit 2
fi
if [ ! -f "$CHECKPOINT" ]; then
    echo "error: checkpoint '$CHECKPOINT' does not exist" >&2
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
    "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
