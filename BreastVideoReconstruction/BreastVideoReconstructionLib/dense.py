"""Denser points from the recovered cameras: dense optical flow between neighbouring frames, triangulated.

For each frame, the next frame with enough parallax (triangulation angle at the scene centre of at least
`min_pair_angle` degrees) is its partner. Farneback flow is computed both ways; a pixel is kept when the
forward-backward error is under `fb_threshold` px, the image is textured there, the triangulation angle passes
`min_angle`, the point lies in front of both cameras and re-projects within `max_reprojection` px in both.
A final statistical outlier filter drops isolated points.
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
    max_size: int = 960            # flow is computed on frames scaled to this long side
    step: int = 2                  # sample every step-th pixel (at flow scale)
    fb_threshold: float = 0.5      # px at flow scale
    min_angle: float = 3.0         # degrees, per point
    min_pair_angle: float = 8.0    # degrees between partner cameras (as seen from the scene centre)
    max_reprojection: float = 1.0  # px at full resolution
    min_texture: float = 1e-4      # minimum eigenvalue of the structure tensor (0..1 grey)
    max_points: int = 400_000


def _gray(path: Path, scale: float):
    import cv2
    img = cv2.imread(str(path))
    if scale != 1:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return img, cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def _flow(a, b):
    import cv2
    return cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=5, winsize=15, iterations=5, poly_n=7,
                                        poly_sigma=1.5, flags=cv2.OPTFLOW_FARNEBACK_GAUSSIAN)


def triangulate(cam_a: Camera, cam_b: Camera, px_a: np.ndarray, px_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear two-view triangulation (undistorted rays) -> points [N, 3] and triangulation angles (degrees)."""
    import cv2
    na, nb = cam_a.undistort(px_a), cam_b.undistort(px_b)
    Pa = np.concatenate([cam_a.R, cam_a.t[:, None]], 1)
    Pb = np.concatenate([cam_b.R, cam_b.t[:, None]], 1)
    X = cv2.triangulatePoints(Pa, Pb, na.T.astype(np.float64), nb.T.astype(np.float64))
    X = (X[:3] / X[3]).T
    ra, rb = X - cam_a.center, X - cam_b.center
    cos = (ra * rb).sum(1) / (np.linalg.norm(ra, axis=1) * np.linalg.norm(rb, axis=1) + 1e-12)
    return X, np.degrees(np.arccos(np.clip(cos, -1, 1)))


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
    """Scene with the dense points (colours from the frames) replacing the sparse ones; plus a report."""
    import cv2
    o = options or DenseOptions()
    t0 = time.perf_counter()
    cams = scene.cameras
    pairs = partners(cams, o.min_pair_angle)
    pts_all, col_all = [], []
    for k, (i, j) in enumerate(pairs):
        a, b = cams[i], cams[j]
        scale = min(1.0, o.max_size / max(a.width, a.height))
        img_a, ga = _gray(Path(image_dir) / a.name, scale)
        _, gb = _gray(Path(image_dir) / b.name, scale)
        fwd, bwd = _flow(ga, gb), _flow(gb, ga)
        h, w = ga.shape
        ys, xs = np.mgrid[0:h:o.step, 0:w:o.step]
        xs, ys = xs.ravel().astype(np.float32), ys.ravel().astype(np.float32)
        f = fwd[ys.astype(int), xs.astype(int)]
        xb, yb = xs + f[:, 0], ys + f[:, 1]
        inside = (xb >= 0) & (xb <= w - 1) & (yb >= 0) & (yb <= h - 1)
        grid = (len(range(0, h, o.step)), len(range(0, w, o.step)))
        back = cv2.remap(bwd, xb.reshape(grid), yb.reshape(grid), cv2.INTER_LINEAR).reshape(-1, 2)
        fb = np.hypot(xb + back[:, 0] - xs, yb + back[:, 1] - ys)
        texture = cv2.cornerMinEigenVal(ga.astype(np.float32) / 255.0, 5)[ys.astype(int), xs.astype(int)]
        keep = inside & (fb < o.fb_threshold) & (texture > o.min_texture)
        # back to full-resolution pixel coordinates (integer pixel centres)
        pa = (np.stack([xs[keep], ys[keep]], 1) + 0.5) / scale - 0.5
        pb = (np.stack([xb[keep], yb[keep]], 1) + 0.5) / scale - 0.5
        X, ang = triangulate(a, b, pa, pb)
        ua, za = a.project(X)
        ub, zb = b.project(X)
        err = np.maximum(np.linalg.norm(ua - pa, axis=1), np.linalg.norm(ub - pb, axis=1))
        good = (ang >= o.min_angle) & (za > 0) & (zb > 0) & (err < o.max_reprojection)
        pts_all.append(X[good])
        src = np.stack([xs[keep][good], ys[keep][good]], 1).astype(int)
        col_all.append(img_a[src[:, 1], src[:, 0], ::-1])
        if on_pair:
            on_pair(k + 1, len(pairs))
    pts = np.concatenate(pts_all) if pts_all else np.zeros((0, 3))
    cols = np.concatenate(col_all) if col_all else np.zeros((0, 3), np.uint8)
    raw = len(pts)
    if len(pts) > 20:                                       # statistical outlier removal (8 neighbours)
        d, _ = cKDTree(pts).query(pts, k=9)
        md = d[:, 1:].mean(1)
        ok = md < np.median(md) + 3 * md.std()
        pts, cols = pts[ok], cols[ok]
    if len(pts) > o.max_points:
        sel = np.random.default_rng(0).choice(len(pts), o.max_points, replace=False)
        pts, cols = pts[sel], cols[sel]
    report = {"pairs": len(pairs), "triangulated": int(raw), "points": int(len(pts)),
              "sparse_points": int(len(scene.points)), "seconds": round(time.perf_counter() - t0, 2)}
    return Scene(cams, pts, cols.astype(np.uint8), None, scene.depth), report


def stereo_pair(a: Camera, b: Camera, img_a, img_b, scale: float, num_disparities: int = 128, block: int = 5):
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
    sgbm = cv2.StereoSGBM_create(minDisparity=0, numDisparities=num_disparities, blockSize=block,
                                 P1=8 * 3 * block ** 2, P2=32 * 3 * block ** 2, disp12MaxDiff=1, uniquenessRatio=10,
                                 speckleWindowSize=100, speckleRange=2, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    disp = sgbm.compute(cv2.cvtColor(ra, cv2.COLOR_BGR2GRAY), cv2.cvtColor(rb, cv2.COLOR_BGR2GRAY)).astype(np.float32) / 16
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
    f, cx, cy = P1[0, 0], P1[0, 2], P1[1, 2]
    base = abs(P2[0, 3] if horizontal else P2[1, 3]) / f
    z = f * base / np.abs(d)
    Xr = np.stack([(xs - cx) * z / f, (ys - cy) * z / f, z], 1)
    Xc = Xr @ R1                                              # rectified -> camera a (R1 rotates camera a)
    X = (Xc - a.t) @ a.R                                      # camera a -> world
    return X, colors[ys, xs, ::-1]
