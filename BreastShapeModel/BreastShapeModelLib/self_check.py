"""Does the fitted surface explain the data? A check run after every fit, so a wrong surface is never quiet.

Measured in millimetres (the caller gives the output frame's mm per unit):
- coverage: of the input points within `NEAR_MM` of the surface, the fraction within `COVER_MM` (a missing
  breast leaves its points 10-60 mm away);
- each breast region (points within `BREAST_RADIUS_MM` of its nipple landmark): how many points, and the median
  and 95th percentile of their distances to the surface;
- each nipple landmark's distance to the surface (the triangulated or given nipple must lie on it);
- handedness: the left nipple on the patient's left of the right one in the model frame;
- plausibility: a code far outside the training codes (RMS z-score) that still leaves many points unexplained is
  the model bending into something that is not a torso (a plane with landmarks on it: code 3.1-4.1 SD, 95th
  percentile 17.5 mm; held-out torsos of both sources and the official mean's deformations: 1.0-2.7 SD, 95th
  percentile a few mm).
"""
from __future__ import annotations

import numpy as np

from .surface_distance import point_to_mesh_distance

NEAR_MM = 100.0
COVER_MM = 10.0
MIN_COVERAGE = 0.75
BREAST_RADIUS_MM = 90.0
MIN_BREAST_POINTS = 30
MAX_BREAST_P95_MM = 10.0
MAX_NIPPLE_GAP_MM = 12.0
MAX_CODE_SD = 2.8             # RMS z-score of the fitted code against the training codes ...
MAX_UNEXPLAINED_P95_MM = 8.0  # ... beyond which, with residuals this large, the input is probably not a torso


SELF_CHECK_FAILED = "SELF-CHECK FAILED, the surface may be wrong: "     # how every failed check is announced

def self_check(mesh, points: np.ndarray, landmarks: np.ndarray | None, mm_per_unit: float = 1.0,
               model_frame_x: np.ndarray | None = None, code_sd: float | None = None,
               residual_p95_mm: float | None = None) -> dict:
    """-> {"passed": bool, "problems": [...], "metrics": {...}} for a surface `mesh` fitted to `points`
    (both in one frame of `mm_per_unit` millimetres per unit). `model_frame_x`: the landmarks' x in the
    model frame (x = patient's left), for the handedness check; `code_sd`, `residual_p95_mm`: the fitted code's
    RMS z-score and the fit's residual 95th percentile, for the plausibility check."""
    pts = np.asarray(points, np.float64)
    d = point_to_mesh_distance(pts, mesh) * mm_per_unit
    near = d < NEAR_MM
    metrics = {"coverage": float((d[near] < COVER_MM).mean()) if near.any() else 0.0,
               "points_near_surface": int(near.sum()), "residual_median_mm": float(np.median(d[near])) if near.any() else None}
    problems = []
    if metrics["coverage"] < MIN_COVERAGE:
        problems.append(f"the surface explains only {100 * metrics['coverage']:.0f} % of the points near it "
                        f"(within {COVER_MM:.0f} mm; expected >= {100 * MIN_COVERAGE:.0f} %)")
    if landmarks is not None:
        lms = np.asarray(landmarks, np.float64)
        gaps = point_to_mesh_distance(lms[2:4], mesh) * mm_per_unit
        for side, idx, gap in (("left", 2, gaps[0]), ("right", 3, gaps[1])):
            region = (np.linalg.norm(pts - lms[idx], axis=1) * mm_per_unit < BREAST_RADIUS_MM)
            r = d[region]
            metrics[f"{side}_breast"] = {"points": int(region.sum()),
                                         "median_mm": float(np.median(r)) if len(r) else None,
                                         "p95_mm": float(np.percentile(r, 95)) if len(r) else None,
                                         "nipple_to_surface_mm": float(gap)}
            if len(r) < MIN_BREAST_POINTS:
                problems.append(f"the {side} breast was barely observed ({len(r)} points within "
                                f"{BREAST_RADIUS_MM:.0f} mm of its nipple)")
            elif np.percentile(r, 95) > MAX_BREAST_P95_MM:
                problems.append(f"the surface misses the {side} breast's points (95th percentile "
                                f"{np.percentile(r, 95):.1f} mm, expected <= {MAX_BREAST_P95_MM:.0f} mm)")
            if gap > MAX_NIPPLE_GAP_MM:
                problems.append(f"the {side} nipple landmark lies {gap:.1f} mm off the fitted surface "
                                f"(expected <= {MAX_NIPPLE_GAP_MM:.0f} mm)")
        if model_frame_x is not None and not model_frame_x[2] > model_frame_x[3]:
            problems.append("the left nipple landmark is not on the patient's left of the right one: are left and "
                            "right swapped?")
    if code_sd is not None:
        metrics["code_sd"] = round(float(code_sd), 3)
        if code_sd > MAX_CODE_SD and residual_p95_mm is not None and residual_p95_mm > MAX_UNEXPLAINED_P95_MM:
            problems.append(f"the fitted shape lies far from every torso the model learnt (code {code_sd:.1f} SD "
                            f"from the mean, expected <= {MAX_CODE_SD}) and still misses many points (95th "
                            f"percentile {residual_p95_mm:.0f} mm): is the input a torso?")
    return {"passed": not problems, "problems": problems, "metrics": metrics}
