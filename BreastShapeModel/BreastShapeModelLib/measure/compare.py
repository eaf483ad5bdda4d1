"""Before/after: register two surfaces of one person on what breast surgery does not change (upper chest,
shoulders, abdomen: everything farther than `CHANGE_RADIUS` x the nipple distance from the nipples), then the
signed distance map on AFTER, the volume change per side against BEFORE's chest wall, and the change of every
distance. Two people (or two poses) do not register: that is said, instead of printing numbers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from ..errors import UserError
from .chest_wall import estimate_chest_wall
from .cylinder import radius_map
from .frame import L_CORACOID, L_NIPPLE, NAVEL, R_CORACOID, R_NIPPLE, SN, body_frame
from .measurements import Measurements, _axis_z, measure_surface

CHANGE_RADIUS = 0.6             # x nipple distance round each nipple: may change, not used to register
MAX_RESIDUAL_MM = 4.0           # median distance on the unchanged regions beyond this: not the same person/pose
ICP_ROUNDS = 30
TRIM = 0.9                      # pairs kept per round (closest fraction)


@dataclass
class Comparison:
    after_registered: trimesh.Trimesh      # AFTER in BEFORE's frame
    signed_distance: np.ndarray            # per AFTER vertex, mm: + outside BEFORE (gained), - inside (lost)
    residual_mm: float                     # median |distance| on the unchanged regions after registration
    residual_p95_mm: float
    volume_change_ml: dict                 # side -> after - before, against BEFORE's chest wall
    before: Measurements
    after: Measurements
    transform: np.ndarray                  # 4x4, AFTER -> BEFORE

    def to_json(self) -> dict:
        changes = {}
        for name, b in self.before.distances_mm.items():
            a = self.after.distances_mm.get(name)
            if a is not None:
                key = "surface" if b.get("surface") is not None and a.get("surface") is not None else "straight"
                changes[name] = round(a[key] - b[key], 2)
        vol = {s: {"before": self.before.breast_volume_ml[s]["value"], "after": self.after.breast_volume_ml[s]["value"]}
               for s in ("left", "right")}
        return {"units": "mm", "registration_residual_mm": round(self.residual_mm, 3),
                "registration_residual_p95_mm": round(self.residual_p95_mm, 3),
                "volume_change_ml": {k: round(v, 1) for k, v in self.volume_change_ml.items()},
                "volumes_measured_separately_ml": vol, "distance_changes_mm": changes,
                "signed_distance_mm": {"min": round(float(self.signed_distance.min()), 2),
                                       "max": round(float(self.signed_distance.max()), 2),
                                       "mean_abs": round(float(np.abs(self.signed_distance).mean()), 3)},
                "after_to_before": self.transform.round(6).tolist()}


def _kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rigid 4x4 taking `src` onto `dst` (least squares)."""
    cs, cd = src.mean(0), dst.mean(0)
    u, _, vt = np.linalg.svd((src - cs).T @ (dst - cd))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1, 1, d]) @ u.T
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, cd - r @ cs
    return m


def _apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ m[:3, :3].T + m[:3, 3]


def unchanged_mask(points: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    n2n = float(np.linalg.norm(landmarks[L_NIPPLE] - landmarks[R_NIPPLE]))
    far = np.ones(len(points), bool)
    for i in (L_NIPPLE, R_NIPPLE):
        far &= np.linalg.norm(points - landmarks[i], axis=1) > CHANGE_RADIUS * n2n
    return far


def compare_surfaces(before: trimesh.Trimesh, before_lms: np.ndarray, after: trimesh.Trimesh,
                     after_lms: np.ndarray | None) -> Comparison:
    """Register AFTER onto BEFORE, then the maps and the changes (both in mm)."""
    b_lms = np.asarray(before_lms, float)
    m = np.eye(4)
    if after_lms is not None:                    # start from the landmarks surgery does not move
        keep = [SN, NAVEL, L_CORACOID, R_CORACOID]
        m = _kabsch(np.asarray(after_lms, float)[keep], b_lms[keep])
    b_pts = before.sample(60000, return_index=False) if len(before.faces) else before.vertices
    b_tree = cKDTree(b_pts)
    ref = after.vertices
    for _ in range(ICP_ROUNDS):
        moved = _apply(m, ref)
        use = unchanged_mask(moved, b_lms)
        if use.sum() < 100:
            raise UserError("too little of the surfaces lies outside the breasts to register them (upper chest, "
                            "shoulders, abdomen are needed)")
        d, j = b_tree.query(moved[use])
        keep = d <= np.quantile(d, TRIM)
        step = _kabsch(moved[use][keep], b_pts[j[keep]])
        m = step @ m
        if np.abs(step[:3, 3]).max() < 1e-3 and np.abs(step[:3, :3] - np.eye(3)).max() < 1e-6:
            break
    after_reg = after.copy()
    after_reg.vertices = _apply(m, after.vertices)
    use = unchanged_mask(after_reg.vertices, b_lms)
    near, _ = b_tree.query(after_reg.vertices[use])            # (sampled surface: a slight over-estimate)
    residual = float(np.median(near)) if len(near) else float("inf")
    if residual > MAX_RESIDUAL_MM:
        raise UserError(f"the surfaces do not register: {residual:.1f} mm median distance on the regions breast "
                        f"surgery does not change (at most {MAX_RESIDUAL_MM:.0f} mm for one person); two different "
                        f"people, or a different pose or units? Not comparing")
    closest, dist, tri = trimesh.proximity.closest_point(before, after_reg.vertices)
    normals = before.face_normals[tri]
    signed = np.sign(np.einsum("ij,ij->i", after_reg.vertices - closest, normals)) * dist
    residual = float(np.median(np.abs(signed[use]))) if use.any() else float("inf")
    p95 = float(np.percentile(np.abs(signed[use]), 95)) if use.any() else float("inf")
    after_lms_reg = _apply(m, after_lms) if after_lms is not None else b_lms
    mb = measure_surface(before, b_lms, where="before")
    ma = measure_surface(after_reg, after_lms_reg, where="after")
    change = _volume_change(before, after_reg, b_lms)
    return Comparison(after_reg, signed, residual, p95, change, mb, ma, m)


def _volume_change(before: trimesh.Trimesh, after_reg: trimesh.Trimesh, b_lms: np.ndarray) -> dict:
    """Volume gained per side: both skins on BEFORE's radius map, inside the footprints of either visit."""
    frame = body_frame(b_lms)
    lmb = frame.to_body(b_lms)
    n2n = float(np.linalg.norm(lmb[L_NIPPLE] - lmb[R_NIPPLE]))
    maps = []
    for mesh in (before, after_reg):
        body = mesh.copy()
        body.vertices = frame.to_body(mesh.vertices)
        maps.append((body, radius_map(body, frame, _axis_z(maps[0][0] if maps else body, lmb, n2n),
                                      float(lmb[NAVEL, 1]) * 0.95, 30.0)))
    rb, ra = maps[0][1], maps[1][1]
    cb = estimate_chest_wall(rb, lmb[[L_NIPPLE, R_NIPPLE]], lmb[[L_CORACOID, R_CORACOID]])
    ca = estimate_chest_wall(ra, lmb[[L_NIPPLE, R_NIPPLE]], lmb[[L_CORACOID, R_CORACOID]])
    out = {}
    wall = np.where(np.isfinite(cb.wall), cb.wall, ca.wall)
    for side in ("left", "right"):
        region = cb.regions[side] | ca.regions[side]
        out[side] = ra.volume_ml(wall, region) - rb.volume_ml(wall, region)
    return out
