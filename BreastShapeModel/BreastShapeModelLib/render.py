"""Small pictures without a GPU or a window: shaded orthographic views of meshes and points, and sheets of them.

Surfaces are splatted as dense surface samples into a z-buffer and Lambert-shaded by their normals; that is
enough for contact sheets and side-by-side comparisons, and runs anywhere numpy does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image, ImageDraw

from .fileio import atomic_path

VIEWS = {"front": (0, 1, 2), "side": (2, 1, 0)}     # (image x axis, image y axis, depth axis)


def view_image(points: np.ndarray, normals: np.ndarray | None, view: str = "front", size: int = 256,
               extent: tuple[np.ndarray, np.ndarray] | None = None, colors: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 [size, size, 3] of points seen along -depth axis (front: from +z; side: from +x)."""
    ax, ay, ad = VIEWS[view]
    sign = 1.0 if view == "front" else -1.0          # side view looks from the patient's right (-x)
    pts = np.asarray(points, dtype=np.float64)
    lo, hi = extent if extent is not None else (pts.min(0), pts.max(0))
    span = float(max(hi[ax] - lo[ax], hi[ay] - lo[ay])) * 1.05 or 1.0
    cx, cy = (lo[ax] + hi[ax]) / 2, (lo[ay] + hi[ay]) / 2
    u = ((pts[:, ax] - cx) * (1 if view == "front" else -1) / span + 0.5) * (size - 1)
    v = (0.5 - (pts[:, ay] - cy) / span) * (size - 1)
    depth = sign * pts[:, ad]
    iu, iv = np.round(u).astype(int), np.round(v).astype(int)
    ok = (iu >= 0) & (iu < size) & (iv >= 0) & (iv < size)
    if normals is not None:
        n = np.asarray(normals, dtype=np.float64)
        light = np.zeros(3)
        light[ad], light[ay], light[ax] = sign * 0.8, 0.45, -0.35 * (1 if view == "front" else -1)
        shade = np.clip(n @ (light / np.linalg.norm(light)), 0, 1) * 0.8 + 0.2
    else:                                              # no normals: shade by depth
        shade = 0.25 + 0.75 * (depth - depth.min()) / max(float(np.ptp(depth)), 1e-9)
    base = np.array([0.93, 0.78, 0.70]) if colors is None else np.asarray(colors, np.float64)
    rgb = shade[:, None] * (base if base.ndim == 1 else base)
    idx = np.nonzero(ok)[0]
    idx = idx[np.argsort(-depth[idx], kind="stable")]         # nearest first
    flat = iv[idx] * size + iu[idx]
    _, first = np.unique(flat, return_index=True)             # the nearest point of every pixel
    idx = idx[first]
    img = np.full((size, size, 3), 255, dtype=np.float64)
    zbuf = np.full((size, size), -np.inf)
    img[iv[idx], iu[idx]] = rgb[idx] * 255 if rgb.ndim == 2 else rgb * 255
    zbuf[iv[idx], iu[idx]] = depth[idx]
    from scipy.ndimage import grey_dilation
    # a pixel that missed the near surface shows something far behind it (or nothing): fill it from its
    # neighbours when they are clearly nearer
    near_max = grey_dilation(zbuf, size=3)
    holes = np.isinf(zbuf) | (zbuf < near_max - 0.03 * span)
    holes &= np.isfinite(near_max) & (grey_dilation((~holes).astype(np.uint8), size=3) > 0)
    if holes.any():
        keep = np.where(np.isinf(zbuf), -np.inf, zbuf)
        best = grey_dilation(keep, size=3)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                src = np.roll(np.roll(keep, dy, 0), dx, 1)
                take = holes & (src == best)
                img[take] = np.roll(np.roll(img, dy, 0), dx, 1)[take]
    return img.astype(np.uint8)


def mesh_views(mesh: trimesh.Trimesh, views=("front", "side"), size: int = 256, samples: int = 200_000,
               extent=None, seed: int = 0) -> list[np.ndarray]:
    from .dataset import sample_surface
    pts, normals = sample_surface(mesh, samples, seed)
    return [view_image(pts, normals, v, size, extent) for v in views]


def sheet(tiles: list[np.ndarray], columns: int, labels: list[str] | None = None, pad: int = 4) -> Image.Image:
    """Lay equally sized RGB tiles out in a grid with optional captions."""
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    cap = 14 if labels else 0
    out = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + pad + cap) + pad), "white")
    draw = ImageDraw.Draw(out)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        x, y = pad + c * (w + pad), pad + r * (h + pad + cap)
        out.paste(Image.fromarray(tile), (x, y))
        if labels and i < len(labels):
            draw.text((x + 2, y + h + 1), labels[i], fill=(40, 40, 40))
    return out


def save_png(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
