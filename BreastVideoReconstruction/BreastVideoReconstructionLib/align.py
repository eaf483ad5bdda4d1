"""2D landmarks -> 3D, similarity alignment to the model's average anchors, pruning by the mean surface.

Back-projection as the method: cast the camera ray through each landmark, take the `k` cloud points nearest to
the ray and keep the one nearest to the camera (or read the dense depth map when there is one). Better where it
works: track the landmark into neighbouring frames (pyramidal Lucas-Kanade, forward-backward checked) and
triangulate all views; a landmark falls back to the ray method when tracking gives too few views, too little
parallax, a large re-projection error, or a point far from the ray estimate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from BreastShapeModelLib.alignment import Similarity, umeyama
from BreastShapeModelLib.errors import UserError

from .cameras import Camera, Scene


@dataclass
class AlignResult:
    landmarks_3d: np.ndarray           # [6, 3] SfM frame
    methods: list[str]                 # per landmark: "track" / "ray" / "depth"
    to_model: Similarity               # SfM -> model units
    aligned_points: np.ndarray         # pruned, model units
    aligned_colors: np.ndarray
    aligned_landmarks: np.ndarray      # [6, 3] model units
    counts: dict = field(default_factory=dict)
    debug: dict = field(default_factory=dict)


def ray_point(cam: Camera, pixel: np.ndarray, points: np.ndarray, k: int = 5) -> np.ndarray:
    """The method's back-projection: among the k points nearest to the ray, the one nearest to the camera."""
    d = cam.rays(np.asarray(pixel, float)[None])[0]
    rel = points - cam.center
    along = rel @ d
    front = along > 0
    if front.sum() < k:
        raise UserError("too few cloud points in front of the landmark frame's camera to back-project landmarks")
    rel, along, idx = rel[front], along[front], np.flatnonzero(front)
    perp = np.linalg.norm(rel - along[:, None] * d, axis=1)
    near = np.argpartition(perp, k - 1)[:k]
    best = near[np.argmin(along[near])]
    return points[idx[best]]


def first_hit(mesh, origin: np.ndarray, through: np.ndarray) -> tuple[np.ndarray | None, float]:
    """Where the ray from `origin` through `through` first meets `mesh`, and the angle (degrees) between the ray
    and the surface normal there; (None, 90) when it misses."""
    d = (through - origin) / np.linalg.norm(through - origin)
    locs, _, tri = mesh.ray.intersects_location(origin[None], d[None], multiple_hits=True)
    if not len(locs):
        return None, 90.0
    j = int(np.argmin((locs - origin) @ d))
    return locs[j], float(np.degrees(np.arccos(min(1.0, abs(float(mesh.face_normals[tri[j]] @ d))))))


def depth_point(cam: Camera, pixel: np.ndarray, depth: np.ndarray) -> np.ndarray | None:
    h, w = depth.shape[:2]
    sx, sy = w / cam.width, h / cam.height
    x, y = int(round((pixel[0] + 0.5) * sx - 0.5)), int(round((pixel[1] + 0.5) * sy - 0.5))
    if not (0 <= x < w and 0 <= y < h) or not np.isfinite(depth[y, x]) or depth[y, x] <= 0:
        return None
    xn = cam.undistort(np.asarray(pixel, float)[None])[0]
    pc = np.array([xn[0], xn[1], 1.0]) * depth[y, x]
    return cam.R.T @ (pc - cam.t)


