"""The anterior torso as a radius map: rays from a vertical axis inside the body, outwards at angle theta (0 =
forward, + towards the patient's left) and height y, hit the skin at radius r(theta, y) (the outermost hit).

In these coordinates the breast is where the skin stands out from the chest wall, and the volume between two
surfaces r1 > r0 is exactly the sum of (r1^2 - r0^2) / 2 dtheta dy, which holds for the lateral breast wrapping
round the side as well as for the front. A ray that leaves the skin and enters it again (under a breast that hangs
over its fold) records the air between, which is not tissue."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from .frame import BodyFrame

THETA_MAX_DEG = 150.0
THETA_STEP_DEG = 1.0
Y_STEP_MM = 2.0
MAX_GAPS = 2


@dataclass
class RadiusMap:
    frame: BodyFrame
    axis_z: float                 # the axis: x = 0, z = axis_z (body frame)
    theta: np.ndarray             # [T] radians
    y: np.ndarray                 # [Y] mm, body frame
    r: np.ndarray                 # [Y, T] mm, NaN where a ray hits nothing
    gaps: np.ndarray | None = None   # [Y, T, G, 2] air along the ray inside r (start, end; NaN: none), e.g.
                                     # under a breast that hangs over its fold

    @property
    def dtheta(self) -> float:
        return float(self.theta[1] - self.theta[0])

    @property
    def dy(self) -> float:
        return float(self.y[1] - self.y[0])

    def body_points(self, theta, y, r) -> np.ndarray:
        theta, y, r = np.broadcast_arrays(np.asarray(theta, float), np.asarray(y, float), np.asarray(r, float))
        return np.stack([r * np.sin(theta), y, self.axis_z + r * np.cos(theta)], axis=-1)

    def cell_points(self, r: np.ndarray | None = None) -> np.ndarray:
        """[Y, T, 3] body-frame points of every cell at radius `r` (default: the skin)."""
        T, Y = np.meshgrid(self.theta, self.y)
        return self.body_points(T, Y, self.r if r is None else r)

    def polar(self, body_pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(theta, y, r) of body-frame points."""
        p = np.asarray(body_pts, float)
        dz = p[..., 2] - self.axis_z
        return np.arctan2(p[..., 0], dz), p[..., 1], np.hypot(p[..., 0], dz)

    def index(self, theta, y) -> tuple[np.ndarray, np.ndarray]:
        """Nearest cell (row, column) of angles and heights."""
        col = np.clip(np.rint((np.asarray(theta) - self.theta[0]) / self.dtheta), 0, len(self.theta) - 1)
        row = np.clip(np.rint((np.asarray(y) - self.y[0]) / self.dy), 0, len(self.y) - 1)
        return row.astype(int), col.astype(int)

    def cell_volumes(self, inner: np.ndarray) -> np.ndarray:
        """[Y, T] tissue volume (mm^3) of each cell beyond the radius `inner`: the skin's radius minus the air
        gaps the ray crossed beyond `inner`."""
        w = np.nan_to_num(inner, nan=np.inf)
        v = np.clip(np.nan_to_num(self.r ** 2 - w ** 2, nan=0.0, posinf=0.0, neginf=0.0), 0, None) / 2.0
        if self.gaps is not None and self.gaps.size:
            a, b = self.gaps[..., 0], self.gaps[..., 1]
            ww = w[..., None]
            with np.errstate(invalid="ignore"):
                air = (np.maximum(b, ww) ** 2 - np.maximum(a, ww) ** 2) / 2.0
            v = v - np.nansum(np.where(np.isfinite(air), air, 0.0), axis=-1)
        return np.clip(v, 0, None) * self.dtheta * self.dy

    def volume_ml(self, inner: np.ndarray, mask: np.ndarray) -> float:
        """Tissue volume beyond the radius map `inner` inside `mask`."""
        return float(np.where(mask, self.cell_volumes(inner), 0.0).sum() / 1000.0)


def radius_map(mesh_body: trimesh.Trimesh, frame: BodyFrame, axis_z: float, y_lo: float, y_hi: float,
               theta_step_deg: float = THETA_STEP_DEG, y_step: float = Y_STEP_MM,
               grid: tuple[np.ndarray, np.ndarray] | None = None) -> RadiusMap:
    """Cast the rays against a mesh given in the body frame; `grid` (theta, y) gives the rays' angles and heights
    instead (then y_lo, y_hi and the steps are not used)."""
    if grid is None:
        theta = np.radians(np.arange(-THETA_MAX_DEG, THETA_MAX_DEG + 1e-9, theta_step_deg))
        y = np.arange(y_lo, y_hi + 1e-9, y_step)
    else:
        theta, y = (np.asarray(a, float) for a in grid)
    T, Y = np.meshgrid(theta, y)
    origins = np.stack([np.zeros(T.size), Y.ravel(), np.full(T.size, axis_z)], axis=1)
    dirs = np.stack([np.sin(T.ravel()), np.zeros(T.size), np.cos(T.ravel())], axis=1)
    r = np.full(T.size, np.nan)
    gaps = np.full((T.size, MAX_GAPS, 2), np.nan)
    locs, ray_idx, _ = mesh_body.ray.intersects_location(origins, dirs, multiple_hits=True)
    if len(locs):
        dist = np.einsum("ij,ij->i", locs - origins[ray_idx], dirs[ray_idx])
        keep = dist > 0
        ray_idx, dist = ray_idx[keep], dist[keep]
        np.fmax.at(r, ray_idx, dist)
        order = np.lexsort((dist, ray_idx))
        ray_idx, dist = ray_idx[order], dist[order]
        dup = np.r_[False, (ray_idx[1:] == ray_idx[:-1]) & (np.diff(dist) < 1e-6)]   # an edge hit twice
        ray_idx, dist = ray_idx[~dup], dist[~dup]
        start = np.searchsorted(ray_idx, ray_idx, side="left")
        k = np.arange(len(ray_idx)) - start                       # hit number along its ray: 0, 1, 2, ...
        # inside the body from the axis to hit 0, outside to hit 1, inside to hit 2, ...: gaps (hit 2g, hit 2g+1)
        for g in range(MAX_GAPS):
            a = (k == 2 * g) & np.r_[ray_idx[1:] == ray_idx[:-1], False] & (np.r_[k[1:], -1] == 2 * g + 1)
            gaps[ray_idx[a], g, 0] = dist[a]
            gaps[ray_idx[a], g, 1] = np.r_[dist[1:], np.nan][a]
    return RadiusMap(frame, float(axis_z), theta, y, r.reshape(T.shape), gaps.reshape(T.shape + (MAX_GAPS, 2)))


def grid_faces(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vertex index per cell, -1 outside; triangles of the quads whose four cells are all in `mask`)."""
    idx = -np.ones(mask.shape, int)
    idx[mask] = np.arange(mask.sum())
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    quad = (a >= 0) & (b >= 0) & (c >= 0) & (d >= 0)
    return idx, np.concatenate([np.stack([a[quad], c[quad], b[quad]], 1), np.stack([b[quad], c[quad], d[quad]], 1)])
