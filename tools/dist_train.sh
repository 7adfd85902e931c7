#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG GPUS [train.py args...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
# Without CUDA, GPUS CPU processes train with gloo (e.g. to try a config here).
# The config, data roots and checkpoints are checked once (URLs fetched into the cache)
# before torchrun starts any process: bad input is one line and exit code 2.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "error: missing arguments; usage: $0 CONFIG GPUS [train.py args...]" >&2; exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
source "$(dirname "${BASH_SOURCE[0]}")/launch_env.sh"
check_count GPUS "$GPUS"
"$PYTHON" "$ROOT/tools/train.py" "$CONFIG" "$@" --check-only
exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --nproc_per_node="$GPUS" --master_port="${PORT:-29500}" \
  "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