def triangulate_views(cams: list[Camera], pixels: list[np.ndarray]) -> tuple[np.ndarray, float, float]:
    """Multi-view DLT on undistorted coordinates -> point, max re-projection error (px), max ray angle (deg)."""
    rows = []
    for c, p in zip(cams, pixels):
        xn = c.undistort(np.asarray(p, float)[None])[0]
        P = np.concatenate([c.R, c.t[:, None]], 1)
        rows += [xn[0] * P[2] - P[0], xn[1] * P[2] - P[1]]
    _, _, vt = np.linalg.svd(np.asarray(rows))
    X = vt[-1, :3] / vt[-1, 3]
    err = max(float(np.linalg.norm(c.project(X[None])[0][0] - p)) for c, p in zip(cams, pixels))
    dirs = np.stack([(X - c.center) / np.linalg.norm(X - c.center) for c in cams])
    ang = float(np.degrees(np.arccos(np.clip((dirs @ dirs.T).min(), -1, 1))))
    return X, err, ang


def track(image_dir: Path, cams: list[Camera], ref: int, pixels: np.ndarray, hops: int = 4,
          fb_threshold: float = 1.0) -> list[list[tuple[int, np.ndarray]]]:
    """Per landmark, (camera index, pixel) observations: the reference plus LK tracks up to `hops` frames each way."""
    import cv2
    gray = {}

    def load(i):
        if i not in gray:
            gray[i] = cv2.cvtColor(cv2.imread(str(Path(image_dir) / cams[i].name)), cv2.COLOR_BGR2GRAY)
        return gray[i]
    lk = dict(winSize=(31, 31), maxLevel=4, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 0.01))
    obs = [[(ref, np.asarray(p, float))] for p in pixels]
    for direction in (-1, 1):
        cur = np.asarray(pixels, np.float32).reshape(-1, 1, 2)
        alive = np.ones(len(pixels), bool)
        i = ref
        for _ in range(hops):
            j = i + direction
            if not 0 <= j < len(cams):
                break
            nxt, st, _ = cv2.calcOpticalFlowPyrLK(load(i), load(j), cur, None, **lk)
            back, st2, _ = cv2.calcOpticalFlowPyrLK(load(j), load(i), nxt, None, **lk)
            fb = np.linalg.norm((back - cur).reshape(-1, 2), axis=1)
            alive &= (st.ravel() == 1) & (st2.ravel() == 1) & (fb < fb_threshold)
            for k in np.flatnonzero(alive):
                obs[k].append((j, nxt[k, 0].astype(float)))
            cur, i = nxt, j
            if not alive.any():
                break
    return obs


def sweep(image_dir: Path, cams: list[Camera], ref: int, pixel: np.ndarray, initial: np.ndarray,
          neighbours: int = 4, half: int = 12, span: float = 0.15, steps: int = 241) -> tuple[np.ndarray, float]:
    """Photo-consistency search along the landmark's ray: the depth whose projections into the neighbouring
    frames look most like the landmark's patch (mean normalised cross-correlation); -> point, score."""
    import cv2
    cam = cams[ref]
    d0 = float(np.linalg.norm(initial - cam.center))
    ray = cam.rays(np.asarray(pixel, float)[None])[0]
    depths = d0 * np.linspace(1 - span, 1 + span, steps)
    cand = cam.center + depths[:, None] * ray
    size = (2 * half + 1, 2 * half + 1)

    def gray(i):
        return cv2.cvtColor(cv2.imread(str(Path(image_dir) / cams[i].name)), cv2.COLOR_BGR2GRAY).astype(np.float32)
    ref_patch = cv2.getRectSubPix(gray(ref), size, tuple(map(float, pixel)))
    ref_patch = (ref_patch - ref_patch.mean()) / (ref_patch.std() + 1e-6)
    scores, used = np.zeros(steps), 0
    for j in range(max(0, ref - neighbours), min(len(cams), ref + neighbours + 1)):
        if j == ref:
            continue
        uv, z = cams[j].project(cand)
        img = gray(j)
        h, w = img.shape
        ok = (z > 0) & (uv[:, 0] > half) & (uv[:, 0] < w - half - 1) & (uv[:, 1] > half) & (uv[:, 1] < h - half - 1)
        if not ok.all():
            continue
        used += 1
        for k, p in enumerate(uv):
            q = cv2.getRectSubPix(img, size, (float(p[0]), float(p[1])))
            scores[k] += float(((q - q.mean()) / (q.std() + 1e-6) * ref_patch).mean())
    if used < 2:
        return initial, 0.0
    scores /= used
    best = int(np.argmax(scores))
    return cand[best], float(scores[best])


