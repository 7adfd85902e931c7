#!/usr/bin/env bash
# Usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#        tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args...]
# One srun task per GPU; mmengine's slurm launcher reads the ranks from SLURM_*.
# The config, data roots and checkpoints are checked once, here, before srun.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args...]" >&2; exit 2
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
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
check_count GPUS "$GPUS"; check_count GPUS_PER_NODE "$GPUS_PER_NODE"; check_count CPUS_PER_TASK "$CPUS_PER_TASK"
"$PYTHON" "$ROOT/tools/train.py" "$CONFIG" "${WORK_DIR_ARGS[@]}" "$@" --check-only
# SRUN_ARGS is split on spaces on purpose (e.g. SRUN_ARGS="--quotatype=auto --time=2:00:00").
# shellcheck disable=SC2086
exec srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
  "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" "${WORK_DIR_ARGS[@]}" --launcher slurm "$@"
