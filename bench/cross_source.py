"""Generalisation across anatomy sources: fit held-out torsos of each source with one or more models.

Sources: our generator (held-out seed), Anny bodies (held-out seed; needs `pip install anny`), and the official
liRBSM mean shape (the only shape from real scans here) with smooth random deformations. Per shape: 20,000 points
with 1 mm noise, six landmarks moved 3 mm, the true nipple distance given. Printed per model and source:
- breast-region surface error (mm; truth points within 90 mm of a nipple, front-facing, to the fitted surface,
  in the input's own frame, so the scale error is left out), mean and 95th percentile;
- anchor error (mm, fitted anchors vs true landmarks);
- metric scale error (%) with the nipple distance taken from the landmarks (what `reconstruct` does now) and from
  the fitted anchors (what it did before).

    python bench/cross_source.py [--ckpt a.pth b.pth] [--num 5] [--resolution 128] [--sources generator anny official]
                                 [--latent_weight 0.01] [--anchor_weight 1.0]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastShapeModel"))
from BreastShapeModelLib import ShapeModel, synth  # noqa: E402
from BreastShapeModelLib.fitting import FitSettings  # noqa: E402
from BreastShapeModelLib.reconstruct import metric_scale, reconstruct  # noqa: E402
from BreastShapeModelLib.surface_distance import point_to_mesh_distance  # noqa: E402

HELD_OUT_SEED = 777_003
OFFICIAL_MM_PER_UNIT = 1.0 / (2 * 0.0017137007706792716)
REFERENCE = ROOT.parent / "shared" / "reference"


def breast_region(points, normals_z, landmarks, radius=90.0):
    near = np.minimum(np.linalg.norm(points - landmarks[2], axis=1), np.linalg.norm(points - landmarks[3], axis=1))
    return points[(near < radius) & (normals_z > 0.0)]


def official_shapes(num, rng):
    """The official mean shape in mm, and smooth deformations of it (Gaussian bumps of +-12 mm)."""
    pts = np.load(REFERENCE / "lirbsm_mean_shape_points.npy") * OFFICIAL_MM_PER_UNIT
    lms = np.load(REFERENCE / "lirbsm_average_anchors.npy") * OFFICIAL_MM_PER_UNIT
    centre = pts.mean(0)
    normals_z = np.sign(pts[:, 2] - centre[2])          # a closed torso: front half faces +z
    out = []
    for i in range(num):
        p, q = pts.copy(), lms.copy()
        if i > 0:
            for _ in range(6):
                c = lms[rng.choice([2, 3, 0, 1])] + rng.normal(0, 40, 3)
                amp = rng.normal(0, 12, 3)
                for arr in (p, q):
                    arr += amp * np.exp(-np.sum((arr - c) ** 2, axis=1, keepdims=True) / (2 * 60.0 ** 2))
        out.append((f"official {'mean' if i == 0 else 'deformed ' + str(i)}", p, normals_z, q, None))
    return out


def torsos(source, num):
    out = []
    for i in range(num):
        t = synth.generate(i, HELD_OUT_SEED, 2.5, source=source)
        v = np.asarray(t.mesh.vertices)
        out.append((f"{source} {i}", v, np.asarray(t.mesh.vertex_normals)[:, 2], t.landmarks, t.mesh))
    return out


def evaluate(model, shapes, rng, resolution, settings):
    rows = []
    for name, pts_all, nz, lms_true, mesh in shapes:
        if mesh is not None:
            pts, _ = trimesh.sample.sample_surface(mesh, 20000, seed=len(rows))
        else:
            pts = pts_all[rng.choice(len(pts_all), 20000, replace=False)]
        pts = pts + rng.normal(0, 1.0, pts.shape)
        d = rng.normal(size=(6, 3))
        lms = lms_true + 3.0 * d / np.linalg.norm(d, axis=1, keepdims=True)
        n2n = float(np.linalg.norm(lms_true[2] - lms_true[3]))
        rec = reconstruct(model, pts, lms, settings, resolution)       # input frame (mm): scale-free shape error
        region = breast_region(pts_all, nz, lms_true)
        err = point_to_mesh_distance(region, rec.mesh)
        anchors_model = rec.to_model.apply(rec.anchors)
        true_scale = 1.0 / rec.to_model.scale
        s_lm, _, check, _ = metric_scale(model, anchors_model, rec.to_model.apply(lms), n2n)
        rows.append({"name": name, "mean": float(err.mean()), "p95": float(np.percentile(err, 95)),
                     "anchor": float(np.linalg.norm(rec.anchors - lms_true, axis=1).mean()),
                     "scale_lm": 100 * (s_lm / true_scale - 1), "scale_anchor": 100 * (check["from_anchors"] / true_scale - 1)})
        r = rows[-1]
        print(f"    {name:20s} breast region {r['mean']:.2f} / {r['p95']:.2f} mm, anchors {r['anchor']:.1f} mm, "
              f"scale {r['scale_lm']:+.2f} % (landmarks) / {r['scale_anchor']:+.2f} % (fitted anchors)", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", type=Path, nargs="*", default=[None])
    ap.add_argument("--num", type=int, default=5)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--sources", nargs="*", default=["generator", "anny", "official"])
    ap.add_argument("--latent_weight", type=float, default=0.01, help="fit's pull to the mean (0.01)")
    ap.add_argument("--anchor_weight", type=float, default=1.0, help="fit's anchor term (1.0; negative: off)")
    args = ap.parse_args()
    settings = FitSettings(latent_weight=args.latent_weight, anchor_weight=args.anchor_weight)
    print(f"fits at latent weight {settings.latent_weight}, anchor weight {settings.anchor_weight}")
    summary = []
    for ckpt in args.ckpt:
        model = ShapeModel.load(ckpt)
        label = ckpt.name if ckpt else "bundled"
        print(f"model {label}")
        for source in args.sources:
            rng = np.random.default_rng(0)
            shapes = official_shapes(args.num, rng) if source == "official" else torsos(source, args.num)
            rows = evaluate(model, shapes, rng, args.resolution, settings)
            a = {k: np.mean([abs(r[k]) if k.startswith("scale") else r[k] for r in rows])
                 for k in ("mean", "p95", "anchor", "scale_lm", "scale_anchor")}
            summary.append((label, source, a))
    print("\n| model | source | breast-region error mean / 95th pct | anchor error | |scale error| landmarks / fitted anchors |")
    print("|---|---|---|---|---|")
    for label, source, a in summary:
        print(f"| {label} | {source} (n={args.num}) | {a['mean']:.2f} / {a['p95']:.2f} mm | {a['anchor']:.1f} mm | "
              f"{a['scale_lm']:.2f} % / {a['scale_anchor']:.2f} % |")


if __name__ == "__main__":
    main()
