"""The nipples found on the skin, for a video without landmarks: where the model's fitted nipple anchors only guess
(they were 8-54 mm off on the bench videos), the areola and the nipple show in the pictures.

Two steps from the fitted anchor: (1) in the SfM cloud, the colour-weighted centre of the darkest points nearby
(the areola is darker than the skin round it), repeated as a mean shift, and the anchor itself (a shadow under the
breast can win the mean shift); (2) from each of the two, on every frame, the likeliest nipple
within an areola's radius of that point (a dark nipple-sized spot at the centre of a reddish areola-sized disc),
and a RANSAC triangulation of those spots, so that frames where a fold, a shadow or the breast's outline won do
not count. The triangulated point is the nipple
when enough frames agree; otherwise the fitted anchor stays, flagged."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from .align import triangulate_views
from .cameras import Camera

AREOLA_MM = 18.0          # areola radius the search windows are sized by (15-22 mm in adults)
NIPPLE_MM = 4.0           # nipple radius: the scale of the dark spot looked for
CLOUD_RADIUS_MM = 35.0    # step 1: the neighbourhood of the mean shift
DARKEST = 20.0            # step 1: the darkest this percentage of the neighbourhood pulls
INLIER_PX = 6.0           # step 2: a frame agrees when its spot lies this close to the triangulated point
MIN_VIEWS = 6             # step 2: fewer agreeing frames: not found
MIN_ANGLE_DEG = 4.0       # step 2: pairs of frames closer than this give no depth
ROUNDS = 3                # step 2: windows re-centred on the last triangulation
MAX_MOVE_MM = 80.0        # a nipple found farther than this from the fitted anchor is not believed
WINDOW = 2.0              # step 2: half the window round the guess, in areola radii (the filters see this far)


@dataclass
class NippleFind:
    point: np.ndarray          # [3] in the SfM frame: found, or the fitted anchor when not
    found: bool
    views: int                 # frames that agree
    frames: int                # frames searched
    reprojection_px: float     # worst agreeing frame's distance to the triangulated point
    moved_mm: float            # from the fitted anchor
    start: str = ""            # where the search that won began: "darker centre" or "fitted anchor"

    def report(self) -> dict:
        return {"found": self.found, "views": self.views, "frames": self.frames,
                "reprojection_px": round(self.reprojection_px, 1), "moved_mm": round(self.moved_mm, 1),
                "start": self.start}


def darker_centre(start: np.ndarray, points: np.ndarray, luminance: np.ndarray, tree: cKDTree,
                  mm_per_unit: float, steps: int = 6) -> np.ndarray:
    """Step 1: mean shift towards the darkest points of the cloud round `start` (the areola)."""
    p = np.asarray(start, float)
    for _ in range(steps):
        idx = tree.query_ball_point(p, CLOUD_RADIUS_MM / mm_per_unit)
        if len(idx) < 10:
            break
        lum = luminance[idx]
        w = np.clip(np.percentile(lum, DARKEST) - lum, 0, None)
        if w.sum() <= 0:
            break
        p = (points[idx] * w[:, None]).sum(0) / w.sum()
    return p


def nipple_spot(image: np.ndarray, cam: Camera, point: np.ndarray, mm_per_unit: float):
    """Step 2 on one frame (BGR): (pixel, score) of the likeliest nipple within an areola's radius of where `point`
    projects, or None when the window leaves the frame or the point is behind the camera.

    Two cues, each as a z-score over the window, added: a dark nipple-sized spot (grey difference of Gaussians:
    alone it also takes the shadow a nipple casts on the areola's edge) and the centre of a reddish areola-sized
    disc (Laplacian of log(red / green), which shading barely changes: alone it is pulled by tilted skin)."""
    import cv2
    uv, z = cam.project(np.asarray(point, float)[None])
    if z[0] <= 0:
        return None
    px_per_mm = cam.K[0, 0] / (z[0] * mm_per_unit)
    rn, ra = NIPPLE_MM * px_per_mm, AREOLA_MM * px_per_mm
    half = int(WINDOW * ra)
    x0, y0 = (int(round(v)) for v in uv[0])
    h, w = image.shape[:2]
    if half < 2 or x0 - half < 0 or y0 - half < 0 or x0 + half >= w or y0 + half >= h:
        return None
    win = image[y0 - half:y0 + half + 1, x0 - half:x0 + half + 1].astype(np.float32) + 1.0
    gray = cv2.cvtColor(win, cv2.COLOR_BGR2GRAY)
    dot = cv2.GaussianBlur(gray, (0, 0), 2 * rn) - cv2.GaussianBlur(gray, (0, 0), max(rn / 1.5, 0.7))
    redness = cv2.GaussianBlur(np.log(win[..., 2] / win[..., 1]), (0, 0), ra / np.sqrt(2))
    disc = -cv2.Laplacian(redness, cv2.CV_32F)
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    inside = xx ** 2 + yy ** 2 <= ra ** 2
    score = sum((c - c[inside].mean()) / (c[inside].std() + 1e-9) for c in (dot, disc))
    score[~inside] = -np.inf
    k = np.unravel_index(np.argmax(score), score.shape)
    return np.array([x0 + xx[k], y0 + yy[k]], float), float(score[k])


def ransac_triangulate(cams: list[Camera], pixels: list[np.ndarray]):
    """(point, agreeing indices, worst agreeing re-projection px) from every pair of frames with enough angle,
    keeping the pair most frames agree with; None when no pair works."""
    best = None
    for a, b in combinations(range(len(cams)), 2):
        X, _, angle = triangulate_views([cams[a], cams[b]], [pixels[a], pixels[b]])
        if angle < MIN_ANGLE_DEG:
            continue
        err = np.array([np.linalg.norm(c.project(X[None])[0][0] - p) if c.project(X[None])[1][0] > 0 else np.inf
                        for c, p in zip(cams, pixels)])
        agree = np.flatnonzero(err < INLIER_PX)
        score = (len(agree), -err[agree].sum())
        if best is None or score > best[0]:
            best = (score, agree)
    if best is None or len(best[1]) < 2:
        return None
    agree = best[1]
    X, worst, _ = triangulate_views([cams[i] for i in agree], [pixels[i] for i in agree])
    return X, agree, worst


def depth_on_ray(centre: np.ndarray, clicked: np.ndarray, found: np.ndarray, mm_per_unit: float,
                 max_gap_mm: float) -> tuple[np.ndarray | None, float, float]:
    """A clicked point whose depth was guessed, and a point found on the frames: the point of the click's ray
    (from the camera `centre` through `clicked`) nearest to `found`, or None when `found` lies farther than
    `max_gap_mm` from the ray (another spot). -> point, distance from the ray (mm), change of depth (mm)."""
    ray = (clicked - centre) / np.linalg.norm(clicked - centre)
    along = float((found - centre) @ ray)
    gap = float(np.linalg.norm(found - centre - along * ray)) * mm_per_unit
    moved = (along - float(np.linalg.norm(clicked - centre))) * mm_per_unit
    return (centre + along * ray if gap <= max_gap_mm else None), gap, moved


def find_nipples(anchors: np.ndarray, points: np.ndarray, colors: np.ndarray, cams: list[Camera], image_dir: Path,
                 mm_per_unit: float) -> list[NippleFind]:
    """The left and right nipple (the fitted anchors `anchors[2:4]`, SfM frame) found on the skin."""
    import cv2
    luminance = np.asarray(colors, float) @ [0.299, 0.587, 0.114]
    tree = cKDTree(points)
    images = {}
    for c in cams:
        img = cv2.imread(str(Path(image_dir) / c.name))
        if img is not None:
            images[c.name] = img

    def search(anchor: np.ndarray, start: np.ndarray, name: str) -> NippleFind:
        X, agree, worst, searched = start, [], np.inf, 0
        for _ in range(ROUNDS):
            seen = [(c, s[0]) for c in cams if c.name in images
                    and (s := nipple_spot(images[c.name], c, X, mm_per_unit)) is not None]
            searched = len(seen)
            got = ransac_triangulate([c for c, _ in seen], [p for _, p in seen]) if len(seen) >= 2 else None
            if got is None:
                agree = []
                break
            X, agree, worst = got
        moved = float(np.linalg.norm(X - anchor) * mm_per_unit)
        found = len(agree) >= MIN_VIEWS and moved <= MAX_MOVE_MM
        return NippleFind(X if found else anchor.copy(), found, len(agree), searched, float(worst), moved, name)

    out = []
    for anchor in np.asarray(anchors, float)[2:4]:
        # from the darker centre (the anchor may be far off) and from the anchor itself (shadows, a fold or a
        # dark areola's edge can pull the darker centre away): the search most frames agree on wins
        tries = [search(anchor, darker_centre(anchor, points, luminance, tree, mm_per_unit), "darker centre"),
                 search(anchor, anchor, "fitted anchor")]
        out.append(max(tries, key=lambda n: (n.found, n.views, -n.reprojection_px)))
    return out
