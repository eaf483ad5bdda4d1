"""How sure a landmark found without clicks is, one rule for scans and videos: a fitted anchor far from every input
point lies where the model filled in, so it is a guess; the reasons to let a person confirm go with the points."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .landmarks import LANDMARK_NAMES

SUPPORT_MM = 10.0                  # a landmark this far from any input point: low confidence
CONFIDENT = 0.5                    # below this a landmark is flagged for the user to check
AMBIGUOUS_CONFIDENCE = 0.3         # every landmark's cap when another orientation of the torso fits almost as well


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
            "found_by": ["the landmark-free fit's anchor"] * len(conf), "unsure": unsure, "confident": not unsure}


def mark_confidence(node, confidence) -> None:
    """On a markups point list of found landmarks: each point's description holds its confidence, and points below
    CONFIDENT are left unselected (drawn in another colour) for the user to check first."""
    for i, c in enumerate(confidence):
        node.SetNthControlPointDescription(i, f"found automatically, confidence {c:.2f}")
        node.SetNthControlPointSelected(i, bool(c >= CONFIDENT))
