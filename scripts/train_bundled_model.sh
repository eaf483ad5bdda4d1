#!/usr/bin/env bash
# Rebuild or continue the bundled model with our own commands:
#   synthetic torsos (our generator and Anny bodies, half each) -> HDF5 -> average anchors -> train -> export.
# Needs the optional Anny source: pip install -e ".[anny]".
# Every step resumes. Training continues from training/bundled_576_last.pt (the committed state of the last
# session) when the run directory has no last.pt yet, and hands its state back there when it stops, so the
# model can be trained across sessions on a CPU.
#   bash scripts/train_bundled_model.sh [WORK_DIR] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/bundled}
EPOCHS=${2:-400}
LIB="python -m BreastShapeModelLib"
CONFIG=BreastShapeModel/BreastShapeModelLib/configs/train_synthetic_cpu.yaml
STATE=training/bundled_576_last.pt
mkdir -p "$WORK/run"
$LIB synth 480 --source mix --output_dir "$WORK/torsos" --seed 2028 --spacing 3.0
[ -f "$WORK/mix.hdf5" ] || $LIB preprocess "$WORK/torsos" --output "$WORK/mix.hdf5" --num_points 30000
$LIB anchors "$WORK/mix.hdf5" --output "$WORK/average_anchors.npy"
if [ ! -f "$WORK/run/last.pt" ] && [ -f "$STATE" ]; then
  cp "$STATE" "$WORK/run/last.pt"
  cp training/bundled_576_metrics.csv "$WORK/run/metrics.csv"
fi
trap 'cp "$WORK/run/last.pt" "$STATE"; cp "$WORK/run/metrics.csv" training/bundled_576_metrics.csv' EXIT
# resumes the committed state; a run with no state at all starts from the bundled model's network (fine-tuning)
$LIB train "$CONFIG" --dataset "$WORK/mix.hdf5" --output_dir "$WORK/run" --epochs "$EPOCHS" \
  --init_weights BreastShapeModel/Resources/Models/lirbsm_synthetic_576.pth
$LIB export "$WORK/run" --which last --output BreastShapeModel/Resources/Models/lirbsm_synthetic_576.pth
