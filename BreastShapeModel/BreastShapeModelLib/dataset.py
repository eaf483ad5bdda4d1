"""Training data in the method's HDF5 layout, and the preprocessing that builds it from watertight scans.

One group per shape (`"0"`, `"1"`, ...) with `surf_points` [N, 3] and `surf_normals` [N, 3] scaled into
[-0.5, 0.5]^3 (bounding-box centre, padding) and `landmarks` [6, 3] in the same frame. We add attributes the
official files lack but keep the layout: `name`, `center`, `scale` (model mm per unit follows from them).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import trimesh

from .errors import UserError
from .fileio import atomic_path
from .landmarks import load_anchor_array

MESH_SUFFIXES = (".ply", ".obj")


def scale_to_unit_cube(vertices: np.ndarray, padding: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre the bounding box at 0 and scale its longest side to 1 - padding: -> (points, centre, scale)."""
    lo, hi = vertices.min(0), vertices.max(0)
    centre = (lo + hi) / 2
    scale = (1.0 - padding) / float((hi - lo).max())
    return (vertices - centre) * scale, centre, scale


def sample_surface(mesh: trimesh.Trimesh, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform surface points with smooth (vertex-interpolated) unit normals."""
    pts, face = trimesh.sample.sample_surface(mesh, count, seed=seed)
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[face], pts)
    normals = np.einsum("ni,nij->nj", bary, mesh.vertex_normals[mesh.faces[face]])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    return pts, normals


def landmark_file(scan: Path) -> Path | None:
    """`<dir>/landmarks/<stem>.txt` (or .csv/.npy) next to a scan, matched by name."""
    for suffix in (".txt", ".csv", ".npy"):
        candidate = scan.parent / "landmarks" / f"{scan.stem}{suffix}"
        if candidate.exists():
            return candidate
    return None


@dataclass
class Processed:
    name: str
    points: np.ndarray
    normals: np.ndarray
    landmarks: np.ndarray
    center: np.ndarray
    scale: float


def process_scan(path: Path, padding: float, num_points: int, seed: int) -> Processed:
    """Load, check and normalise one scan; raises UserError naming the file when it cannot be used."""
    lm_path = landmark_file(path)
    if lm_path is None:
        raise UserError(f"{path.name}: no landmark file (expected landmarks/{path.stem}.txt with six rows x y z)")
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:                       # trimesh raises many types for broken files
        raise UserError(f"{path.name}: cannot read mesh ({exc})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise UserError(f"{path.name}: no triangles in the file")
    if not mesh.is_watertight:
        mesh.merge_vertices()                      # files that store each face's corners separately
    if not mesh.is_watertight:
        raise UserError(f"{path.name}: mesh is not watertight (close holes first, e.g. Poisson or a flat back)")
    landmarks = load_anchor_array(lm_path)
    mesh.vertices, center, scale = scale_to_unit_cube(np.asarray(mesh.vertices, np.float64), padding)
    points, normals = sample_surface(mesh, num_points, seed)
    return Processed(path.stem, points.astype(np.float32), normals.astype(np.float32),
                     ((landmarks - center) * scale).astype(np.float32), center, scale)


def find_scans(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise UserError(f"{directory}: not a directory of scans")
    scans = sorted(p for p in directory.iterdir() if p.suffix.lower() in MESH_SUFFIXES)
    if not scans:
        raise UserError(f"{directory}: no .ply or .obj scans found")
    return scans


def write_hdf5(path: Path, shapes: list[Processed], padding: float) -> Path:
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["padding"] = padding
            f.attrs["layout"] = "liRBSM: groups 0..N-1 with surf_points, surf_normals, landmarks in [-0.5, 0.5]^3"
            for i, s in enumerate(shapes):
                g = f.create_group(str(i))
                g.create_dataset("surf_points", data=s.points)
                g.create_dataset("surf_normals", data=s.normals)
                g.create_dataset("landmarks", data=s.landmarks)
                g.attrs["name"] = s.name
                g.attrs["center"] = s.center
                g.attrs["scale"] = s.scale
    return path


@dataclass
class ShapeData:
    """A whole dataset in memory, in model units ([-1, 1]^3: the HDF5 values x 2)."""

    names: list[str]
    points: list[np.ndarray]
    normals: list[np.ndarray]
    landmarks: np.ndarray            # [S, 6, 3]
    scales: np.ndarray               # [S] HDF5 scale per shape (NaN when the file has none)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def mm_per_unit(self) -> float:
        """Model units to mm: 1 / (2 * mean normalisation scale), as the method derives 291.77."""
        s = self.scales[np.isfinite(self.scales)]
        return float(1.0 / (2.0 * s.mean())) if len(s) else float("nan")

    def average_anchors(self) -> np.ndarray:
        return self.landmarks.mean(0)


def read_hdf5(path: Path) -> ShapeData:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: dataset file not found (run `preprocess` first)")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path}: not an HDF5 file ({exc})") from None
    with f:
        keys = sorted(f.keys(), key=lambda k: int(k) if k.isdigit() else k)
        if not keys:
            raise UserError(f"{path}: the dataset holds no shapes")
        names, points, normals, landmarks, scales = [], [], [], [], []
        for k in keys:
            g = f[k]
            missing = [d for d in ("surf_points", "surf_normals", "landmarks") if d not in g]
            if missing:
                raise UserError(f"{path}: shape {k} lacks {', '.join(missing)}")
            names.append(str(g.attrs.get("name", k)))
            points.append(2.0 * g["surf_points"][:].astype(np.float32))
            normals.append(g["surf_normals"][:].astype(np.float32))
            landmarks.append(2.0 * g["landmarks"][:].astype(np.float64))
            scales.append(float(g.attrs.get("scale", np.nan)))
    return ShapeData(names, points, normals, np.stack(landmarks), np.array(scales))
