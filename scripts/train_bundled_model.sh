#!/usr/bin/env bash
# Rebuild the bundled model with our own commands: synthetic torsos -> HDF5 -> anchors -> train -> export.
# Every step resumes: re-run the script to continue an interrupted training (e.g. across sessions).
#   bash scripts/train_bundled_model.sh [WORK_DIR] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/bundled}
EPOCHS=${2:-400}
LIB="python -m BreastShapeModelLib"
CONFIG=BreastShapeModel/BreastShapeModelLib/configs/train_synthetic_cpu.yaml
mkdir -p "$WORK"
$LIB synth 500 --output_dir "$WORK/torsos" --seed 2026 --spacing 3.0
[ -f "$WORK/synthetic.hdf5" ] || $LIB preprocess "$WORK/torsos" --output "$WORK/synthetic.hdf5" --num_points 30000
$LIB anchors "$WORK/synthetic.hdf5" --output "$WORK/average_anchors.npy"
$LIB train "$CONFIG" --dataset "$WORK/synthetic.hdf5" --output_dir "$WORK/run" --epochs "$EPOCHS"
$LIB export "$WORK/run" --output BreastShapeModel/Resources/Models/lirbsm_synthetic_576.pth
