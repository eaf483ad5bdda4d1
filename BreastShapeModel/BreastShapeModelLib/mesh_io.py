"""Writing meshes and their anchors (atomically), so a failed run never leaves half a file behind."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from .fileio import atomic_path
from .landmarks import write_anchor_files


def write_mesh(mesh: trimesh.Trimesh, path: str | Path) -> Path:
    """Write a mesh in the format its suffix names (.ply binary, .obj, .stl, .off)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        mesh.export(tmp, file_type=path.suffix.lstrip(".").lower())
    return path


def write_shape(mesh: trimesh.Trimesh, anchors: np.ndarray, stem: str | Path, code: np.ndarray | None = None,
                units: str = "mm") -> list[Path]:
    """`<stem>.ply`, `<stem>_anchors.mrk.json`, `<stem>_anchors.csv` and optionally `<stem>_code.npy`."""
    stem = Path(stem)
    paths = [write_mesh(mesh, stem.with_name(stem.name + ".ply"))]
    paths += write_anchor_files(anchors, stem.with_name(stem.name + "_anchors"), units=units)
    if code is not None:
        code_path = stem.with_name(stem.name + "_code.npy")
        with atomic_path(code_path) as tmp:
            np.save(tmp, np.asarray(code, dtype=np.float32))
        paths.append(code_path)
    return paths
