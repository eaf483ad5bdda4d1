"""The model-based chest wall: a linear model that predicts the chest wall from the skin, learned from torsos whose
chest wall is known (the generator's torso without its breasts, and Anny bodies with cup size 0). A boundary-based
wall only knows the footprint's outline; this one knows from the whole torso's skin how the chest curves under the
breasts and how far the breasts reach.

Skin and walls are radius maps (cylinder.py) round the axis a front-only scan gets (`AXIS_DEPTH` x the nipple
distance behind the sternal notch), on a grid of angle x height, the height in units of the notch-to-navel distance
and the radii in units of the nipple distance, so bodies of any size share one grid. The skin's code on its
principal components is solved from the cells the surface covers (a front-only scan leaves the sides empty), and a
ridge regression maps it to the code of the wall's principal components. `train` builds the model
(scripts/train_chest_wall.py); `PredictedWall` gives the wall on the grid of one radius map."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from ..errors import UserError
from ..options import CHEST_WALL_MODEL_NAME
from .cylinder import RadiusMap, grid_faces, radius_map
from .frame import L_NIPPLE, NAVEL, R_NIPPLE

AXIS_DEPTH = 0.45                     # the radius maps' axis: this x the nipple distance behind the notch
S_GRID = np.linspace(-1.05, 0.25, 66)  # height / notch-to-navel distance (0: the notch, -1: the navel)
THETA_GRID_DEG = np.arange(-120.0, 120.0 + 1e-9, 2.0)
MODES = 800                           # skin components kept (bench: 150 -> 7.1 %, 500 -> 4.9 %, 800 -> 4.2 % volume
                                      # MAE on held-out exact surfaces, with 1,672 training torsos)
WALL_MODES = 300                      # the wall's components the regression predicts (99.7 % of its variance)
CODE_MODES = 10                       # typicality: the body's broad shape, its code on this many leading components
MISFIT_MODES = 150                    # and the skin this many cannot follow (all 800 follow nearly any skin: the
                                      # tests' cylinder torso read code z 1.5, misfit 4.8 mm on all; 2.1 on 10)
RIDGE = 1e-3                          # regression penalty (x the codes' training variance)
FRONT_DEG = 90.0                      # the skin's code is read within this angle of the front: the arms and cut
                                      # edges at the sides blur it (an arm stump moved a volume 120 ml). Volume MAE,
                                      # whole skin / 105 / 90 degrees: 128 held-out validation breasts (exact surfaces)
                                      # 7.2 / 6.8 / 6.0 %, bench (a) 7.7 / 7.0 / 6.1 %, (b) scan fits 6.8 / 6.6 /
                                      # 7.8 %, (c) video results 12.5 / 13.1 / 12.5 % (2026-12-08)
PRIOR = 1e-4                          # the skin's code: squared misfit (n2n units) against its training spread
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


def train(skins: list[np.ndarray], walls: list[np.ndarray], n2n_mm: list[float], modes: int = MODES,
          ridge: float = RIDGE, wall_modes: int = WALL_MODES) -> dict:
    """Skin and wall maps on the model grid ([S, T] each, mm, NaN where the ray missed) with each body's nipple
    distance -> the skin's mean and components, the wall's mean and components, and the ridge regression from
    skin codes to wall codes."""
    k = np.asarray(n2n_mm, float)[:, None, None]
    S, W = np.stack(skins) / k, np.stack(walls) / k
    ok = (np.isfinite(S).mean(0) > 0.5) & (np.isfinite(W).mean(0) > 0.5)      # cells most bodies have
    mean_skin, mean_wall = np.nanmean(S[:, ok], 0), np.nanmean(W[:, ok], 0)
    X = np.where(np.isfinite(S[:, ok]), S[:, ok], mean_skin) - mean_skin
    Y = np.where(np.isfinite(W[:, ok]), W[:, ok], mean_wall) - mean_wall
    _, sv, vt = np.linalg.svd(X, full_matrices=False)
    wt = np.linalg.svd(Y, full_matrices=False)[2][:min(wall_modes, len(Y) - 1)]
    modes = min(modes, len(X) - 1)
    Z = X @ vt[:modes].T
    sd = Z.std(0)
    B = np.linalg.solve(Z.T @ Z + ridge * len(Z) * np.diag(sd ** 2), Z.T @ (Y @ wt.T))

    def on_grid(v):
        out = np.full(ok.shape, np.nan)
        out[ok] = v
        return out
    return {"mean_skin": on_grid(mean_skin), "mean_wall": on_grid(mean_wall),
            "skin_components": np.stack([on_grid(c) for c in vt[:modes]]),
            "wall_components": np.stack([on_grid(c) for c in wt]), "wall_regression": B, "sd": sd,
            "s_grid": S_GRID, "theta_deg": THETA_GRID_DEG, "count": len(X),
            "explained": float((sv[:modes] ** 2).sum() / (sv ** 2).sum())}


def save(model: dict, path: Path) -> None:
    """Components in float16 (their precision is far below the model's error; half the file)."""
    from ..fileio import atomic_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{k: np.asarray(v, np.float16 if k.endswith("components") else
                                                    np.float32 if np.ndim(v) > 1 else None)
                                      for k, v in model.items()})


