"""Quality of a shape model (default: the bundled one) by fitting held-out generator torsos.

For each of N torsos drawn with a seed the training data never used: 20,000 clean surface points and the six
landmarks -> `reconstruct` (normalise, Umeyama to the average anchors, latent fit, mesh, back to mm) -> mean
surface distance over the front (both directions, flat back excluded) and mean anchor error in mm. Then the
official mean-shape points with the official anchors as landmarks. Writes a sheet of random samples.

    python bench/model_quality.py [--ckpt model.pth] [--num 20] [--resolution 192] [--sheet Resources/...png]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastShapeModel"))
from BreastShapeModelLib import ShapeModel, render, synth  # noqa: E402
from BreastShapeModelLib.fitting import FitSettings  # noqa: E402
from BreastShapeModelLib.landmarks import OFFICIAL_AVERAGE_ANCHORS  # noqa: E402
from BreastShapeModelLib.reconstruct import reconstruct  # noqa: E402
from BreastShapeModelLib.surface_distance import point_to_mesh_distance  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
HELD_OUT_SEED = 777_001


def front_distance(mesh: trimesh.Trimesh, gt_mesh: trimesh.Trimesh, back_z: float) -> tuple[float, float]:
    """Mean exact point-to-surface distances (mm) between a fitted mesh and the truth, front only (the flat back
    and anything beyond the truth's extent excluded): truth -> fit and fit -> truth."""
    gt, _ = trimesh.sample.sample_surface(gt_mesh, 60000, seed=1)
    gt = gt[gt[:, 2] > back_z + 3]
    p, _ = trimesh.sample.sample_surface(mesh, 60000, seed=2)
    lo, hi = gt.min(0) - 2, gt.max(0) + 2
    p = p[(p[:, 2] > back_z + 3) & np.all((p >= lo) & (p <= hi), axis=1)]
    return float(point_to_mesh_distance(gt, mesh).mean()), float(point_to_mesh_distance(p, gt_mesh).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--num", type=int, default=20)
    ap.add_argument("--resolution", type=int, default=192)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--sheet", type=Path, default=None, help="write a sheet of 8 random samples here")
    args = ap.parse_args()
    model = ShapeModel.load(args.ckpt)
    print(f"model: {model.source} ({model.provenance.get('steps', '?')} steps, mm/unit {model.mm_per_unit:.2f})")
    settings = FitSettings(iterations=args.iterations, latent_weight=0.01, anchor_weight=1.0)
    surf, anch, times = [], [], []
    for i in range(args.num):
        t = synth.generate(i, HELD_OUT_SEED, spacing=2.5)
        pts, _ = trimesh.sample.sample_surface(t.mesh, 20000, seed=i)
        t0 = time.perf_counter()
        rec = reconstruct(model, pts, t.landmarks, settings, resolution=args.resolution)
        times.append(time.perf_counter() - t0)
        back = t.mesh.vertices[:, 2].min()
        d_gt, d_fit = front_distance(rec.mesh, t.mesh, back)
        surf.append((d_gt + d_fit) / 2)
        anch.append(float(np.linalg.norm(rec.anchors - t.landmarks, axis=1).mean()))
        print(f"  torso {i:2d}: surface {surf[-1]:.2f} mm (gt->fit {d_gt:.2f}, fit->gt {d_fit:.2f}), "
              f"anchors {anch[-1]:.2f} mm, {times[-1]:.1f} s")
    print(f"held-out generator torsos (n={args.num}): mean surface distance {np.mean(surf):.2f} mm "
          f"(target <= 1.0), mean anchor error {np.mean(anch):.2f} mm (target <= 3), {np.mean(times):.1f} s/fit")

    mm = 291.77
    ref = np.load(REFERENCE / "lirbsm_mean_shape_points.npy").astype(np.float64) * mm
    rng = np.random.default_rng(0)
    sel = ref[rng.choice(len(ref), 20000, replace=False)]
    rec = reconstruct(model, sel, OFFICIAL_AVERAGE_ANCHORS * mm, settings, resolution=args.resolution)
    front = ref[ref[:, 2] > ref[:, 2].min() + 3]
    d = point_to_mesh_distance(front, rec.mesh)           # the official mean is given as points only
    print(f"official mean shape (points -> fitted surface, front): mean {d.mean():.2f} mm, 95th pct "
          f"{np.percentile(d, 95):.2f} mm (target <= 3)")

    if args.sheet:
        tiles = []
        for k in range(8):
            m = model.mesh(model.sample_code(k), 128, units="mm")
            c = m.vertices.mean(0)
            tiles += render.mesh_views(m, size=200, samples=120_000, extent=(c - 300, c + 300))[:1]
        render.save_png(render.sheet(tiles, 4, [f"sample {k}" for k in range(8)]), args.sheet)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
