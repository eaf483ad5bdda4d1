"""Landmark-free alignment of a scan to the model: where the six clicks are missing, the model's own mean surface
finds the torso.

The scan's principal axes are matched to the mean surface's in each of the 24 proper axis assignments (a scan may
come in any orientation), the scale from their spreads; each start is refined by trimmed similarity ICP of the mean
surface onto the scan (every mean-surface point has a counterpart on a torso scan, while the scan may carry more:
arms, belly, background, so the mean surface is the side that is matched). The start with the smallest trimmed
distance wins, polished by ICP from starts turned 25 degrees about each axis; how much smaller it is than the best
start of another orientation says how sure the choice is."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from .alignment import Similarity, umeyama
from .errors import UserError

SCAN_SAMPLE = 4000            # scan points used for the alignment
MODEL_SAMPLE = 1500           # mean-surface points matched onto them
KEEP = 0.85                   # trimmed ICP: the closest share of matches drives each step
ICP_ITERATIONS = 40
AMBIGUOUS_RATIO = 1.3         # another orientation's cost within this factor of the best: the pose is uncertain
                              # (bench/auto_landmarks.py: correct poses 1.45-2.3, the one wrong pose 1.2)
POLISH_DEG = 25.0             # the best pose is polished by ICP from starts turned this far ...
POLISH_ROUNDS = 3             # ... for at most this many rounds
MAX_COST = 0.045              # model units (about 11 mm): torsos give 6-8 mm, a box 16, a sphere 26, a plane 33


@dataclass
class AutoAlignment:
    to_model: Similarity                  # scan frame -> model space
    cost: float                           # trimmed mean distance, mean surface to scan (model units)
    runner_up_cost: float                 # the best start of a different orientation
    costs: list = field(default_factory=list)
    candidates: list = field(default_factory=list)    # [(cost, Similarity)] one per distinct orientation, best first

    @property
    def ambiguous(self) -> bool:
        """Another orientation matches the mean torso almost as well."""
        return self.runner_up_cost < AMBIGUOUS_RATIO * self.cost

    def report(self, mm_per_unit: float) -> dict:
        return {"method": "mean-surface ICP from 24 orientations", "cost_mm": round(self.cost * mm_per_unit, 2),
                "runner_up_cost_mm": round(self.runner_up_cost * mm_per_unit, 2), "ambiguous": self.ambiguous}


def proper_axis_rotations() -> np.ndarray:
    """The 24 rotations that map coordinate axes onto coordinate axes (signed permutations with det +1)."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            if np.linalg.det(m) > 0:
                out.append(m)
    return np.array(out)


def _frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre, principal axes (columns, right-handed) and RMS radius."""
    c = points.mean(0)
    axes = np.linalg.svd(points - c, full_matrices=False)[2].T
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1
    return c, axes, float(np.sqrt(((points - c) ** 2).sum(1).mean()))


def similarity_icp(scan: np.ndarray, model_pts: np.ndarray, start: Similarity) -> tuple[Similarity, float]:
    """Trimmed similarity ICP moving the scan onto the model's points; (scan -> model, trimmed mean distance)."""
    t = start
    cost = np.inf
    for _ in range(ICP_ITERATIONS):
        moved = t.apply(scan)
        d, idx = cKDTree(moved).query(model_pts)
        keep = d <= np.quantile(d, KEEP)
        step = umeyama(moved[idx[keep]], model_pts[keep])
        t = Similarity(step.scale * t.scale, step.rotation @ t.rotation,
                       step.scale * step.rotation @ t.translation + step.translation)
        new = float(d[keep].mean())
        if abs(cost - new) < 1e-5:
            cost = new
            break
        cost = new
    return t, cost


def polish_pose(scan: np.ndarray, model_pts: np.ndarray, start: Similarity, cost: float) -> tuple[Similarity, float]:
    """ICP again from the pose turned by +-POLISH_DEG about each model axis (round the scan's centre), as long as
    one of them lands lower: ICP from an axis start can stop in a pose tilted 20-25 degrees from the torso's
    (bench/auto_landmarks.py, generator 1: 9.8 mm at 23 degrees, 7.9 mm at 2 degrees after polishing)."""
    from scipy.spatial.transform import Rotation
    best, best_cost = start, cost
    centre = scan.mean(0)
    for _ in range(POLISH_ROUNDS):
        improved = False
        target = best.apply(centre[None])[0]
        for axis in "xyz":
            for deg in (-POLISH_DEG, POLISH_DEG):
                rot = Rotation.from_euler(axis, deg, degrees=True).as_matrix() @ best.rotation
                t, c = similarity_icp(scan, model_pts, Similarity(best.scale, rot, target - best.scale * rot @ centre))
                if c < best_cost - 1e-5:
                    best, best_cost, improved = t, c, True
        if not improved:
            break
    return best, best_cost


def auto_align(points: np.ndarray, mean_points: np.ndarray, seed: int = 0) -> AutoAlignment:
    """Scan points (any frame, units, orientation) -> the similarity onto the model's mean surface points."""
    pts = np.asarray(points, float)
    if len(pts) < 100:
        raise UserError(f"need at least 100 points to find the torso without landmarks, got {len(pts)}")
    rng = np.random.default_rng(seed)
    scan = pts[rng.choice(len(pts), min(SCAN_SAMPLE, len(pts)), replace=False)]
    model_pts = np.asarray(mean_points, float)
    model_pts = model_pts[rng.choice(len(model_pts), min(MODEL_SAMPLE, len(model_pts)), replace=False)]
    cs, es, rs = _frame(scan)
    cm, em, rm = _frame(model_pts)
    results = []
    for k, perm in enumerate(proper_axis_rotations()):
        rot = em @ perm @ es.T
        s = rm / rs
        start = Similarity(s, rot, cm - s * rot @ cs)
        t, cost = similarity_icp(scan, model_pts, start)
        results.append((cost, k, t))
    results.sort(key=lambda r: r[0])
    polished, cost = polish_pose(scan, model_pts, results[0][2], results[0][0])
    results.insert(0, (cost, -1, polished))
    distinct = []                          # starts converge: keep the best of each orientation (30 degrees apart)
    for c, _, t in results:
        if all(rotation_angle(t.rotation, u.rotation) > 30 for _, u in distinct):
            distinct.append((c, t))
    best_cost, best = distinct[0]
    return AutoAlignment(best, best_cost, distinct[1][0] if len(distinct) > 1 else np.inf,
                         [round(c, 5) for c, _, _ in results], distinct)


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a @ b.T) - 1) / 2, -1, 1))))
