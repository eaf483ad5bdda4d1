#!/usr/bin/env bash
# Set up (virtual environment, CPU PyTorch, the project) and run the main jobs: sample and mesh shapes into out/,
# fit the model to a synthetic torso scan with its landmarks (out/fit), and run the whole video pipeline on a
# synthetic phone video with its landmark file (out/video -> out/video_result).
# Usage: bash scripts/demo.sh [checkpoint.pth]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet torch==2.13.0
  .venv/bin/python -m pip install --quiet -e ".[test,video]"
fi
ckpt="${1:-}"
if [ -z "$ckpt" ] && [ ! -f BreastShapeModel/Resources/Models/lirbsm_synthetic_576.pth ]; then
  ckpt=../shared/reference/official_format_random.pth
  [ -f "$ckpt" ] || { echo "error: no bundled model yet; pass an official liRBSM checkpoint: bash scripts/demo.sh lirbsm_576.pth" >&2; exit 2; }
  echo "note: using the random-weight reference checkpoint $ckpt (pass your lirbsm_576.pth for real shapes)" >&2
fi
args=(--output_dir out --device cpu --metrical)
[ -n "$ckpt" ] && args+=(--ckpt "$ckpt")
.venv/bin/python -m BreastShapeModelLib mean "${args[@]}"
.venv/bin/python -m BreastShapeModelLib sample 2 --seed 1 --voxel_resolution 128 "${args[@]}"
# Fit the model to a synthetic scan with its six landmarks (what a clinic does with a 3D scan)
.venv/bin/python -m BreastShapeModelLib synth 1 --seed 7 --output_dir out/scan --progress none
.venv/bin/python -m BreastShapeModelLib reconstruct out/scan/torso_0000.ply \
  --landmarks out/scan/landmarks/torso_0000.txt --output_dir out/fit --voxel_resolution 192 --device cpu \
  ${ckpt:+--ckpt "$ckpt"}
# The video pipeline: a synthetic 720p phone video of a generator torso, then video -> metric mesh
.venv/bin/python -m BreastVideoReconstructionLib synth-video --output_dir out/video --seed 5 --width 1280 \
  --height 720 --duration 5 --landmark_noise 1.5 --progress none
.venv/bin/python -m BreastVideoReconstructionLib run out/video/video.mp4 --landmarks out/video/landmarks.json \
  --output_dir out/video_result --colorize ${ckpt:+--ckpt "$ckpt"}
echo "video result: out/video_result/reconstruction.ply, report.json, overview.png"
echo "results in out/: $(ls out | tr '\n' ' ')"
