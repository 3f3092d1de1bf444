#!/usr/bin/env bash
# Distributed training with torchrun: PyTorch DDP via mmengine's launcher (--launcher pytorch).
#
#   tools/dist_train.sh CONFIG GPUS [tools/train.py options]
#
# GPUS is the number of processes on this node (on a machine without CUDA: CPU processes, gloo
# backend). Several nodes: run it on each with NNODES, NODE_RANK and MASTER_ADDR set.
#   NNODES (1)  NODE_RANK (0)  MASTER_ADDR (127.0.0.1)  PORT (29500)
#   PYTHON: interpreter (default: the repository's .venv if present, else python)
# Example: PORT=29501 tools/dist_train.sh configs/maskrcnn_ravlt_s_coco.py 8 --amp
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [tools/train.py options]" >&2
    exit 2
fi
exec "$(dirname "${BASH_SOURCE[0]}")/dist_launch.sh" "$2" train.py "$1" --launcher pytorch "${@:3}"
