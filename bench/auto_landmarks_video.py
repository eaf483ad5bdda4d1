"""Landmark-free videos against clicked ones: `run` without a landmark file (the torso found in the SfM cloud from
the camera arc, the fit without landmarks, propose.py; the nipples found on the frames, nipples.py) next to `run`
with the video's landmark file (the true pixels with 2 px noise), both with the true nipple distance, on the same frames and SfM result.

Printed per video: surface error (metric, the truth at its true size) and scale error of both runs and their
difference; the proposed landmarks' pixel error against the true pixels at the video's resolution (nipples, the
other four); how sure the proposal was.

    python bench/video_pipeline.py --seeds 11 12 13        # renders the videos (and runs them) first
    python bench/auto_landmarks_video.py --seeds 11 12 13
    python bench/auto_landmarks_video.py --summarise runs/bench_video runs/bench_portrait runs/bench_anny runs/bench_blur
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from BreastShapeModelLib.landmarks import LANDMARK_NAMES, read_landmarks
from BreastVideoReconstructionLib.evaluate import evaluate

MOD = "BreastVideoReconstructionLib"


def run(*args) -> None:
    r = subprocess.run([sys.executable, "-m", MOD, "run", *map(str, args), "--progress", "none"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: run {' '.join(map(str, args))}\n{r.stderr[-2000:]}")


def reuse_sfm(src: Path, dst: Path) -> None:
    """A fresh run folder holding `src`'s frames and SfM result (and their step stamps), so only the rest runs."""
    if dst.exists():
        shutil.rmtree(dst)
    (dst / ".steps").mkdir(parents=True)
    for name in ("images", "sfm"):
        if (src / name).exists():
            shutil.copytree(src / name, dst / name)
    for name in ("frames.json", "cameras.json", "points.ply", "sfm_report.json"):
        shutil.copy2(src / name, dst / name)
    for step in ("frames", "sfm"):
        shutil.copy2(src / ".steps" / f"{step}.json", dst / ".steps" / f"{step}.json")


def pixel_errors(out: Path, truth: Path) -> np.ndarray:
    """Proposed landmarks against the true pixels of their frame, at the video's resolution."""
    prop = json.loads((out / "landmarks_proposed.json").read_text())
    frames = json.loads((out / "frames.json").read_text())
    source = {f["image"]: f["source_frame"] for f in frames["frames"]}[prop["image"]]
    scale = float(frames.get("scale", 1.0))
    true_px = np.load(truth / "landmarks_2d.npy")[source]
    return np.linalg.norm((np.asarray(prop["points"]) + 0.5) / scale - 0.5 - true_px, axis=1)


def compare(seed: int, clicked: Path, auto: Path, truth: Path) -> dict:
    """One video's clicked and landmark-free runs against its truth."""
    c, m = evaluate(clicked, truth), evaluate(auto, truth)
    px = pixel_errors(auto, truth)
    rep = json.loads((auto / "report.json").read_text())
    return {"seed": seed, "clicked_mm": c["surface_error_mm"]["mean"], "auto_mm": m["surface_error_mm"]["mean"],
            "clicked_scale_pct": c["scale_error_pct"], "auto_scale_pct": m["scale_error_pct"],
            "px_nipples": px[2:4].tolist(), "px_others": px[[0, 1, 4, 5]].tolist(),
            "anchor_mm": m["anchor_error_mm"], "landmark_mm": m["landmark_error_mm"], "torso_match": rep["torso_match"],
            "unsure": rep["proposed_landmarks"]["unsure"]}


def finished(work: Path, auto_name: str = "auto"):
    """(seed, clicked run, landmark-free run, truth) of every video under `work` whose two runs have finished."""
    for auto in sorted(work.glob(f"{auto_name}_*")):
        seed = auto.name.rsplit("_", 1)[-1]
        clicked, truth = work / f"clicked_{seed}", work / f"video_{seed}" / "truth"
        if seed.isdigit() and (auto / "report.json").exists() and (clicked / "report.json").exists() and truth.is_dir():
            yield int(seed), clicked, auto, truth


