"""Landmarks checked against the data before any fitting, so a wrong file never becomes a plausible-looking number:
near the cloud, in its units, with the anatomy's order (nipples below the coracoids and above the navel) and
handedness (left on the patient's left, seen from the front)."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .errors import UserError
from .landmarks import LANDMARK_NAMES

SN, NAVEL, L_NIPPLE, R_NIPPLE, L_CORACOID, R_CORACOID = range(6)
NEAR_FRACTION = 0.15        # a landmark farther from every point than this x the body's size is not on it
BEHIND_FRACTION = 0.1       # nipples this far (x notch-navel) behind the chest around them: sides swapped


def check_landmarks(landmarks: np.ndarray, points: np.ndarray, where: str, trusted=None, viewpoint=None) -> None:
    """A user error naming what is wrong, or nothing. `points`: the cloud (or SfM points) the landmarks are on;
    `trusted`: landmarks to judge (a video landmark down-weighted as doubtful is left to the robust fit);
    `viewpoint`: where the camera was (video: the mean camera centre), which tells the front for certain.

    Swapped sides are judged from the front: with a viewpoint, the nipples' left-to-right direction must turn the
    right way towards the camera; without one (a scan), only when the nipples lie clearly behind the chest around
    them (a full torso with its sides swapped); a front-only scan with swapped sides is left to the after-fit
    self-check, whose residuals then fail loudly."""
    lm = np.asarray(landmarks, float)
    pts = np.asarray(points, float)
    ok = np.ones(6, bool) if trusted is None else np.asarray(trusted, bool)
    spread = float(np.linalg.norm(lm[SN] - lm[NAVEL]))
    size = float(np.linalg.norm(np.percentile(pts, 95, axis=0) - np.percentile(pts, 5, axis=0)))
    if spread > 0 and size > 0 and not 0.05 < spread / size < 20:
        raise UserError(f"{where}: the landmarks span {spread:.4g} units (sternal notch to navel) but the cloud "
                        f"{size:.4g}: different units (mm vs m?) or landmarks of another scan")
    d, _ = cKDTree(pts).query(lm)
    far = np.flatnonzero((d > NEAR_FRACTION * max(spread, 1e-12)) & ok)
    if len(far):
        names = ", ".join(f"{LANDMARK_NAMES[i]} ({d[i]:.4g} units away)" for i in far)
        raise UserError(f"{where}: landmarks far from the cloud: {names}; are they of this scan, in its frame?")
    up = lm[SN] - lm[NAVEL]
    up /= np.linalg.norm(up)
    height = lambda i: float((lm[i] - lm[NAVEL]) @ up)        # noqa: E731
    coracoids = [i for i in (L_CORACOID, R_CORACOID) if ok[i]]
    for i in (L_NIPPLE, R_NIPPLE):
        top = max(height(c) for c in coracoids) if coracoids else np.inf
        if not height(NAVEL) < height(i) < top:
            raise UserError(f"{where}: the {LANDMARK_NAMES[i]} is not between the navel and the coracoids; the "
                            f"landmarks are in the wrong order (expected: {', '.join(LANDMARK_NAMES)})")
    nipples = lm[L_NIPPLE] - lm[R_NIPPLE]
    nipples -= (nipples @ up) * up
    if ok[L_CORACOID] and ok[R_CORACOID]:
        across = lm[L_CORACOID] - lm[R_CORACOID]
        if nipples @ (across - (across @ up) * up) <= 0:
            raise UserError(f"{where}: the left and right nipple landmarks are swapped (the left nipple lies on the "
                            f"side of the right coracoid)")
    forward = np.cross(nipples / max(np.linalg.norm(nipples), 1e-12), up)
    if viewpoint is not None:
        behind = (np.asarray(viewpoint, float) - lm.mean(0)) @ forward < 0
    else:
        near = pts[np.linalg.norm(pts - (lm[SN] + lm[NAVEL]) / 2, axis=1) < 0.9 * spread]
        behind = len(near) >= 50 and \
            (lm[[L_NIPPLE, R_NIPPLE]].mean(0) - near.mean(0)) @ forward < -BEHIND_FRACTION * spread
    if behind:
        raise UserError(f"{where}: left and right landmarks are swapped (left ones on the patient's right, seen "
                        f"from the front); left means the patient's left")