def landmarks_to_3d(scene: Scene, image_dir: Path, ref: int, pixels: np.ndarray, refine: bool = True,
                    k: int = 5) -> tuple[np.ndarray, list[str], dict]:
    cam = scene.cameras[ref]
    depth = scene.depth.get(cam.name)
    pts3, methods, info = [], [], []
    ray_pts = []
    for p in pixels:
        q = depth_point(cam, p, depth) if depth is not None else None
        ray_pts.append(q if q is not None else ray_point(cam, p, scene.points, k))
        methods.append("depth" if q is not None else "ray")
    ray_pts = np.asarray(ray_pts)
    tracks = track(image_dir, scene.cameras, ref, pixels) if refine else [[] for _ in pixels]
    # scale of the scene: distance of the landmark camera to the ray estimates
    scene_depth = float(np.median(np.linalg.norm(ray_pts - cam.center, axis=1)))
    for i, obs in enumerate(tracks):
        X = ray_pts[i]
        detail = {"views": len(obs)}
        if len(obs) >= 3:
            Xt, err, ang = triangulate_views([scene.cameras[j] for j, _ in obs], [p for _, p in obs])
            gap = float(np.linalg.norm(Xt - ray_pts[i]))
            detail.update(reprojection_px=round(err, 3), angle_deg=round(ang, 2), gap_to_ray=round(gap / scene_depth, 4))
            if err < 2.0 and ang >= 4.0 and gap < 0.05 * scene_depth:
                X, methods[i] = Xt, "track"
        if refine and methods[i] != "track":
            Xs, score = sweep(image_dir, scene.cameras, ref, pixels[i], ray_pts[i])
            detail["sweep_score"] = round(score, 3)
            if score >= 0.6:
                X, methods[i] = Xs, "sweep"
        pts3.append(X)
        info.append(detail)
    return np.asarray(pts3), methods, {"per_landmark": info, "ray_points": ray_pts.tolist()}


