"""Denser points from the recovered cameras: rectified two-view stereo between neighbouring frames.

Each frame is paired with the next frame that has enough parallax (`min_pair_angle` degrees as seen from the
scene centre). The pair is rectified with its known poses and matched along epipolar lines by semi-global block
matching (left-right checked, unique, speckle-filtered), searching only the depths of the subject (0.6-1.6x the
distance to the centre the video circles), then triangulated. A statistical outlier filter drops isolated points.
(Dense optical flow was tried first: on low-contrast skin it gave 5 mm errors against 1.4 mm for this.)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from .cameras import Camera, Scene
from .sfm import orbit_centre


@dataclass
class DenseOptions:
    max_size: int = 960            # stereo runs on frames scaled to this long side
    min_pair_angle: float = 10.0   # degrees between partner cameras (as seen from the scene centre)
    depth_range: tuple = (0.6, 1.6)  # searched depths, relative to the camera's distance to the scene centre
    block: int = 5
    max_points: int = 300_000


def partners(cams: list[Camera], min_pair_angle: float) -> list[tuple[int, int]]:
    centre = orbit_centre(cams)
    dirs = np.stack([c.center - centre for c in cams])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    pairs = []
    for i in range(len(cams) - 1):
        for j in range(i + 1, len(cams)):
            if np.degrees(np.arccos(np.clip(dirs[i] @ dirs[j], -1, 1))) >= min_pair_angle:
                pairs.append((i, j))
                break
    return pairs


def densify(scene: Scene, image_dir: Path, options: DenseOptions | None = None, on_pair=None) -> tuple[Scene, dict]:
    """Scene with the dense points (colours from the frames) in place of the sparse ones; plus a report."""
    import cv2
    o = options or DenseOptions()
    t0 = time.perf_counter()
    cams = scene.cameras
    centre = orbit_centre(cams)
    pairs = partners(cams, o.min_pair_angle)
    pts_all, col_all = [], []
    for k, (i, j) in enumerate(pairs):
        a, b = cams[i], cams[j]
        scale = min(1.0, o.max_size / max(a.width, a.height))
        imgs = []
        for c in (a, b):
            img = cv2.imread(str(Path(image_dir) / c.name))
            imgs.append(cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else img)
        zc = float((a.R @ centre + a.t)[2])
        if zc > 0:
            X, col = stereo_pair(a, b, imgs[0], imgs[1], scale, (o.depth_range[0] * zc, o.depth_range[1] * zc), o.block)
            pts_all.append(X)
            col_all.append(col)
        if on_pair:
            on_pair(k + 1, len(pairs))
    pts = np.concatenate(pts_all) if pts_all else np.zeros((0, 3))
    cols = np.concatenate(col_all) if col_all else np.zeros((0, 3), np.uint8)
    raw = len(pts)
    rng = np.random.default_rng(0)
    if len(pts) > 2 * o.max_points:                          # thin first: the outlier filter is O(N log N)
        sel = rng.choice(len(pts), 2 * o.max_points, replace=False)
        pts, cols = pts[sel], cols[sel]
    if len(pts) > 20:                                        # statistical outlier removal (8 neighbours)
        d, _ = cKDTree(pts).query(pts, k=9)
        md = d[:, 1:].mean(1)
        ok = md < np.median(md) + 2 * md.std()
        pts, cols = pts[ok], cols[ok]
    if len(pts) > o.max_points:
        sel = rng.choice(len(pts), o.max_points, replace=False)
        pts, cols = pts[sel], cols[sel]
    report = {"method": "rectified SGBM stereo", "pairs": len(pairs), "triangulated": int(raw),
              "points": int(len(pts)), "sparse_points": int(len(scene.points)),
              "seconds": round(time.perf_counter() - t0, 2)}
    return Scene(cams, pts, cols.astype(np.uint8), None, scene.depth), report


def stereo_pair(a: Camera, b: Camera, img_a, img_b, scale: float, depth_range: tuple[float, float], block: int = 5):
    """Rectify a neighbouring pair and match along epipolar lines (semi-global block matching, left-right
    checked) -> world points [N, 3], colours [N, 3] (RGB) and the pixels of `a` (full resolution)."""
    import cv2
    h, w = img_a.shape[:2]
    Ka, Kb = a.K.copy(), b.K.copy()
    Ka[:2] *= scale
    Kb[:2] *= scale
    Ka[:2, 2] = (a.K[:2, 2] + 0.5) * scale - 0.5
    Kb[:2, 2] = (b.K[:2, 2] + 0.5) * scale - 0.5
    da, db = np.r_[a.dist, 0, 0], np.r_[b.dist, 0, 0]
    R = b.R @ a.R.T
    t = b.t - R @ a.t
    R1, R2, P1, P2, Q, _, _ = cv2.stereoRectify(Ka, da, Kb, db, (w, h), R, t.reshape(3, 1), flags=cv2.CALIB_ZERO_DISPARITY, alpha=0)
    horizontal = abs(P2[0, 3]) > abs(P2[1, 3])
    m1 = cv2.initUndistortRectifyMap(Ka, da, R1, P1, (w, h), cv2.CV_32FC1)
    m2 = cv2.initUndistortRectifyMap(Kb, db, R2, P2, (w, h), cv2.CV_32FC1)
    ra = cv2.remap(img_a, *m1, cv2.INTER_LINEAR)
    rb = cv2.remap(img_b, *m2, cv2.INTER_LINEAR)
    if not horizontal:                                         # vertical baseline: match on transposed images
        ra, rb = cv2.transpose(ra), cv2.transpose(rb)
    flip = (P2[0, 3] if horizontal else P2[1, 3]) > 0         # b left of a: swap roles by mirroring
    if flip:
        ra, rb = ra[:, ::-1].copy(), rb[:, ::-1].copy()
    f, base = P1[0, 0], abs(P2[0, 3] if horizontal else P2[1, 3]) / P1[0, 0]
    dmin, dmax = f * base / depth_range[1], f * base / depth_range[0]     # search only the subject's depths
    if not (np.isfinite(dmax) and 0 < dmax < 0.5 * (w if horizontal else h)):
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)                # rectification too distorted: skip
    sgbm = cv2.StereoSGBM_create(minDisparity=int(dmin), numDisparities=max(16, int(np.ceil((dmax - dmin) / 16)) * 16),
                                 blockSize=block,
                                 P1=8 * 3 * block ** 2, P2=32 * 3 * block ** 2, disp12MaxDiff=1, uniquenessRatio=10,
                                 speckleWindowSize=100, speckleRange=2, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    disp = sgbm.compute(cv2.cvtColor(ra, cv2.COLOR_BGR2GRAY), cv2.cvtColor(rb, cv2.COLOR_BGR2GRAY)).astype(np.float32) / 16
    disp[disp < int(dmin) + 0.5] = -1                                    # invalid (SGBM marks them minDisparity-1)
    colors = ra
    if flip:
        disp, colors = disp[:, ::-1], colors[:, ::-1]
        disp = np.where(disp > 0, -disp, np.nan)
    else:
        disp = np.where(disp > 0, disp, np.nan)
    if not horizontal:
        disp, colors = disp.T, cv2.transpose(colors)
    ys, xs = np.nonzero(np.isfinite(disp))
    d = disp[ys, xs]
    # rectified camera a: x = P1 [X; 1] with baseline along x (or y)
    cx, cy = P1[0, 2], P1[1, 2]
    z = f * base / np.abs(d)
    Xr = np.stack([(xs - cx) * z / f, (ys - cy) * z / f, z], 1)
    Xc = Xr @ R1                                              # rectified -> camera a (R1 rotates camera a)
    X = (Xc - a.t) @ a.R                                      # camera a -> world
    return X, colors[ys, xs, ::-1]
