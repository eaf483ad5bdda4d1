"""Reading a surface to measure and what lies beside it: its landmarks, its support map and its fit residual
(our reconstructions write them next to the mesh; any other mesh needs --landmarks)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh

from ..errors import UserError
from ..landmarks import read_landmarks
from ..workspace import Workspace

MESH_SUFFIXES = (".ply", ".obj", ".stl", ".off", ".vtk")


def read_surface(path: Path) -> trimesh.Trimesh:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"surface not found: {path}")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise UserError(f"{path}: expected a mesh ({', '.join(MESH_SUFFIXES)})")
    try:
        if path.suffix.lower() == ".vtk":
            from ..cloud_io import _read_vtk
            v, f = _read_vtk(path)
            mesh = trimesh.Trimesh(v, f, process=False)
        else:
            mesh = trimesh.load(path, process=False)
            if isinstance(mesh, trimesh.Scene):
                mesh = mesh.dump(concatenate=True)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path}: cannot read the mesh ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) < 100:
        raise UserError(f"{path}: not a surface mesh (it has no faces or fewer than 100)")
    return mesh


def find_landmarks(surface: Path, given: Path | None) -> tuple[np.ndarray, Path]:
    """The given landmark file, else the anchors our tools wrote beside the surface."""
    if given is not None:
        return read_landmarks(given), Path(given)
    surface = Path(surface)
    ours = surface.name == Workspace.RECONSTRUCTION        # what the user marked first, else the fitted anchors
    for cand in (surface.with_name(Workspace.LANDMARKS + ".mrk.json") if ours else None,
                 surface.with_name(surface.stem + "_anchors.mrk.json")):
        if cand is not None and cand.is_file():
            return read_landmarks(cand), cand
    raise UserError(f"{surface}: no landmarks given and none found beside it ({surface.stem}_anchors.mrk.json); "
                    f"pass --landmarks FILE with the six landmarks")


def vertex_property(mesh: trimesh.Trimesh, name: str) -> np.ndarray | None:
    """A per-vertex property of a mesh read from PLY (e.g. `support`, `signed_distance`), or None."""
    attr = getattr(mesh, "vertex_attributes", {}).get(name)
    if attr is None:
        raw = mesh.metadata.get("_ply_raw", {}).get("vertex", {}).get("data") if hasattr(mesh, "metadata") else None
        if raw is not None and name in raw.dtype.names:
            attr = raw[name]
    return None if attr is None else np.asarray(attr, float).ravel()


def find_support(mesh: trimesh.Trimesh, surface: Path) -> np.ndarray | None:
    """Per-vertex support (distance to the nearest input point, mm), from the PLY or the .npy beside it."""
    attr = vertex_property(mesh, "support")
    if attr is None:
        npy = Path(surface).with_name(Workspace.SUPPORT)
        if npy.is_file():
            attr = np.load(npy)
    attr = None if attr is None else np.asarray(attr, float).ravel()
    return attr if attr is not None and len(attr) == len(mesh.vertices) else None


def find_residual(surface: Path) -> float:
    """The fit's mean residual (mm) from fit_report.json beside the surface; 0 for other meshes."""
    rep = Path(surface).with_name(Workspace.FIT_REPORT)
    try:
        return float(json.loads(rep.read_text(encoding="utf-8")).get("residuals", {}).get("mean_mm", 0.0))
    except (OSError, ValueError):
        return 0.0
