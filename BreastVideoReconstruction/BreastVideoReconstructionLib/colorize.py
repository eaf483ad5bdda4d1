"""Colour the fitted mesh from the frames: every vertex projected into every frame (vectorised), back faces
culled, occluded vertices skipped (a per-frame z-buffer of the mesh itself), bilinear samples weighted by inverse
depth. Vertices no camera saw can be cut away (`remove_invisible`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from scipy.ndimage import minimum_filter

from .cameras import Camera

ZBUFFER_SCALE = 0.25        # the occlusion buffer is a quarter of the frame size
DEPTH_TOLERANCE = 0.01      # relative depth slack when comparing against the z-buffer


def visible(cam: Camera, vertices: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels, depths and a visibility mask of vertices in one camera."""
    uv, z = cam.project(vertices)
    facing = ((cam.center - vertices) * normals).sum(1) > 0
    inside = (z > 0) & np.isfinite(uv).all(1) & (uv[:, 0] >= 0) & (uv[:, 0] <= cam.width - 1) & \
        (uv[:, 1] >= 0) & (uv[:, 1] <= cam.height - 1)
    ok = inside & facing
    h, w = max(1, int(cam.height * ZBUFFER_SCALE)), max(1, int(cam.width * ZBUFFER_SCALE))
    zbuf = np.full((h, w), np.inf)
    idx = np.flatnonzero(inside)
    px = np.clip((uv[idx] * ZBUFFER_SCALE).astype(int), 0, [w - 1, h - 1])
    np.minimum.at(zbuf, (px[:, 1], px[:, 0]), z[idx])
    zbuf = minimum_filter(zbuf, size=3)              # closes splat holes so hidden vertices stay hidden
    pq = np.clip((uv[ok] * ZBUFFER_SCALE).astype(int), 0, [w - 1, h - 1])
    front = z[ok] <= zbuf[pq[:, 1], pq[:, 0]] * (1 + DEPTH_TOLERANCE) + 1e-12
    mask = np.zeros(len(vertices), bool)
    mask[np.flatnonzero(ok)[front]] = True
    return uv, z, mask


def sample_bilinear(img: np.ndarray, uv: np.ndarray, width: int = 1024) -> np.ndarray:
    """Bilinear samples of an image at pixel coordinates [N, 2] (maps laid out as rows: OpenCV caps both sides)."""
    import cv2
    n = len(uv)
    rows = max(1, -(-n // width))
    grid = np.zeros((rows * width, 2), np.float32)
    grid[:n] = uv
    grid = grid.reshape(rows, width, 2)
    out = cv2.remap(img, grid[..., 0], grid[..., 1], cv2.INTER_LINEAR)
    return out.reshape(rows * width, -1)[:n]


def colorize(mesh: trimesh.Trimesh, cameras: list[Camera], image_dir: Path, on_frame=None) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 per vertex and how many frames saw each vertex; mesh in the cameras' (SfM) frame."""
    import cv2
    V = np.asarray(mesh.vertices, float)
    N = np.asarray(mesh.vertex_normals, float)
    acc = np.zeros((len(V), 3))
    wsum = np.zeros(len(V))
    seen = np.zeros(len(V), int)
    for k, cam in enumerate(cameras):
        img = cv2.imread(str(Path(image_dir) / cam.name))
        if img is None:
            continue
        uv, z, mask = visible(cam, V, N)
        if mask.any():
            col = sample_bilinear(img, uv[mask])[:, ::-1]
            w = 1.0 / z[mask]
            acc[mask] += col * w[:, None]
            wsum[mask] += w
            seen[mask] += 1
        if on_frame:
            on_frame(k + 1, len(cameras))
    rgb = np.full((len(V), 3), 128.0)
    ok = wsum > 0
    rgb[ok] = acc[ok] / wsum[ok, None]
    return rgb.round().clip(0, 255).astype(np.uint8), seen


def remove_invisible(mesh: trimesh.Trimesh, seen: np.ndarray) -> trimesh.Trimesh:
    """Keep the faces whose three vertices some camera saw."""
    keep = (seen[mesh.faces] > 0).all(1)
    out = trimesh.Trimesh(mesh.vertices, mesh.faces[keep], process=False)
    out.remove_unreferenced_vertices()
    return out
