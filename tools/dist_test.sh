#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
# CHECKPOINT: a path or URL; mmdet 2.x / mmseg 0.x checkpoints work too.
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
# The config, data root and checkpoint are checked once (a URL fetched into the cache)
# before torchrun starts any process: bad input is one line and exit code 2.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "error: missing arguments; usage: $0 CONFIG CHECKPOINT GPUS [test.py args...]" >&2; exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
shift 3
source "$(dirname "${BASH_SOURCE[0]}")/launch_env.sh"
check_count GPUS "$GPUS"
"$PYTHON" "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" "$@" --check-only
exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --nproc_per_node="$GPUS" --master_port="${PORT:-29500}" \
  "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
