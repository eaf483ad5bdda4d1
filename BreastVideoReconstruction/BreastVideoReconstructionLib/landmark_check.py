"""The Check view: the 3D landmarks re-projected into a few frames other than the one they were placed on, so a
person sees whether the back-projection held (each mark should sit on its landmark in every view)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from BreastShapeModelLib.errors import UserError

from .cameras import read_cameras_json, read_points_ply
from .workspace import VideoWorkspace as W


def check_frames(names: list[str], landmark_frame: str | None, count: int) -> list[str]:
    """`count` frames spread evenly along the camera path, the landmark frame left out (it proves nothing)."""
    others = [n for n in names if n != landmark_frame]
    if not others:
        return []
    pick = np.unique(np.linspace(0, len(others) - 1, min(count, len(others))).round().astype(int))
    return [others[i] for i in pick]


def landmark_check(out_dir: str | Path, count: int = 4, height: int = 360) -> tuple[Path, list[dict]]:
    """W.LANDMARK_CHECK: `count` frames with the re-projected 3D landmarks; returns the picture and, per frame,
    the pixels and whether each landmark falls inside the image and in front of the camera."""
    import cv2
    from .landmarks2d import overlay, save_rgb
    out_dir = Path(out_dir)
    if not (out_dir / W.LANDMARKS_3D).is_file():
        raise UserError(f"{out_dir / W.LANDMARKS_3D}: not found (the align step has not run yet)")
    lms3, _ = read_points_ply(out_dir / W.LANDMARKS_3D)
    cams = {c.name: c for c in read_cameras_json(out_dir / W.CAMERAS)}
    try:
        landmark_frame = json.loads((out_dir / W.ALIGN_REPORT).read_text(encoding="utf-8")).get("landmark_frame")
    except (OSError, ValueError):
        landmark_frame = None
    rows, tiles = [], []
    for name in check_frames(sorted(cams), landmark_frame, count):
        cam = cams[name]
        uv, depth = cam.project(lms3)
        inside = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= cam.width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= cam.height - 1)
        rows.append({"frame": name, "pixels": uv.round(2).tolist(), "visible": inside.tolist()})
        bgr = cv2.imread(str(out_dir / W.IMAGES / name))
        if bgr is None:
            continue
        tile = overlay(bgr[:, :, ::-1], np.where(np.isfinite(uv), uv, -1e4))
        cv2.putText(tile, name, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
        s = height / tile.shape[0]
        tiles.append(cv2.resize(tile, None, fx=s, fy=s, interpolation=cv2.INTER_AREA))
    if not tiles:
        raise UserError(f"{out_dir}: no other registered frame to check the landmarks on")
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), constant_values=255) for t in tiles]
    if len(tiles) % 2:
        tiles.append(np.full_like(tiles[0], 255))
    grid = np.concatenate([np.concatenate(tiles[i:i + 2], 1) for i in range(0, len(tiles), 2)], 0)
    return save_rgb(out_dir / W.LANDMARK_CHECK, grid), rows
