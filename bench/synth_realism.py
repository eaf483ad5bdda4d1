"""Realism of the generator: its mean-parameter torso against the official liRBSM mean shape.

Aligns the mean torso to the official average anchors by the six landmarks (similarity), prints the mean and
95th-percentile surface distance over the front (flat back excluded) and each landmark's error, and writes a
side-by-side picture (front and side views). Also prints how a batch of random torsos matches the published
anthropometry the generator is calibrated to.

    python bench/synth_realism.py [--out bench/out/realism.png] [--random 60]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastShapeModel"))
from BreastShapeModelLib import render, synth  # noqa: E402
from BreastShapeModelLib.alignment import umeyama  # noqa: E402
from BreastShapeModelLib.landmarks import LANDMARK_NAMES, OFFICIAL_AVERAGE_ANCHORS  # noqa: E402
from BreastShapeModelLib.surface_distance import point_to_mesh_distance  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
MM = 291.77


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/out/realism.png"))
    ap.add_argument("--random", type=int, default=60, help="random torsos for the anthropometry table")
    args = ap.parse_args()
    ref = np.load(REFERENCE / "lirbsm_mean_shape_points.npy").astype(np.float64) * MM
    target = OFFICIAL_AVERAGE_ANCHORS * MM
    t = synth.mean_torso()
    sim = umeyama(t.landmarks, target)
    mesh = trimesh.Trimesh(sim.apply(t.mesh.vertices), t.mesh.faces)
    front = ref[ref[:, 2] > ref[:, 2].min() + 3]
    d = point_to_mesh_distance(front, mesh)
    lm = np.linalg.norm(sim.apply(t.landmarks) - target, axis=1)
    print(f"mean torso vs official mean shape (front, {len(d)} points): mean {d.mean():.2f} mm, "
          f"median {np.median(d):.2f} mm, 95th pct {np.percentile(d, 95):.2f} mm  (target mean <= 10 mm)")
    for name, e in zip(LANDMARK_NAMES, lm):
        print(f"  {name:22s} {e:5.1f} mm")
    print(f"  max landmark error {lm.max():.1f} mm (target <= 15 mm); alignment scale {sim.scale:.3f}")
    ext = (ref.min(0) - 20, ref.max(0) + 20)
    tiles = render.mesh_views(mesh, size=320, extent=ext)
    tiles += [render.view_image(ref, None, v, 320, ext) for v in ("front", "side")]
    render.save_png(render.sheet(tiles, 4, ["generator mean: front", "side", "official mean: front", "side"]),
                    args.out)
    print(f"wrote {args.out}")

    if args.random:
        rows = [synth.generate(i, 12345, spacing=4.0).truth for i in range(args.random)]
        vol = np.array([[r["breast_volume_ml"][s] for s in ("left", "right")] for r in rows])
        sn = np.array([[r["distances_mm"][f"sternal_notch_to_{s}_nipple"] for s in ("right", "left")] for r in rows])
        mid = np.array([[r["nipple_to_midline_mm"][s] for s in ("right", "left")] for r in rows])
        fold = np.array([[r["nipple_to_fold_mm"][s] for s in ("right", "left")] for r in rows])
        lvl = np.array([abs(r["landmarks"]["left_nipple"][1] - r["landmarks"]["right_nipple"][1]) for r in rows])
        print(f"\n{args.random} random torsos (seed 12345): measured | published")
        print(f"  volume per breast      {vol.mean():6.0f} ± {vol.std():4.0f} ml | 340 ± 109 (92-919)")
        print(f"  L-R volume difference  {np.abs(vol[:, 0] - vol[:, 1]).mean():6.0f} ± "
              f"{np.abs(vol[:, 0] - vol[:, 1]).std():4.0f} ml | 48 ± 42")
        print(f"  jugulum-nipple R / L   {sn[:, 0].mean() / 10:5.1f} ± {sn[:, 0].std() / 10:3.1f} / "
              f"{sn[:, 1].mean() / 10:5.1f} ± {sn[:, 1].std() / 10:3.1f} cm | 19.9 ± 2.3 / 20.1 ± 2.4")
        print(f"  nipple-midline R / L   {mid[:, 0].mean() / 10:5.1f} ± {mid[:, 0].std() / 10:3.1f} / "
              f"{mid[:, 1].mean() / 10:5.1f} ± {mid[:, 1].std() / 10:3.1f} cm | 9.4 ± 1.3 / 10.0 ± 1.2")
        print(f"  nipple-fold (straight) {fold.mean() / 10:5.1f} ± {fold.std() / 10:3.1f} cm | 6.4 ± 1.1 "
              f"(7.5 ± 1.6 standing, along the skin)")
        print(f"  nipple level diff      {lvl.mean():6.1f} ± {lvl.std():4.1f} mm | 4.9 ± 3.7")


if __name__ == "__main__":
    main()
