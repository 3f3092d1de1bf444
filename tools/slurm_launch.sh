#!/usr/bin/env bash
# Shared by slurm_train.sh and slurm_test.sh (use those): srun one task per GPU running a tool.
#
#   tools/slurm_launch.sh PARTITION JOB_NAME TOOL [TOOL arguments]     (TOOL: train.py, test.py)
#
#   GPUS (8)  GPUS_PER_NODE (8, at most GPUS)  CPUS_PER_TASK (5)  SRUN_ARGS (extra srun options)
#   GRES (gpu:GPUS_PER_NODE; set it empty, GRES=, on a partition without GPUs)
#   MASTER_PORT (29500)  PYTHON (default: the repository's .venv if present, else python)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME TOOL [TOOL arguments]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
TOOL=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
GRES=${GRES-gpu:$GPUS_PER_NODE}
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi

# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    ${GRES:+--gres="$GRES"} \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} \
    "$PYTHON" -u "$ROOT/tools/$TOOL" "$@"
