"""Reading a scan or point cloud a user has: points [N, 3] from clouds, or sampled on meshes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from .errors import UserError

CLOUD_SUFFIXES = (".ply", ".obj", ".stl", ".off", ".vtk", ".xyz", ".npy", ".txt", ".csv")


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
    shown = vtk.vtkObject.GetGlobalWarningDisplay()
    vtk.vtkObject.GlobalWarningDisplayOff()          # VTK's own error lines would bury our one-line message
    try:
        reader.Update()
    finally:
        vtk.vtkObject.SetGlobalWarningDisplay(shown)
    data = reader.GetOutput()
    if data is None or not hasattr(data, "GetNumberOfPoints") or data.GetNumberOfPoints() == 0:
        raise UserError(f"{path}: not a readable legacy VTK file with points (a mesh or point cloud was expected)")
    pts = vtk_to_numpy(data.GetPoints().GetData()).astype(np.float64)
    faces = np.empty((0, 3), dtype=np.int64)
    if isinstance(data, vtk.vtkPolyData) and data.GetNumberOfPolys():
        tri = vtk.vtkTriangleFilter()
        tri.SetInputData(data)
        tri.Update()
        faces = vtk_to_numpy(tri.GetOutput().GetPolys().GetData()).reshape(-1, 4)[:, 1:]
    return pts, faces
