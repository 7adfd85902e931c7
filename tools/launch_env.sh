# Sourced by tools/{dist,slurm}_{train,test}.sh: the interpreter and quiet third-party
# warnings for every process they start. The package itself (mm_efficient_backbones) comes
# from the environment: `make setup` installs this checkout into .venv, editable.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$( [[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python )}
# setuptools' pkg_resources deprecation, printed twice per process on importing mmengine.
export PYTHONWARNINGS="ignore:pkg_resources is deprecated as an API${PYTHONWARNINGS:+,$PYTHONWARNINGS}"

# check_count NAME VALUE: a positive integer, or one line and exit code 2.
check_count() {
  if ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
    echo "error: $1 must be a positive number of processes, got '$2'" >&2; exit 2
  fi
}

# slurm_run PARTITION JOB_NAME TOOL N ARGS...: check the input once here (tools/TOOL
# --check-only), then srun one task per GPU running tools/TOOL ARGS with `--launcher slurm`
# after its first N arguments. GPUS, GPUS_PER_NODE, CPUS_PER_TASK and SRUN_ARGS as in mmdet.
slurm_run() {
  local partition=$1 job_name=$2 tool=$ROOT/tools/$3 lead=$4
  shift 4
  GPUS=${GPUS:-8}
  check_count GPUS "$GPUS"  # before the arithmetic below reads it
  GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
  CPUS_PER_TASK=${CPUS_PER_TASK:-5}
  check_count GPUS_PER_NODE "$GPUS_PER_NODE"; check_count CPUS_PER_TASK "$CPUS_PER_TASK"
  "$PYTHON" "$tool" "$@" --check-only
  # SRUN_ARGS is split on spaces on purpose (e.g. SRUN_ARGS="--quotatype=auto --time=2:00:00").
  # shellcheck disable=SC2086
  exec srun -p "$partition" --job-name="$job_name" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
    "$PYTHON" -u "$tool" "${@:1:$lead}" --launcher slurm "${@:$lead+1}"
}
