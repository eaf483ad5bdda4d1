"""How sure a landmark found without clicks is, one rule for scans and videos: a fitted anchor far from every input
point lies where the model filled in, so it is a guess; the reasons to let a person confirm go with the points."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .landmarks import LANDMARK_NAMES

SUPPORT_MM = 10.0                  # a landmark this far from any input point: low confidence
CONFIDENT = 0.5                    # below this a landmark is flagged for the user to check
AMBIGUOUS_CONFIDENCE = 0.3         # every landmark's cap when another orientation of the torso fits almost as well
FOUND_BY = ("the landmark-free fit's anchor, slid onto the body's plane of symmetry",) * 2 + \
    ("the landmark-free fit's anchor",) * 2 + \
    ("the landmark-free fit's anchors, made mirror images across the body's plane of symmetry",) * 2


def support_confidence(gap_mm) -> np.ndarray:
    """Confidence 1 on the input's points, falling to 0.37 at SUPPORT_MM away."""
    return np.exp(-(np.asarray(gap_mm, float) / SUPPORT_MM) ** 2)


def scan_landmarks_found(landmarks: np.ndarray, points: np.ndarray, mm_per_unit: float, ambiguous: bool) -> dict:
    """The report of the landmarks a landmark-free scan fit found (`landmarks`, the fitted anchors in the input's
    frame, next to the input `points`): a confidence per landmark and the reasons to check them."""
    gap = cKDTree(points).query(landmarks)[0] * mm_per_unit
    conf = support_confidence(gap)
    unsure = ["another orientation of the torso fits almost as well"] if ambiguous else []
    unsure += [f"{LANDMARK_NAMES[i]}: confidence {conf[i]:.2f} ({gap[i]:.0f} mm from the nearest input point)"
               for i in np.flatnonzero(conf < CONFIDENT)]
    if ambiguous:
        conf = np.minimum(conf, AMBIGUOUS_CONFIDENCE)
    return {"names": list(LANDMARK_NAMES), "confidence": conf.round(3).tolist(),
            "found_by": list(FOUND_BY), "unsure": unsure, "confident": not unsure}


def mark_confidence(node, confidence) -> None:
    """On a markups point list of found landmarks: each point's description holds its confidence, and points below
    CONFIDENT are left unselected (drawn in another colour) for the user to check first."""
    for i, c in enumerate(confidence):
        node.SetNthControlPointDescription(i, f"found automatically, confidence {c:.2f}")
        node.SetNthControlPointSelected(i, bool(c >= CONFIDENT))


MIDLINE_KEYS = (0, 1)              # sternal notch, belly button: on the body's plane of symmetry
PAIRS = ((4, 5),)                  # left/right coracoids: mirror images across it
SYMMETRY_SAMPLE = 4000
SYMMETRY_CLIP = 0.03               # a mirrored point farther than this x the notch-navel distance counts this much


def _reflect(points: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    return points - 2.0 * (points @ normal - offset)[..., None] * normal


def symmetry_plane(mesh, landmarks: np.ndarray, seen: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """The torso's plane of symmetry (unit normal towards the patient's left, offset, mean mirror gap in the
    mesh's units): the plane that maps the surface's `seen` vertices (default all; the observed ones, where the
    model did not fill in) best onto the surface, started between the left and right landmarks (any frame)."""
    from scipy.optimize import minimize
    lm = np.asarray(landmarks, float)
    n0 = (lm[2] + lm[4]) - (lm[3] + lm[5])
    n0 /= np.linalg.norm(n0)
    size = float(np.linalg.norm(lm[0] - lm[1]))
    a = np.cross(n0, lm[0] - lm[1])
    a /= np.linalg.norm(a)
    b = np.cross(n0, a)
    verts = np.asarray(mesh.vertices, float)
    pool = verts if seen is None or np.count_nonzero(seen) < 100 else verts[np.asarray(seen, bool)]
    sample = pool[np.random.default_rng(0).choice(len(pool), min(SYMMETRY_SAMPLE, len(pool)), replace=False)]
    tree = cKDTree(verts)
    d0 = float(lm.mean(0) @ n0)

    def plane(x):
        n = n0 + x[0] * a + x[1] * b
        return n / np.linalg.norm(n), d0 + x[2] * size

    def gap(x):
        n, d = plane(x)
        return float(np.minimum(tree.query(_reflect(sample, n, d))[0], SYMMETRY_CLIP * size).mean())

    best = minimize(gap, np.zeros(3), method="Nelder-Mead",
                    options={"xatol": 1e-4, "fatol": 1e-6 * size,
                             "initial_simplex": [[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.02]]})
    n, d = plane(best.x)
    return n, d, float(best.fun)


def symmetric_landmarks(mesh, landmarks: np.ndarray, seen: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Found landmarks made to respect the body's symmetry: the sternal notch and belly button slid onto the plane
    of symmetry, the coracoids made mirror images of each other (their mean), all on the surface; the nipples are
    left alone (breasts differ). Why: a landmark-free fit's anchors drift sideways with the torso's fill-in
    (bench/auto_landmarks_video.py: the sternal notch 15-45 px), while the surface's own symmetry is well seen."""
    import trimesh
    lm = np.asarray(landmarks, float).copy()
    n, d, gap = symmetry_plane(mesh, lm, seen)
    before = lm.copy()
    for i in MIDLINE_KEYS:
        p = lm[i]
        for _ in range(5):                      # onto the plane and the surface: where the two meet
            p = p - (p @ n - d) * n
            p = trimesh.proximity.closest_point(mesh, p[None])[0][0]
        lm[i] = p
    for left, right in PAIRS:
        mean = 0.5 * (lm[left] + _reflect(lm[right], n, d))
        on = trimesh.proximity.closest_point(mesh, np.stack([mean, _reflect(mean, n, d)]))[0]
        lm[left], lm[right] = on
    moved = np.linalg.norm(lm - before, axis=1)
    return lm, {"normal": n.round(4).tolist(), "offset": round(d, 3), "mirror_gap": round(gap, 3),
                "moved": moved.round(2).tolist()}
