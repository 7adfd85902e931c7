#!/usr/bin/env bash
# The main job on built-in data: generate the synthetic demo sets, train RecNeXt-M0
# with Mask R-CNN (COCO format) and with Semantic FPN (ADE20K layout) on this machine,
# evaluate with the real CocoMetric / IoUMetric, print the results, evaluate both again in
# their deploy form (fused), and draw both models' predictions on two demo val images.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=.venv/bin/python
WORK=${DEMO_WORK_DIR:-work_dirs/demo}
start=$(date +%s)

if [[ ! -f data/demo/coco/annotations/instances_val2017.json || ! -d data/demo/ade/annotations/validation ]]; then
  echo "==> generating the demo data (seed 0)"
  $PY tools/make_demo_data.py --out data/demo --seed 0
fi

# run_step LOG WHAT CMD...: run CMD with its output in LOG; on failure show LOG's tail and stop.
run_step() {
  local log=$1 what=$2
  shift 2
  if ! "$@" > "$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "error: $what failed (full log: $log)" >&2
    exit 1
  fi
}

# The checkpoint a demo job ended with.
checkpoint_of() { cat "$WORK/$1/last_checkpoint"; }

# Train one demo job: full log to $WORK/<name>.out, progress lines to the terminal.
train_job() {
  local name=$1 config=$2 progress=$3
  rm -rf "${WORK:?}/$name"
  mkdir -p "$WORK"
  if ! $PY tools/train.py "$config" --work-dir "$WORK/$name" 2>&1 | tee "$WORK/$name.out" \
      | { grep --line-buffered -E "$progress" || true; }; then
    tail -n 20 "$WORK/$name.out" >&2
    echo "error: the $name demo failed (full log: $WORK/$name.out)" >&2
    exit 1
  fi
}

echo "==> [1/2] Mask R-CNN + RecNeXt-M0 on data/demo/coco (CPU, from scratch)"
train_job coco configs/demo/recnext_m0_demo_coco.py 'Epoch\(train\).*\[ *([0-9]+)/\1\]|bbox_mAP_copypaste|segm_mAP_copypaste|^error'
echo "==> [2/2] Semantic FPN + RecNeXt-M0 on data/demo/ade (CPU, from scratch)"
train_job ade configs/demo/recnext_m0_demo_ade.py 'Iter\(train\).*[0-9]00/|Iter\(val\).*mIoU|^error'

echo
echo "==> results ($(( $(date +%s) - start )) s wall time)"
$PY tools/log_results.py --table "$WORK/coco" "$WORK/ade"
echo
echo "logs:        $WORK/coco/<timestamp>/, $WORK/ade/<timestamp>/ (json: vis_data/scalars.json)"
echo "checkpoints: $(ls "$WORK"/coco/*.pth "$WORK"/ade/*.pth 2>/dev/null | tr '\n' ' ')"

echo
echo "==> the same checkpoints evaluated in the deploy form (model.backbone.deploy=True: BN folded, fused)"
# The deploy form must score as the training form does; a layout or fusion bug shows here at once.
deploy_job() {
  local name=$1 config=$2 metrics=$3 count=$4
  local checkpoint
  checkpoint=$(checkpoint_of "$name")
  run_step "$WORK/deploy_$name.out" "evaluating the $name demo in its deploy form" \
    $PY tools/test.py "$config" "$checkpoint" --work-dir "$WORK/deploy_$name" \
    --cfg-options model.backbone.deploy=True
  # The training log's last evaluation: its last COUNT metric values.
  echo "$name, training form: $(grep -oE "$metrics" "$WORK/$name.out" | tail -n "$count" | tr '\n' ' ')"
  echo "$name, deploy form:   $(tail -n 1 "$WORK/deploy_$name.out" | grep -oE "$metrics" | tr '\n' ' ')"
}
deploy_job coco configs/demo/recnext_m0_demo_coco.py '(coco/)?(bbox|segm)_mAP[:=] ?[0-9.]+' 2
deploy_job ade configs/demo/recnext_m0_demo_ade.py 'mIoU[:=] ?[0-9.]+' 1

echo
echo "==> predictions drawn on two demo val images (tools/infer.py)"
draw_job() {
  local name=$1 config=$2 images=$3
  local checkpoint
  checkpoint=$(checkpoint_of "$name")
  # shellcheck disable=SC2046  # the two image paths
  run_step "$WORK/vis_$name.out" "drawing the $name predictions" \
    $PY tools/infer.py "$config" "$checkpoint" $(ls "$images"/*.jpg | head -n 2) --out-dir "$WORK/predictions/$name"
  echo "$name: $(grep -E '\.(jpg|png)$' "$WORK/vis_$name.out" | tr '\n' ' ')"
}
draw_job coco configs/demo/recnext_m0_demo_coco.py data/demo/coco/val2017
draw_job ade configs/demo/recnext_m0_demo_ade.py data/demo/ade/images/validation

echo
echo "==> the same checkpoints exported through mmdeploy (deploy form) and checked on the val set"
# Each export is evaluated with mmdeploy's backend model beside PyTorch and written only if the
# metrics agree (mm_common/deploy.py). The two run side by side, one thread each.
export_job() {
  local name=$1 config=$2
  local checkpoint
  checkpoint=$(checkpoint_of "$name")
  rm -rf "${WORK:?}/export/$name"
  OMP_NUM_THREADS=1 run_step "$WORK/export_$name.out" "exporting the $name demo" \
    $PY tools/export.py "$config" "$checkpoint" --format onnx openvino --out "$WORK/export/$name"
}
export_start=$(date +%s)
export_job coco configs/demo/recnext_m0_demo_coco.py &
coco_export=$!
export_job ade configs/demo/recnext_m0_demo_ade.py &
ade_export=$!
wait "$coco_export" || exit 1
wait "$ade_export" || exit 1
for name in coco ade; do
  grep -E '^[^ ].*\((fp32|bf16)\)|^ *written:' "$WORK/export_$name.out"
done
echo "(exported and checked in $(( $(date +%s) - export_start )) s)"

echo
echo "==> their test-time forward, ms per image on 4 val images (benchmark --test-forward)"
time_job() {
  local name=$1 config=$2
  run_step "$WORK/time_$name.out" "timing the $name demo" \
    $PY tools/benchmark.py --no-models --runtime torch onnxruntime openvino --repeats 5 \
    --test-forward "$config" "$(checkpoint_of "$name")" --test-forward-images 4 --exported "$WORK/export/$name"
  grep -E 'test-time forward' "$WORK/time_$name.out"
}
time_job coco configs/demo/recnext_m0_demo_coco.py
time_job ade configs/demo/recnext_m0_demo_ade.py