def summarise(rows: list[dict]) -> None:
    print("\n| video | clicked: surface error / scale error | no landmarks: surface error / scale error | difference | "
          "proposed pixels, nipples / others (median, px at the video's size) | flagged |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| seed {r['seed']} | {r['clicked_mm']:.2f} mm / {r['clicked_scale_pct']:+.2f} % | "
              f"{r['auto_mm']:.2f} mm / {r['auto_scale_pct']:+.2f} % | {r['auto_mm'] - r['clicked_mm']:+.2f} mm | "
              f"{np.median(r['px_nipples']):.0f} / {np.median(r['px_others']):.0f} | {len(r['unsure'])} |")
    px = np.array([[*r["px_others"][:2], *r["px_nipples"], *r["px_others"][2:]] for r in rows])
    mm, fitted = np.array([r["landmark_mm"] for r in rows]), np.array([r["anchor_mm"] for r in rows])
    print("\n| landmark | pixels, median / 95th percentile | found, 3D error median | the fitted anchor's |\n"
          "|---|---|---|---|")
    for i, name in enumerate(LANDMARK_NAMES):
        print(f"| {name} | {np.median(px[:, i]):.0f} / {np.percentile(px[:, i], 95):.0f} px | "
              f"{np.median(mm[:, i]):.1f} mm | {np.median(fitted[:, i]):.1f} mm |")
    d = [r["auto_mm"] - r["clicked_mm"] for r in rows]
    others = [p for r in rows for p in r["px_others"]]
    scale = [r["auto_scale_pct"] for r in rows]
    print(f"{len(rows)} videos: mean difference {np.mean(d):+.2f} mm (target within 0.3 mm); scale without landmarks "
          f"{min(scale):+.2f} .. {max(scale):+.2f} %; nipples "
          f"{np.median([p for r in rows for p in r['px_nipples']]):.1f} px median (target 8), others "
          f"{np.median(others):.1f} px (target 20; 95th percentile {np.percentile(others, 95):.0f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("runs/bench_video"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    ap.add_argument("--auto_name", default="auto", help="folder name prefix of the landmark-free runs")
    ap.add_argument("--summarise", type=Path, nargs="+", metavar="WORK",
                    help="run nothing: the tables over the finished runs of these work folders together (e.g. the "
                         "sharp, portrait, Anny and blur videos, each rendered into its own folder)")
    ap.add_argument("--auto_extra", nargs=argparse.REMAINDER, default=[],
                    help="more options for the landmark-free runs only (e.g. --latent_weight 0.005)")
    a = ap.parse_args()
    if a.summarise:
        rows = []
        for work in a.summarise:
            for seed, clicked, auto, truth in finished(work, a.auto_name):
                rows.append(compare(seed, clicked, auto, truth))
                print(json.dumps({"work": str(work), **rows[-1]}), flush=True)
        if not rows:
            raise SystemExit(f"no finished clicked_<seed> / {a.auto_name}_<seed> runs under "
                             f"{', '.join(map(str, a.summarise))}")
        summarise(rows)
        return
    rows = []
    for seed in a.seeds:
        vid, src = a.work / f"video_{seed}", a.work / f"out_{seed}"
        if not (src / ".steps" / "sfm.json").exists():
            raise SystemExit(f"{src}: no SfM result; run bench/video_pipeline.py --seeds {seed} first")
        truth = vid / "truth"
        n2n = f"{float(np.linalg.norm(np.diff(read_landmarks(truth / 'landmarks.txt')[2:4], axis=0))):.2f}"
        clicked, auto = a.work / f"clicked_{seed}", a.work / f"{a.auto_name}_{seed}"
        if a.auto_name == "auto" or not (clicked / ".steps" / "fit.json").exists():
            reuse_sfm(src, clicked)
            run(vid / "video.mp4", "--landmarks", vid / "landmarks.json", "--output_dir", clicked,
                "--nipple_to_nipple_dist", n2n)
        reuse_sfm(src, auto)
        run(vid / "video.mp4", "--output_dir", auto, "--nipple_to_nipple_dist", n2n, *a.auto_extra)
        rows.append(compare(seed, clicked, auto, truth))
        print(json.dumps(rows[-1]), flush=True)
    summarise(rows)


if __name__ == "__main__":
    main()