@lru_cache(maxsize=2)
def load(path: str | None = None) -> dict:
    p = Path(path) if path else MODEL_FILE
    if not p.exists():
        raise UserError(f"chest-wall model {p} is missing; build it with scripts/train_chest_wall.py or use "
                        f"--chest_wall footprint_plane")
    with np.load(p) as z:
        m = {k: z[k].astype(np.float64) if z[k].dtype == np.float16 else z[k] for k in z.files}
    if "wall_components" not in m:               # a model from before 2026-12-07: the regression straight to the grid
        m["wall_components"], m["wall_regression"] = m["wall_regression"], np.eye(len(m["sd"]))
    return m


class PredictedWall:
    """The model's wall on the grid of one radius map, predicted from the body's skin. `fit(r, weights)` -> wall
    [Y, T] has chest_wall's interface (the weights are ignored: the wall comes from the whole skin), so the
    footprints are found unchanged. The skin is read on the model's own grid and axis, the predicted wall is made
    a mesh and read back along the radius map's rays (whatever its axis)."""
    from_skin = True

    def __init__(self, rm: RadiusMap, body: trimesh.Trimesh, landmarks_body: np.ndarray, model: dict | None = None,
                 observed: np.ndarray | None = None):
        self.m = model or load()
        self.rm, self.body = rm, body
        self.observed = None if observed is None else np.asarray(observed, bool)
        self.nn = float(-landmarks_body[NAVEL, 1])
        self.n2n = float(np.linalg.norm(landmarks_body[L_NIPPLE] - landmarks_body[R_NIPPLE]))
        self.z = np.zeros(len(self.m["sd"]))
        self._broad = self.z[:CODE_MODES]
        self.misfit_mm = float("nan")
        self._skin = None

    def skin(self) -> RadiusMap:
        """The body's skin on the model's grid and axis (mm), within FRONT_DEG of the front; cast once (`auto` reads
        it before the wall is fitted). With `observed` (per vertex of `body`), skin the input did not see is left out
        (NaN), as a front-only surface leaves its sides out."""
        if self._skin is None:
            grid = (np.radians(self.m["theta_deg"]), self.m["s_grid"] * self.nn)
            skin = radius_map(self.body, self.rm.frame, axis_depth(self.n2n), 0.0, 0.0, grid=grid)
            skin.r = np.where(np.abs(skin.theta) <= np.radians(FRONT_DEG), skin.r, np.nan)
            if self.observed is not None and not self.observed.all():
                cells = skin.cell_points().reshape(-1, 3)
                hit = np.isfinite(cells).all(axis=1)
                seen = np.zeros(len(cells), bool)
                seen[hit] = self.observed[cKDTree(self.body.vertices).query(cells[hit])[1]]
                skin.r = np.where(seen.reshape(skin.r.shape), skin.r, np.nan)
            self._skin = skin
        return self._skin

    def predict(self, skin: np.ndarray) -> np.ndarray:
        """Wall radii (mm) on the model's grid from skin radii (mm) on it (NaN: not covered)."""
        m = self.m
        ok = np.isfinite(m["mean_skin"])
        s = skin[ok] / self.n2n
        seen = np.isfinite(s)
        if seen.sum() < 0.2 * ok.sum():
            raise UserError("the surface covers too little of the chest for the chest-wall model")
        A = m["skin_components"][:, ok][:, seen].T
        d = s[seen] - m["mean_skin"][ok][seen]
        self.z = self._code(A, d, m["sd"])
        self._broad = self._code(A[:, :CODE_MODES], d, m["sd"][:CODE_MODES])
        lead = self._code(A[:, :MISFIT_MODES], d, m["sd"][:MISFIT_MODES])
        self.misfit_mm = float(np.sqrt(np.mean((A[:, :MISFIT_MODES] @ lead - d) ** 2)) * self.n2n)
        wall = np.tensordot(self.z @ m["wall_regression"], np.nan_to_num(m["wall_components"]), axes=1)
        return (m["mean_wall"] + wall) * self.n2n

    @staticmethod
    def _code(A: np.ndarray, d: np.ndarray, sd: np.ndarray) -> np.ndarray:
        return np.linalg.solve(A.T @ A + PRIOR * np.diag(1.0 / sd ** 2), A.T @ d)

    def fit(self, r: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
        grid = self.skin()
        wall = self.predict(grid.r)
        mask = np.isfinite(wall)
        _, faces = grid_faces(mask)
        mesh = trimesh.Trimesh(grid.cell_points(wall)[mask], faces, process=False)
        rm = self.rm
        return radius_map(mesh, rm.frame, rm.axis_z, 0.0, 0.0, grid=(rm.theta, rm.y)).r

    def code_z(self) -> float:
        """RMS of the skin's code on the leading CODE_MODES components, in training spreads: far above 1, a body
        shaped unlike any trained on."""
        return float(np.sqrt(np.mean((self._broad / self.m["sd"][:len(self._broad)]) ** 2)))

    def typicality(self) -> dict:
        """How far the skin is from the torsos the model was trained on: its code's RMS in training spreads
        (`code_z`, CODE_MODES components) and the RMS of the skin its leading MISFIT_MODES components cannot follow
        (`skin_misfit_mm`)."""
        return {"code_z": round(self.code_z(), 2), "skin_misfit_mm": round(self.misfit_mm, 2)}
