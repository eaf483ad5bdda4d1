"""overview.png: the landmark frame with its landmarks, the aligned cloud and the result, side by side."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from BreastShapeModelLib.fileio import atomic_path

from .cameras import read_points_ply
from .workspace import VideoWorkspace as W


def overview(out_dir: Path, landmarks_found: bool = False) -> Path:
    """One picture: the landmark frame with its landmarks (the clicked ones, or with `landmarks_found` those a run
    without landmarks found), the aligned cloud, and the result (front and side)."""
    import cv2
    from BreastShapeModelLib.render import mesh_views, sheet, view_image
    out_dir = Path(out_dir)
    tiles, labels = [], []
    size = 360
    name, label = (W.PROPOSED_OVERLAY, "landmarks found") if landmarks_found else (W.OVERLAY, "landmarks")
    ov = cv2.imread(str(out_dir / name)) if (out_dir / name).is_file() else None
    if ov is not None:
        s = size / max(ov.shape[:2])
        ov = cv2.resize(ov, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)[:, :, ::-1]
        canvas = np.full((size, size, 3), 255, np.uint8)
        canvas[:ov.shape[0], :ov.shape[1]] = ov
        tiles.append(canvas)
        labels.append(label)
    cloud = out_dir / W.ALIGNED_CLOUD
    if cloud.exists():
        pts, _ = read_points_ply(cloud)
        tiles.append(view_image(pts, None, "front", size))
        labels.append(f"aligned cloud ({len(pts)} pts)")
    rec = out_dir / W.RECONSTRUCTION
    if rec.exists():
        mesh = trimesh.load(rec, process=False)
        tiles += mesh_views(mesh, ("front", "side"), size)
        labels += ["result front", "result side"]
    path = out_dir / W.OVERVIEW
    img = sheet([np.asarray(t)[..., :3] if np.asarray(t).ndim == 3 else np.asarray(t) for t in tiles], len(tiles), labels)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
