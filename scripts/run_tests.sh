#!/usr/bin/env bash
# Run the pytest suite in .venv. pytest's exit code 5 ("no tests collected") is a
# failure here: a green run must have run tests.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# One worker per core (PYTEST_WORKERS to change it); each test file stays on one worker, so
# its module-scoped fixtures (trained demo models) are built once.
.venv/bin/python -m pytest -ra -n "${PYTEST_WORKERS:-$(nproc)}" --dist loadfile "$@"
status=$?
if [[ $status -eq 5 ]]; then
  echo "error: pytest collected no tests (exit code 5); is tests/ missing?" >&2
  exit 1
fi
exit $status
