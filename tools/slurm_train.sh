#!/usr/bin/env bash
# Training on a Slurm cluster: one task per GPU started by srun, mmengine's --launcher slurm.
#
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options]
#
#   GPUS (8)  GPUS_PER_NODE (8, at most GPUS)  CPUS_PER_TASK (5)  SRUN_ARGS (extra srun options)
#   GRES (gpu:GPUS_PER_NODE; set it empty, GRES=, on a partition without GPUs)
#   MASTER_PORT (29500)  PYTHON (default: the repository's .venv if present, else python)
set -euo pipefail

if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options]" >&2
    exit 2
fi
exec "$(dirname "${BASH_SOURCE[0]}")/slurm_launch.sh" "$1" "$2" train.py "$3" --work-dir "$4" \
    --launcher slurm "${@:5}"
