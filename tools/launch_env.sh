# Sourced by tools/{dist,slurm}_{train,test}.sh: the interpreter, PYTHONPATH and quiet
# third-party warnings for every process they start.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$( [[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python )}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# setuptools' pkg_resources deprecation, printed twice per process on importing mmengine.
export PYTHONWARNINGS="ignore:pkg_resources is deprecated as an API${PYTHONWARNINGS:+,$PYTHONWARNINGS}"

# check_count NAME VALUE: a positive integer, or one line and exit code 2.
check_count() {
  if ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
    echo "error: $1 must be a positive number of processes, got '$2'" >&2; exit 2
  fi
}
