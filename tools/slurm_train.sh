#!/usr/bin/env bash
# Usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#        tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args...]
# One srun task per GPU; mmengine's slurm launcher reads the ranks from SLURM_*.
# The config, data roots and checkpoints are checked once, here, before srun.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "error: missing arguments; usage: $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args...]" >&2; exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
WORK_DIR_ARGS=()
if [[ $# -gt 0 && $1 != -* ]]; then
  WORK_DIR_ARGS=(--work-dir "$1"); shift
fi
source "$(dirname "${BASH_SOURCE[0]}")/launch_env.sh"
slurm_run "$PARTITION" "$JOB_NAME" train.py $(( 1 + ${#WORK_DIR_ARGS[@]} )) "$CONFIG" "${WORK_DIR_ARGS[@]}" "$@"
