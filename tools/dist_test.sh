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

if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [tools/test.py options]" >&2
    exit 2
fi
if [ ! -f "$2" ]; then
    echo "error: checkpoint '$2' does not exist" >&2
    exit 2
fi
exec "$(dirname "${BASH_SOURCE[0]}")/dist_launch.sh" "$3" test.py "$1" "$2" --launcher pytorch \
    "${@:4}"
