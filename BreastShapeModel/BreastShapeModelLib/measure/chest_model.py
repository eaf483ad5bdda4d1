"""The model-based chest wall: a statistical model of chest walls (principal components of the generator's own
chest walls, which it knows for every torso) fitted to the skin where the skin is chest wall, then read behind
the breasts. A boundary-based wall only knows the footprint's outline; this one knows how chests curve under
breasts.

Walls are radius maps (cylinder.py) round the axis a front-only scan gets (`AXIS_DEPTH` x the nipple distance
behind the sternal notch), on a grid of angle x height, the height in units of the notch-to-navel distance, so
bodies of any size share one grid. `train` builds the model (scripts/train_chest_wall.py); `PcaWall` fits it
like the P-spline of chest_wall.py: iteratively, as the lower envelope of the skin."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from ..errors import UserError
from ..options import CHEST_WALL_MODEL_NAME
from .chest_wall import _WallModel
from .cylinder import RadiusMap

AXIS_DEPTH = 0.45                     # the radius maps' axis: this x the nipple distance behind the notch
S_GRID = np.linspace(-1.05, 0.25, 66)  # height / notch-to-navel distance (0: the notch, -1: the navel)
THETA_GRID_DEG = np.arange(-120.0, 120.0 + 1e-9, 2.0)
MODES = 60                            # principal components kept
PRIOR = 1.0                           # mm^2: the skin's spread about a wall, against the components' training spread
MODEL_FILE = Path(__file__).resolve().parents[2] / "Resources" / "Models" / CHEST_WALL_MODEL_NAME


def axis_depth(n2n_mm: float) -> float:
    return -AXIS_DEPTH * n2n_mm


def wall_radius(field, frame_rot: np.ndarray, origin: np.ndarray, axis_z: float, theta: np.ndarray, y: np.ndarray,
                r_max: float = 420.0, step: float = 2.0) -> np.ndarray:
    """[Y, T] radius of the outermost crossing of an implicit surface `field` (negative inside; points in its own
    frame) along the rays of a radius map whose body frame is (`frame_rot` rows, `origin`); NaN where none."""
    rs = np.arange(0.0, r_max, step)
    T, Y = np.meshgrid(theta, y)
    body = np.stack([np.sin(T)[..., None] * rs, np.broadcast_to(Y[..., None], T.shape + rs.shape),
                     axis_z + np.cos(T)[..., None] * rs], axis=-1)
    f = field(body @ frame_rot + origin)
    inside = f < 0
    last = np.where(inside.any(-1), inside.shape[-1] - 1 - np.argmax(inside[..., ::-1], axis=-1), -1)
    k = np.clip(last, 0, len(rs) - 2)
    f0 = np.take_along_axis(f, k[..., None], -1)[..., 0]
    f1 = np.take_along_axis(f, k[..., None] + 1, -1)[..., 0]
    r = rs[k] + step * np.clip(f0 / np.where(f0 - f1 == 0, -1e-9, f0 - f1), 0, 1)
    return np.where((last >= 0) & (last < len(rs) - 1), r, np.nan)


def train(walls: list[np.ndarray], modes: int = MODES) -> dict:
    """Walls on the model grid ([S, T] each, NaN where the ray missed) -> mean, components, their spread."""
    W = np.stack(walls)
    ok = np.isfinite(W).mean(0) > 0.9                         # cells nearly every body has
    X = W[:, ok]
    X = np.where(np.isfinite(X), X, np.nanmean(X, axis=0))
    mean = X.mean(0)
    _, sv, vt = np.linalg.svd(X - mean, full_matrices=False)
    sd = sv[:modes] / np.sqrt(max(len(X) - 1, 1))

    def on_grid(v):
        out = np.full(ok.shape, np.nan)
        out[ok] = v
        return out
    return {"mean": on_grid(mean), "components": np.stack([on_grid(c) for c in vt[:modes]]), "sd": sd,
            "s_grid": S_GRID, "theta_deg": THETA_GRID_DEG, "count": len(X),
            "explained": float((sv[:modes] ** 2).sum() / (sv ** 2).sum())}


@lru_cache(maxsize=2)
def load(path: str | None = None) -> dict:
    p = Path(path) if path else MODEL_FILE
    if not p.exists():
        raise UserError(f"chest-wall model {p} is missing; build it with scripts/train_chest_wall.py or use "
                        f"--chest_wall footprint_plane")
    with np.load(p) as z:
        return {k: z[k] for k in z.files}


class PcaWall:
    """The chest-wall model on the grid of one radius map: `fit(r, weights)` -> wall [Y, T], the same interface as
    chest_wall's P-spline, so the envelope iteration and the footprints work unchanged."""

    def __init__(self, rm: RadiusMap, notch_to_navel_mm: float, model: dict | None = None):
        m = model or load()
        T, Y = np.meshgrid(rm.theta, rm.y)
        q = np.stack([np.clip(Y / notch_to_navel_mm, m["s_grid"][0], m["s_grid"][-1]),
                      np.clip(np.degrees(T), m["theta_deg"][0], m["theta_deg"][-1])], -1)

        def on_grid(a):
            return RegularGridInterpolator((m["s_grid"], m["theta_deg"]), a, bounds_error=False)(q)
        self.mean = on_grid(m["mean"])
        self.components = np.stack([on_grid(c) for c in m["components"]])
        self.sd = np.asarray(m["sd"], float)
        self.known = np.isfinite(self.mean) & np.isfinite(self.components).all(0)
        self.coef = np.zeros(len(self.sd))
        self.spline = _WallModel(rm)

    def fit(self, r: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The model's wall closest to the weighted skin, plus a smooth P-spline of what the model leaves
        (arms, a chest flatter than any trained on): the model gives the curvature under the breast."""
        w = np.where(np.isfinite(r) & self.known, weights, 0.0)
        A = np.nan_to_num(self.components.reshape(len(self.sd), -1).T)
        b = np.nan_to_num((r - self.mean).ravel())
        lhs = A.T @ (A * w.ravel()[:, None]) + PRIOR * np.diag(1.0 / self.sd ** 2)
        self.coef = np.linalg.solve(lhs, A.T @ (w.ravel() * b))
        base = self.mean + np.tensordot(self.coef, np.nan_to_num(self.components), axes=1)
        rest = self.spline.fit(np.where(self.known, r - base, 0.0), w)
        return np.where(self.known, base + rest, np.nan)

    def code_z(self) -> float:
        """RMS of the fitted coefficients in training spreads: far above 1, a chest unlike any trained on."""
        return float(np.sqrt(np.mean((self.coef / self.sd) ** 2)))
