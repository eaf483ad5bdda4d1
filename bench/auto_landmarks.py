"""Landmark-free scans against clicked ones: `reconstruct` without --landmarks (the torso found by its shape,
`auto_align`) next to `reconstruct` with six landmarks each moved 3 mm (a careful click), on held-out torsos the
model never trained on, each scan turned to a random orientation and moved.

Per torso: 20,000 surface points with 1 mm noise. Printed: the breast-region surface error (truth points within
90 mm of a nipple, front-facing, to the fitted surface, in the scan's own frame) with clicks and without, their
difference, the error of the landmarks found (the fitted anchors made symmetric, `symmetric_landmarks`) against the
true landmarks, and the alignment's cost and runner-up (how sure the orientation was; an ambiguous one is fitted
from both orientations and the closer fit kept, `fit_found_torso`, as `reconstruct` does).

    python bench/auto_landmarks.py [--num 5] [--sources generator anny] [--resolution 128]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial.transform import Rotation

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastShapeModel"))
sys.path.insert(0, str(ROOT / "bench"))
from BreastShapeModelLib import ShapeModel, synth  # noqa: E402
from BreastShapeModelLib.api import find_torso, fit_found_torso  # noqa: E402
from BreastShapeModelLib.found_landmarks import symmetric_landmarks  # noqa: E402
from BreastShapeModelLib.options import AUTO_LATENT_WEIGHT, ScanOptions  # noqa: E402
from BreastShapeModelLib.reconstruct import reconstruct  # noqa: E402
from BreastShapeModelLib.surface_distance import point_to_mesh_distance  # noqa: E402
from cross_source import breast_region  # noqa: E402

HELD_OUT_SEED = 777_006
NAMES = ("sternal notch", "belly button", "left nipple", "right nipple", "left coracoid", "right coracoid")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=5)
    ap.add_argument("--sources", nargs="*", default=["generator", "anny"])
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--click_latent_weight", type=float, default=None,
                    help="latent weight of the clicked fits (default: the scan default); the automatic fits use "
                         "AUTO_LATENT_WEIGHT, as run_scan does")
    args = ap.parse_args()
    model = ShapeModel.load(None)
    opts = ScanOptions()
    rows = []
    for source in args.sources:
        rng = np.random.default_rng(0)
        for i in range(args.num):
            t = synth.generate(i, HELD_OUT_SEED, 2.5, source=source)
            pts, _ = trimesh.sample.sample_surface(t.mesh, 20000, seed=i)
            pts = pts + rng.normal(0, 1.0, pts.shape)
            d = rng.normal(size=(6, 3))
            clicks = t.landmarks + 3.0 * d / np.linalg.norm(d, axis=1, keepdims=True)
            rot = Rotation.random(random_state=1000 + i).as_matrix()
            shift = rng.normal(0, 500, 3)
            scan = pts @ rot.T + shift
            region = breast_region(np.asarray(t.mesh.vertices), np.asarray(t.mesh.vertex_normals)[:, 2], t.landmarks)
            click_latent = opts.latent_weight if args.click_latent_weight is None else args.click_latent_weight
            with_clicks = reconstruct(model, scan, clicks @ rot.T + shift,
                                      opts.settings(click_latent, with_landmarks=True), args.resolution)
            t0 = time.perf_counter()
            auto_settings = opts.settings(AUTO_LATENT_WEIGHT, with_landmarks=False)     # what run_scan uses
            found = find_torso(model, scan, f"{source} {i}")
            seconds = time.perf_counter() - t0
            auto, ambiguous, tried = fit_found_torso(
                lambda to_model: reconstruct(model, scan, None, auto_settings, args.resolution, to_model=to_model),
                found)
            landmarks, _ = symmetric_landmarks(auto.mesh, auto.anchors, auto.support <= auto.observed)
            errs = []
            for rec in (with_clicks, auto):
                mesh = rec.mesh.copy()
                mesh.vertices = (np.asarray(mesh.vertices) - shift) @ rot
                errs.append(float(point_to_mesh_distance(region, mesh).mean()))
            lm_err = np.linalg.norm((landmarks - shift) @ rot - t.landmarks, axis=1)
            rows.append({"source": source, "clicks": errs[0], "auto": errs[1], "lm": lm_err,
                         "ambiguous": ambiguous, "refitted": bool(tried), "cost": found.cost * model.mm_per_unit,
                         "runner": found.runner_up_cost * model.mm_per_unit, "seconds": seconds})
            print(f"  {source} {i}: breast region {errs[0]:.2f} mm with clicks, {errs[1]:.2f} mm without "
                  f"({errs[1] - errs[0]:+.2f}); landmarks found {np.round(lm_err, 1)} mm; alignment "
                  f"{rows[-1]['cost']:.1f} mm (next orientation {rows[-1]['runner']:.1f} mm"
                  f"{', both orientations fitted' if tried else ''}{', AMBIGUOUS' if ambiguous else ''}, "
                  f"{seconds:.1f} s)",
                  flush=True)
    print("\n| source | n | breast-region error, clicks | without landmarks | difference (mean, worst) | "
          "landmarks found: nipples / others (median) | both orientations fitted / still ambiguous | "
          "alignment time |")
    print("|---|---|---|---|---|---|---|---|")
    for source in args.sources:
        r = [x for x in rows if x["source"] == source]
        diff = np.array([x["auto"] - x["clicks"] for x in r])
        lm = np.array([x["lm"] for x in r])
        print(f"| {source} | {len(r)} | {np.mean([x['clicks'] for x in r]):.2f} mm | "
              f"{np.mean([x['auto'] for x in r]):.2f} mm | {diff.mean():+.2f} / {diff.max():+.2f} mm | "
              f"{np.median(lm[:, 2:4]):.1f} / {np.median(lm[:, [0, 1, 4, 5]]):.1f} mm | "
              f"{sum(x['refitted'] for x in r)} / {sum(x['ambiguous'] for x in r)} | {np.mean([x['seconds'] for x in r]):.1f} s |")


if __name__ == "__main__":
    main()