def mean_surface_distance(model, points: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """|SDF| of the model's mean shape at points (model units); inf outside the model's cube."""
    out = np.full(len(points), np.inf)
    inside = np.all(np.abs(points) <= 1.0, axis=1)
    if inside.any():
        out[inside] = np.abs(np.asarray(model.sdf(points[inside], model.mean_code), float).ravel())
    return out


# evidence of a 3D landmark by how it was found: triangulated from tracks (or read from depth) is solid; the
# photo-consistency sweep and the single-ray estimate are guesses
EVIDENCE = {"track": 1.0, "depth": 1.0, "sweep": 0.5, "ray": 0.3}
TRACK_GOOD_PX = 1.5             # tracked landmarks above this re-projection error count half
# model units, per landmark: how far anatomy lets each landmark stray from where the other five put it through the
# average anchors (the 97.5th percentile over 480 generator and Anny torsos against the bundled model's anchors:
# 26 mm for the sternal notch, 60-75 mm for nipples and coracoids, 93 mm for the navel, far from the others).
# Only gross errors (a wrong spot clicked) stand out; smaller ones are left to fit-driven pruning and the anchor
# term's small weight.
LOO_TOLERANCE = np.array([0.10, 0.36, 0.29, 0.27, 0.24, 0.23])
MIN_WEIGHT = 0.02
GROSS_OUTLIER = 3.0        # a landmark this many tolerances from where the others put it is left out (weight 0)


def landmark_evidence(methods: list[str], details: list[dict]) -> tuple[np.ndarray, list[str]]:
    """Per landmark: a weight in (0, 1] from how it was found, and why."""
    weights, reasons = [], []
    for m, d in zip(methods, details):
        w = EVIDENCE.get(m, 0.3)
        why = f"{m}"
        if m == "track":
            err = d.get("reprojection_px", 0.0)
            why += f", {d.get('views', 0)} views, {err:.1f} px"
            if err > TRACK_GOOD_PX:
                w *= 0.5
        elif m == "sweep":
            why += f" (score {d.get('sweep_score', 0):.2f}; tracking failed)"
        elif m == "ray":
            why += " (single ray: tracking and the sweep failed)"
        weights.append(w)
        reasons.append(why)
    return np.asarray(weights), reasons


def robust_landmark_weights(landmarks: np.ndarray, anchors: np.ndarray, evidence: np.ndarray,
                            tolerance: np.ndarray = LOO_TOLERANCE, max_outliers: int = 2) -> tuple[np.ndarray, dict]:
    """Leave-one-out consistency of the six landmarks with the average anchors: each landmark is predicted from
    the others (weighted similarity) and, when it strays more than its `tolerance` (model units) while the others
    agree, it is down-weighted in proportion; beyond `GROSS_OUTLIER` tolerances it is a failed triangulation and is
    left out (weight 0: even at the smallest weight, a landmark 800 mm off pulled a weighted similarity 20 % off in
    scale), as long as four landmarks remain. Returns weights and, per landmark, the residual (model units)."""
    tolerance = np.broadcast_to(np.asarray(tolerance, float), (6,))
    w = np.clip(np.asarray(evidence, float), MIN_WEIGHT, 1.0).copy()
    out = {}
    for _ in range(max_outliers):
        res = np.zeros(6)
        for i in range(6):
            others = np.arange(6) != i
            S = umeyama(landmarks[others], anchors[others], weights=w[others])
            res[i] = float(np.linalg.norm(S.apply(landmarks[i:i + 1])[0] - anchors[i]))
        out = {"loo_residual": res.round(4).tolist()}
        candidates = np.flatnonzero((res > tolerance) & (w > MIN_WEIGHT * 1.01))
        if not len(candidates):
            break
        excess = res[candidates] / tolerance[candidates]
        worst = candidates[np.argmax(excess * (1.5 - np.minimum(w[candidates], 1.0)))]
        if res[worst] > GROSS_OUTLIER * tolerance[worst] and (w > 0).sum() > 4:
            w[worst] = 0.0
        else:
            w[worst] = max(MIN_WEIGHT, w[worst] * (tolerance[worst] / res[worst]) ** 2)
    return w, out


def align_and_prune(model, scene: Scene, landmarks_3d: np.ndarray, threshold: float = 0.2,
                    weights: np.ndarray | None = None) -> AlignResult:
    """Similarity from SfM landmarks (weighted) to the average anchors; drop points farther than `threshold`
    (model units) from the model's mean surface (the method's rule with 0.2; the fit-driven pruning starts
    from a looser threshold and prunes again from the fitted surface)."""
    if np.linalg.matrix_rank(landmarks_3d - landmarks_3d.mean(0), tol=1e-9) < 2:
        raise UserError("the 3D landmarks are degenerate (collinear); check the landmark file")
    S = umeyama(landmarks_3d, model.average_anchors, weights=weights)
    pts = S.apply(scene.points)
    dist = mean_surface_distance(model, pts)
    keep = dist <= threshold
    if keep.sum() < 100:
        raise UserError(f"only {int(keep.sum())} points lie within {threshold} model units of the mean shape after "
                        f"alignment: the landmarks are probably in the wrong order or on the wrong frame")
    counts = {"input_points": int(len(pts)), "kept_points": int(keep.sum()),
              "pruned_points": int((~keep).sum()), "pruning_dist_threshold": threshold}
    return AlignResult(landmarks_3d, [], S, pts[keep], scene.colors[keep], S.apply(landmarks_3d), counts,
                       {"aligned_all": (pts, scene.colors)})
