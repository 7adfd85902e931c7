#!/usr/bin/env bash
# Set up .venv with the pinned OpenMMLab 2.0 stack (requirements/stack.txt) and this
# package installed editable. Safe to run again: a stamp file records what was
# installed, and a second run with unchanged pins returns at once.
#
# mmcv 2.1.0 has no wheel for torch 2.14, so it is built from its sdist once
# (about 10 min on 2 cores for the CPU ops) and the wheel is cached outside the repo,
# keyed by mmcv/torch/device/python versions. Set MMCV_CACHE_DIR to move the cache.
# Where torch sees a CUDA GPU and nvcc is on PATH, the CUDA ops are built too
# (FORCE_CUDA=1 forces that, e.g. on a build node without a GPU).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PINS="$ROOT/requirements/stack.txt"
CACHE_DIR=${MMCV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mm-efficient-backbones}
# The sdist is pinned by content, so a changed upload can never slip in.
MMCV_SDIST_URL=https://files.pythonhosted.org/packages/a7/19/f97f0fd4d432113a232e75f965335be6b7bb6557ae9faf8051e9a012cadd/mmcv-2.1.0.tar.gz
MMCV_SDIST_SHA256=d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f

step() { printf '==> %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found: install Python 3.10-3.12 or set PYTHON=/path/to/python3"
py_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$py_version" in
  3.10|3.11|3.12) ;;
  *) die "Python $py_version is not supported by torch 2.14 + mmcv 2.1: set PYTHON=/path/to/python3.11" ;;
esac
command -v c++ >/dev/null || die "no C++ compiler (c++) on PATH: mmcv's ops must be compiled; install g++ >= 10 (apt-get install g++)"

stamp_of_inputs() {
  cat "$PINS" "$ROOT/scripts/setup_env.sh" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1
}
STAMP="$VENV/.stack-stamp"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_of_inputs)" ]]; then
  echo "==> .venv is up to date (requirements/stack.txt unchanged); nothing to install"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  step "creating $VENV with Python $py_version"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# The local package mirrors make pip warn about every name they lack: noise, not news.
pip_install() {
  "$PY" -m pip install --disable-pip-version-check -c "$PINS" "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
pin_of() { sed -n "s/^$1==\(.*\)$/\1/p" "$PINS"; }

step "installing torch, mmengine, timm and the build tools (pinned in requirements/stack.txt)"
pip_install -q torch torchvision setuptools ninja wheel mmengine timm pycocotools \
  ftfy regex matplotlib pytest pytest-xdist

# ---- mmcv: cached wheel, or a one-time build from source ----
mmcv_version=$(pin_of mmcv)
torch_version=$(pin_of torch)
device=cpu
if [[ "${FORCE_CUDA:-0}" == 1 ]] || { command -v nvcc >/dev/null && "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; }; then
  cuda=$("$PY" -c 'import torch; print(torch.version.cuda or "")')
  [[ -n "$cuda" ]] || die "a CUDA build was asked for, but torch $torch_version is a CPU build: install a CUDA torch wheel first"
  device="cu${cuda//./}"
fi
wheel_dir="$CACHE_DIR/mmcv-$mmcv_version-torch$torch_version-$device-py$py_version-$(uname -m)"
mkdir -p "$wheel_dir" "$CACHE_DIR/sdist"
wheel=$(ls "$wheel_dir"/mmcv-*.whl 2>/dev/null | head -1 || true)
if [[ -z "$wheel" ]]; then
  sdist="$CACHE_DIR/sdist/mmcv-$mmcv_version.tar.gz"
  if [[ ! -f "$sdist" ]] || ! echo "$MMCV_SDIST_SHA256  $sdist" | sha256sum -c --quiet - 2>/dev/null; then
    step "downloading the mmcv $mmcv_version source distribution"
    "$PY" - "$MMCV_SDIST_URL" "$sdist.part" <<'PYEOF'
import sys, urllib.request
urllib.request.urlretrieve(sys.argv[1], sys.argv[2])
PYEOF
    echo "$MMCV_SDIST_SHA256  $sdist.part" | sha256sum -c --quiet - || die "the mmcv sdist's sha256 does not match the pin: download corrupted?"
    mv "$sdist.part" "$sdist"
  fi
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  tar -xzf "$sdist" -C "$build"
  src="$build/mmcv-$mmcv_version"
  # torch 2.14's headers need C++20; mmcv hard-codes C++17.
  grep -q -- '-std=c++17' "$src/setup.py" || die "mmcv's setup.py has no -std=c++17 flag to patch: unexpected sdist"
  sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  jobs=${MAX_JOBS:-$(nproc)}
  step "building mmcv $mmcv_version with $device ops on $jobs cores (one time, ~10 min on 2 cores; log: $build/build.log)"
  export MMCV_WITH_OPS=1 MAX_JOBS=$jobs
  [[ "$device" == cpu ]] && export FORCE_CUDA=0 || export FORCE_CUDA=1
  # ninja prints "[n/N] ..." per compiled file: show those as progress.
  if ! "$PY" -m pip wheel -v --no-build-isolation --no-deps -w "$build/dist" "$src" >"$build/build.log" 2>&1 \
      < /dev/null & then :; fi
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 20
    progress=$(grep -o '\[[0-9]*/[0-9]*\]' "$build/build.log" | tail -1 || true)
    echo "    mmcv build: ${progress:-preparing} ($(date +%H:%M:%S))"
  done
  if ! wait "$pid"; then
    tail -n 30 "$build/build.log" >&2
    die "the mmcv build failed (last lines above; full log: $build/build.log)"
  fi
  built=$(ls "$build"/dist/mmcv-*.whl)
  cp "$built" "$wheel_dir/.tmp.whl" && mv "$wheel_dir/.tmp.whl" "$wheel_dir/$(basename "$built")"
  wheel="$wheel_dir/$(basename "$built")"
  step "cached $wheel"
else
  step "using the cached mmcv wheel $wheel"
fi
pip_install -q "$wheel"

step "installing mmdet, mmsegmentation and this package (editable)"
pip_install -q mmdet mmsegmentation

step "installing the export stack (onnx, onnxscript, onnxruntime, openvino) and mmdeploy (without its dependencies)"
pip_install -q onnx onnxscript onnx-ir onnxruntime openvino aenum
# mmdeploy 1.3.1 declares protobuf<=3.20.2 (onnx 1.23 needs protobuf 4+) and packages it
# never imports on our path; what it does import is installed above or by the stack.
pip_install -q --no-deps mmdeploy
pip_install -q --no-deps --no-build-isolation -e "$ROOT"

step "checking the stack"
"$PY" - <<'PYEOF'
import torch, mmcv, mmengine, mmdet, mmseg, timm
from mmcv.ops import nms, RoIAlign  # fails if mmcv was built without ops
from mm_efficient_backbones import backbones
import onnx, onnxruntime, openvino, mmdeploy.apis  # the export stack (mm_common/deploy.py)
print(f"    torch {torch.__version__}, mmcv {mmcv.__version__} (ops ok), mmengine {mmengine.__version__}, "
      f"mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, timm {timm.__version__}, cuda={torch.cuda.is_available()}")
print(f"    onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}, "
      f"mmdeploy {mmdeploy.__version__}")
PYEOF
stamp_of_inputs > "$STAMP"
step "environment ready: $VENV"
