#!/usr/bin/env bash
# Usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#        tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# CHECKPOINT: a path or URL; mmdet 2.x / mmseg 0.x checkpoints work too.
# The config, data root and checkpoint are checked once, here, before srun.
set -euo pipefail
if [[ $# -lt 4 ]]; then
  echo "error: missing arguments; usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]" >&2; exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
shift 4
source "$(dirname "${BASH_SOURCE[0]}")/launch_env.sh"
slurm_run "$PARTITION" "$JOB_NAME" test.py 2 "$CONFIG" "$CHECKPOINT" "$@"
