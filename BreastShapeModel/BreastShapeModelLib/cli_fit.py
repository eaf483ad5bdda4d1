"""`reconstruct`: fit the model to a scan or point cloud with six landmarks; write the surface, anchors, report."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import trimesh

from .errors import UserError
from .fileio import atomic_path, atomic_write_text
from .progress import Progress

CLOUD_SUFFIXES = (".ply", ".obj", ".stl", ".off", ".vtk", ".xyz", ".npy", ".txt", ".csv")


def add_parser(sub, model_options, mesh_options) -> None:
    p = sub.add_parser("reconstruct", help="fit the model to a point cloud or scan (with six landmarks)",
                       description="Normalise the input, similarity-align its landmarks to the model's average "
                                   "anchors, optimise a shape code, mesh it and map it back to the input frame "
                                   "(or to millimetres with --metrical).")
    p.add_argument("input", type=Path, help="point cloud or mesh: " + ", ".join(CLOUD_SUFFIXES))
    p.add_argument("--landmarks", type=Path, default=None,
                   help="six landmarks in the input's frame (.mrk.json, .fcsv, .pp, .csv, .txt, .ply, .npy)")
    p.add_argument("--latent_weight", type=float, default=0.05,
                   help="weight of ||z||^2, the pull towards the mean shape (0.05 as the reference; video: 0.1)")
    p.add_argument("--anchor_weight", type=float, default=-1.0,
                   help="weight of the predicted-anchor-to-landmark term; negative: no anchor term (-1 as the "
                        "reference; video: 0.1)")
    p.add_argument("--nipple_to_nipple_dist", type=float, default=None,
                   help="measured straight-line nipple-to-nipple distance in mm: exact metric scale (implies "
                        "--metrical)")
    p.add_argument("--iterations", type=int, default=1000, help="optimisation iterations (1000)")
    p.add_argument("--points_per_iteration", type=int, default=1000, help="points drawn per iteration (1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the point draws (0)")
    p.add_argument("--max_points", type=int, default=200_000, help="points kept from the input / sampled on a mesh")
    model_options(p)
    mesh_options(p)
    p.set_defaults(func=cmd_reconstruct)


def read_cloud(path: Path, max_points: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """Points [N, 3] from a cloud or a mesh (meshes are sampled uniformly on the surface)."""
    if not path.is_file():
        raise UserError(f"input not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in CLOUD_SUFFIXES:
        raise UserError(f"{path}: unknown input format '{suffix}' (expected {', '.join(CLOUD_SUFFIXES)})")
    try:
        if suffix == ".npy":
            pts, kind = np.load(path, allow_pickle=False), "points"
        elif suffix in (".xyz", ".txt", ".csv"):
            text = path.read_text(encoding="utf-8")
            pts = np.loadtxt(path, delimiter="," if "," in text.split("\n", 1)[0] else None, ndmin=2)[:, :3]
            kind = "points"
        elif suffix == ".vtk":
            pts, faces = _read_vtk(path)
            pts, kind = (_sample(trimesh.Trimesh(pts, faces, process=False), max_points, seed), "mesh") \
                if len(faces) else (pts, "points")
        else:
            geom = trimesh.load(path, process=False)
            if isinstance(geom, trimesh.Scene):
                geom = geom.dump(concatenate=True)
            if isinstance(geom, trimesh.Trimesh) and len(geom.faces):
                pts, kind = _sample(geom, max_points, seed), "mesh"
            else:
                pts, kind = np.asarray(geom.vertices), "points"
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    pts = np.asarray(pts, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise UserError(f"{path}: expected points with x, y, z, got shape {pts.shape}")
    if len(pts) < 10:
        raise UserError(f"{path}: the point cloud is empty or too small ({len(pts)} points; need at least 10)")
    if not np.isfinite(pts).all():
        raise UserError(f"{path}: the point cloud contains NaN or infinite coordinates")
    if len(pts) > max_points:
        pts = pts[np.random.default_rng(seed).choice(len(pts), max_points, replace=False)]
    return pts, kind


def _sample(mesh: trimesh.Trimesh, count: int, seed: int) -> np.ndarray:
    pts, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return pts


def _read_vtk(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy
    reader = vtk.vtkGenericDataObjectReader()
    reader.SetFileName(str(path))
    reader.Update()
    data = reader.GetOutput()
    if data is None or data.GetNumberOfPoints() == 0:
        raise UserError(f"{path}: no points in the VTK file")
    pts = vtk_to_numpy(data.GetPoints().GetData()).astype(np.float64)
    faces = np.empty((0, 3), dtype=np.int64)
    if isinstance(data, vtk.vtkPolyData) and data.GetNumberOfPolys():
        tri = vtk.vtkTriangleFilter()
        tri.SetInputData(data)
        tri.Update()
        faces = vtk_to_numpy(tri.GetOutput().GetPolys().GetData()).reshape(-1, 4)[:, 1:]
    return pts, faces


def support_colors(support: np.ndarray, limit: float) -> np.ndarray:
    """Green where the input was observed, through yellow, to red where the model filled in (RGBA uint8)."""
    t = np.clip(support / max(limit, 1e-12), 0, 1)
    rgb = np.stack([np.clip(2 * t, 0, 1), np.clip(2 * (1 - t), 0, 1), np.full_like(t, 0.2)], axis=1)
    return np.concatenate([(rgb * 255).astype(np.uint8), np.full((len(t), 1), 255, np.uint8)], axis=1)


def cmd_reconstruct(args, progress: Progress) -> int:
    from .fitting import FitSettings
    from .landmarks import read_landmarks, write_anchor_files
    from .reconstruct import reconstruct
    from .shape_model import ShapeModel
    if args.iterations < 1 or args.points_per_iteration < 1:
        raise UserError("--iterations and --points_per_iteration must be at least 1")
    if args.latent_weight < 0:
        raise UserError(f"--latent_weight must not be negative, got {args.latent_weight}")
    if args.nipple_to_nipple_dist is not None and not 50 <= args.nipple_to_nipple_dist <= 500:
        raise UserError(f"--nipple_to_nipple_dist is in mm and must be within 50-500, got {args.nipple_to_nipple_dist}")
    if args.chunk_size < 1:
        raise UserError(f"--chunk_size must be positive, got {args.chunk_size}")
    if not 8 <= args.voxel_resolution <= 1024:
        raise UserError(f"--voxel_resolution must be between 8 and 1024, got {args.voxel_resolution}")
    points, kind = read_cloud(args.input, args.max_points, args.seed)
    landmarks = read_landmarks(args.landmarks) if args.landmarks is not None else None
    model = ShapeModel.load(args.ckpt, args.config, args.anchors, args.device)
    metrical = args.metrical or args.nipple_to_nipple_dist is not None
    settings = FitSettings(iterations=args.iterations, points_per_iteration=args.points_per_iteration,
                           latent_weight=args.latent_weight,
                           anchor_weight=max(args.anchor_weight, 0.0) if landmarks is not None else 0.0, seed=args.seed)
    t0 = time.perf_counter()
    with progress.stage("fit", total=args.iterations, unit="it") as update:
        def on_iteration(it, loss):
            if it % 10 == 0 or it == args.iterations:
                update(it, f"loss {loss:.5f}")
        with progress.stage("mesh", total=1.0) as mesh_update:
            rec = reconstruct(model, points, landmarks, settings, args.voxel_resolution, metrical,
                              args.nipple_to_nipple_dist, on_iteration,
                              lambda fraction, message: mesh_update(fraction, message), args.chunk_size, args.meshing)
    if not rec.self_check["passed"]:
        rec.warnings.append("SELF-CHECK FAILED, the surface may be wrong: " + "; ".join(rec.self_check["problems"]))
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    mesh = rec.mesh
    limit = float(np.percentile(rec.support, 50)) * 4 if len(rec.support) else 1.0
    mesh.visual.vertex_colors = support_colors(rec.support, limit)
    mesh.vertex_attributes["support"] = rec.support.astype(np.float32)
    ply = out / "reconstruction.ply"
    with atomic_path(ply) as tmp:
        mesh.export(tmp, file_type="ply")
    units = "mm" if rec.output_frame == "metric" else "input"
    written = [ply] + write_anchor_files(rec.anchors, out / "reconstruction_anchors", units=units)
    code_path, support_path = out / "reconstruction_code.npy", out / "reconstruction_support.npy"
    with atomic_path(code_path) as tmp:
        np.save(tmp, rec.code.astype(np.float32))
    with atomic_path(support_path) as tmp:                  # per vertex, for readers that drop PLY extras
        np.save(tmp, rec.support.astype(np.float32))
    report = {
        "input": str(args.input), "input_kind": kind, "input_points": int(len(points)),
        "landmarks": str(args.landmarks) if args.landmarks else None, "model": model.describe(),
        "output_frame": rec.output_frame, "units": units, "scale_mm_per_unit": rec.scale_mm_per_unit,
        "scale_source": rec.scale_source, "scale_check": rec.scale_check, "warnings": rec.warnings,
        "self_check": rec.self_check,
        "input_to_model": rec.to_model.matrix().tolist(),
        "settings": vars(settings), "voxel_resolution": args.voxel_resolution,
        "fit_seconds": round(rec.fit_seconds, 3), "total_seconds": round(time.perf_counter() - t0, 3),
        "loss": [round(v, 7) for v in rec.loss], "residuals": rec.residuals,
        "support": {"mean": float(rec.support.mean()), "p95": float(np.percentile(rec.support, 95)),
                    "color_limit": limit},
        "vertices": len(mesh.vertices), "faces": len(mesh.faces), "watertight": bool(mesh.is_watertight),
        "anchors": rec.anchors.round(6).tolist(),
    }
    report_path = out / "fit_report.json"
    atomic_write_text(report_path, json.dumps(report, indent=2))
    written += [code_path, support_path, report_path]
    r = rec.residuals
    for w in rec.warnings:
        progress.warn(w)
    progress.log(f"fit in {rec.fit_seconds:.1f} s; input-to-surface residual mean {r['mean_mm']:.2f} mm, "
                 f"95th pct {r['p95_mm']:.2f} mm; wrote {out}")
    progress.result(files=[str(p) for p in written], residuals=r)
    return 0
