"""Video robustness: bodies unlike the generator's, whole-body views, portrait, blur, landmark noise and one bad
landmark; the robust pipeline (evidence-weighted landmarks, fit-driven pruning, self-check) against the method's
rule (`--pruning mean --no-robust_landmarks`) on the same frames and cameras.

    python bench/video_robustness.py --work runs/bench_robust [--cases anny_a anny_bad40 ...]

`--prepare` renders the videos and runs frames + SfM once per video (model-independent); each pipeline then reuses
them, so the time printed is landmarks + alignment + fit (+ colour) only; `bench/video_pipeline.py` times whole
runs. Per case and pipeline: points kept for the fit, residuals (median, 95th pct), breast-region surface error against
the truth (metric, with the true nipple distance), scale error, whether the self-check passed, and the landmarks
that were down-weighted. Videos are 1080p, 6 s at 15 fps (30 frames extracted), rendered once and reused.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from BreastShapeModelLib.landmarks import read_landmarks
from BreastVideoReconstructionLib.evaluate import evaluate

MOD = "BreastVideoReconstructionLib"
# name: (synth-video options, landmark change)
CASES = {
    "anny_a": (["--source", "anny", "--seed", 21, "--torso_index", 5], None),
    "anny_b": (["--source", "anny", "--seed", 22, "--torso_index", 2], None),
    "anny_bad40": (["--source", "anny", "--seed", 21, "--torso_index", 5], ("move", 4, 40.0)),
    "anny_noise5": (["--source", "anny", "--seed", 21, "--torso_index", 5], ("noise", 5.0)),
    "anny_whole_portrait": (["--source", "anny", "--seed", 23, "--torso_index", 1, "--whole_body", "--portrait",
                             "--distance", 1100], None),
    "generator_blur_portrait": (["--seed", 24, "--portrait", "--motion_blur", 3], None),
    "generator_a": (["--seed", 11], None),
    # large (585 ml), ptotic (Regnault III both sides) and asymmetric (125 ml) breasts; and 725/554 ml
    "generator_large_ptotic": (["--seed", 320, "--torso_index", 1], None),
    "generator_asymmetric": (["--seed", 121, "--torso_index", 1], None),
    "generator_bad40": (["--seed", 11], ("move", 4, 40.0)),
}
PIPELINES = {"robust": [], "method": ["--pruning", "mean", "--no-robust_landmarks"]}


def sh(*args) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", MOD, *map(str, args), "--progress", "none"], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, args))}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t, r.stderr


def landmark_file(vid: Path, change, work: Path, name: str) -> Path:
    lm = json.loads((vid / "landmarks.json").read_text())
    if change is None:
        return vid / "landmarks.json"
    pts = np.asarray(lm["points"], float)
    if change[0] == "move":
        pts[change[1]] += [change[2], 0.0]                                   # moved sideways in the image
    else:
        truth = np.load(vid / "truth" / "landmarks_2d.npy")[lm["video_frame"]]
        pts = truth + np.random.default_rng(5).normal(0, change[1], truth.shape)
    lm["points"] = pts.round(2).tolist()
    path = work / f"landmarks_{name}.json"
    path.write_text(json.dumps(lm))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("runs/bench_robust"))
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--pipelines", nargs="*", default=list(PIPELINES))
    ap.add_argument("--prepare", action="store_true",
                    help="only render the videos and run frames + SfM (model-independent) into each video's folder")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in a.cases:
        opts, change = CASES[name]
        vid = a.work / ("video_" + "_".join(str(o).lstrip("-") for o in opts))
        if not (vid / "video.json").exists():
            t, _ = sh("synth-video", "--output_dir", vid, *opts, "--fps", 15, "--landmark_noise", 2.0)
            print(f"{name}: rendered in {t:.0f} s", flush=True)
        truth = vid / "truth"
        n2n = float(np.linalg.norm(np.diff(read_landmarks(truth / "landmarks.txt")[2:4], axis=0)))
        lm = landmark_file(vid, change, a.work, name)
        shared = vid / "sfm_out"                         # frames and cameras computed once per video
        # frames + SfM once per video; a re-run resumes them (and redoes them once if their stamps are stale)
        sh("run", vid / "video.mp4", "--landmarks", vid / "landmarks.json", "--output_dir", shared, "--until", "sfm")
        front = {k: json.loads((shared / "sfm_report.json").read_text())["seconds"] for k in ("sfm",)}
        if a.prepare:
            print(f"{name}: SfM {sum(front['sfm'].values()):.0f} s", flush=True)
            continue
        for pipe in a.pipelines:
            out = a.work / f"out_{name}_{pipe}"
            if out.exists():
                shutil.rmtree(out)
            shutil.copytree(shared, out)
            t, err = sh("run", vid / "video.mp4", "--landmarks", lm, "--output_dir", out, "--nipple_to_nipple_dist",
                        f"{n2n:.2f}", *PIPELINES[pipe])
            rep = json.loads((out / "report.json").read_text())
            fit = json.loads((out / "fit_report.json").read_text())
            ev = evaluate(out, truth)
            row = {"case": name, "pipeline": pipe, "seconds": round(t, 1), "step_seconds": rep["step_seconds"],
                   "sfm_valid": rep["sfm_valid"], "registered": rep["registered"], "sfm_points": rep["sfm_points"],
                   "kept": fit["residuals"].get("points_used", rep["cloud_points_kept"]),
                   "residual_median": fit["residuals"]["median_mm"], "residual_p95": fit["residuals"]["p95_mm"],
                   "surface_mean": ev["surface_error_mm"]["mean"], "surface_p95": ev["surface_error_mm"]["p95"],
                   "scale_pct": ev["scale_error_pct"], "self_check": fit.get("self_check", {}).get("passed"),
                   "problems": fit.get("self_check", {}).get("problems"),
                   "down_weighted": [d["landmark"] for d in rep.get("down_weighted") or []],
                   "fits": len(fit.get("attempts") or [1]), "kept_pruning": fit.get("pruning")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| case | pipeline | SfM valid | points kept | residual median / p95 | breast-region error mean / p95 | "
          "scale error | self-check | fits (result from) | down-weighted | align + fit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['pipeline']} | {r['sfm_valid']} | {r['kept']:,} | {r['residual_median']:.2f} / "
              f"{r['residual_p95']:.2f} mm | {r['surface_mean']:.2f} / {r['surface_p95']:.2f} mm | "
              f"{r['scale_pct']:+.2f} % | {'passed' if r['self_check'] else 'FIRED'} | "
              f"{r['fits']} ({r['kept_pruning']}) | "
              f"{', '.join(r['down_weighted']) or '-'} | {r['seconds']:.0f} s |")
    silent = [r for r in rows if r["pipeline"] == "robust" and r["sfm_valid"] and r["surface_mean"] > 2.0
              and r["self_check"]]
    print(f"\nrobust pipeline: {len(silent)} silent failures (valid SfM, error > 2 mm, self-check passed)")


if __name__ == "__main__":
    main()
