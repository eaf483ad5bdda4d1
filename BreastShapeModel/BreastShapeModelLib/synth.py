"""Synthetic torsos: mesh the anatomy field, place the six landmarks on the surface, measure the ground truth.

`make_torso(params)` returns a watertight triangle mesh in millimetres (model orientation), the landmarks as
exact surface points, and the ground truth a surgeon would measure: per-side breast volume between the skin
and the generator's own chest wall, inframammary-fold curves, nipple distances. `write_torso` stores it in
the layout `preprocess` reads: `<name>.ply`, `landmarks/<name>.txt`, `<name>.json`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from skimage.measure import marching_cubes

from .anatomy import BACK_PLANE_Z, Torso, TorsoParams, sample_params
from .fileio import atomic_path, atomic_write_text
from .landmarks import LANDMARK_KEYS, Landmarks
from .mesh_io import write_mesh

MESH_SPACING_MM = 2.5
VOLUME_SPACING_MM = 2.0


@dataclass
class SynthTorso:
    mesh: trimesh.Trimesh
    landmarks: np.ndarray          # [6, 3] mm, exact mesh surface points
    params: TorsoParams
    truth: dict
    full_body: trimesh.Trimesh | None = None   # Anny: the uncut body in the same frame (for whole-body videos)
    chest_wall: trimesh.Trimesh | None = None  # Anny: the same body with cup size 0, cut like `mesh`


def _grid(lo, hi, h):
    axes = [np.arange(a, b + h / 2, h) for a, b in zip(lo, hi)]
    return axes, np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def _evaluate(fn, pts: np.ndarray, block: int = 65536) -> np.ndarray:
    """fn over a grid [..., 3] in cache-sized blocks: whole-grid temporaries cost more in page faults than
    in arithmetic."""
    flat = pts.reshape(-1, 3)
    out = np.empty(len(flat), dtype=np.float64)
    for i in range(0, len(flat), block):
        out[i:i + block] = fn(flat[i:i + block])
    return out.reshape(pts.shape[:-1])


def _occupancy(f, h):
    """Fraction of a voxel of size h inside a distance-like field (smooth, so volumes converge fast)."""
    return np.clip(0.5 - f / h, 0.0, 1.0)


def breast_volume_ml(torso: Torso, index: int, h: float = VOLUME_SPACING_MM) -> float:
    """Volume between skin and chest wall on the breast's side of the midline (ml)."""
    b = torso.breasts[index]
    r = max(b.radii_x + b.radii_y) + b.radius_z
    lo = np.array([b.centre[0] - r - 25, b.centre[1] - r - 25, BACK_PLANE_Z])
    hi = np.array([b.centre[0] + r + 25, b.centre[1] + r + 20, b.nipple_tip[2] + 10])
    if b.side > 0:
        lo[0] = max(lo[0], 0.0)
    else:
        hi[0] = min(hi[0], 0.0)
    _, pts = _grid(lo, hi, h)
    full, chest = _evaluate(torso.field, pts), _evaluate(torso.chest_field, pts)
    same_side = (pts[..., 0] * b.side) > 0
    occ = (_occupancy(full, h) - _occupancy(chest, h)) * same_side
    return float(np.clip(occ, 0, None).sum() * h ** 3 / 1000.0)


def fit_volumes(torso: Torso, iterations: int = 3, h: float = 4.0) -> list[float]:
    """Adjust each breast's projection (secant steps on a coarse grid) until its volume meets the target;
    returns the volumes measured on the fine grid."""
    for i, b in enumerate(torso.breasts):
        target = b.params.volume_target
        a0, v0 = b.radius_z, breast_volume_ml(torso, i, h)
        a1 = float(np.clip(a0 * target / max(v0, 1.0), 10, 200))
        torso.replace_breast(i, a1)
        v1 = breast_volume_ml(torso, i, h)
        for _ in range(iterations - 1):
            if abs(v1 - target) < 0.005 * target or abs(v1 - v0) < 1e-6:
                break
            a2 = float(np.clip(a1 + (target - v1) * (a1 - a0) / (v1 - v0), 10, 200))
            a0, v0 = a1, v1
            torso.replace_breast(i, a2)
            a1, v1 = a2, breast_volume_ml(torso, i, h)
    return [breast_volume_ml(torso, i) for i in range(len(torso.breasts))]


def _surface_z(torso: Torso, x: float, y: float, step: float = 0.25) -> float:
    """First surface crossing seen from the front along z at (x, y)."""
    z = np.arange(260.0, BACK_PLANE_Z - 1, -step)
    f = torso.field(np.stack([np.full_like(z, x), np.full_like(z, y), z], axis=-1))
    inside = np.nonzero(f < 0)[0]
    if len(inside) == 0:
        raise ValueError(f"no surface at x={x:.1f}, y={y:.1f}")
    k = inside[0]
    if k == 0:
        return float(z[0])
    return float(z[k - 1] + (z[k] - z[k - 1]) * f[k - 1] / (f[k - 1] - f[k]))


def inframammary_fold(torso: Torso, index: int, num: int = 49) -> np.ndarray:
    """Lower half of the fold: where, going out from under the breast, the skin rejoins the chest wall (mm)."""
    b = torso.breasts[index]
    curve = []
    radii = np.arange(0.0, 220.0, 0.5)
    for theta in np.linspace(math.pi, 2 * math.pi, num):
        x = b.centre[0] + radii * math.cos(theta)
        y = b.centre[1] + radii * math.sin(theta)
        z = torso.front_z(x, y)
        pts = np.stack([x, y, z], axis=-1)
        lifted = torso.field(pts) < -0.5          # chest-wall point lies under breast tissue
        k = np.nonzero(~lifted)[0]
        k = k[k > 0]
        j = int(k[0]) if len(k) else len(radii) - 1
        curve.append(pts[j])
    return np.array(curve)


def _mesh(torso: Torso, h: float) -> trimesh.Trimesh:
    reach = max(np.abs(torso.arm_bottom[0]), np.abs(torso.arm_top[0])) + torso.p.arm_radius + 10
    z_front = max([b.nipple_tip[2] for b in torso.breasts] + [BACK_PLANE_Z + 200.0]) + 10
    lo = np.array([-reach, torso.y_bottom - 3 * h, BACK_PLANE_Z - 3 * h]) - 0.37 * h   # no grid point on a cut
    hi = np.array([reach, torso.y_top + 3 * h, z_front])
    axes, pts = _grid(lo, hi, h)
    f = _evaluate(torso.field, pts).astype(np.float32)
    f[[0, -1]] = f[:, [0, -1]] = f[:, :, [0, -1]] = 1.0           # closed by construction
    # values at grid nodes that are almost zero put vertices of neighbouring edges almost on top of each other;
    # a reader that merges close vertices then pinches the surface. Nudge them off the surface.
    tiny = np.abs(f) < 0.02 * h
    f[tiny] = np.where(f[tiny] < 0, -0.02 * h, 0.02 * h)
    verts, faces, _, _ = marching_cubes(f, 0.0, spacing=(h, h, h))
    mesh = trimesh.Trimesh(verts + lo, faces[:, ::-1], process=True)    # what any reader that merges will see
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def analytic_landmarks(torso: Torso) -> np.ndarray:
    """The six landmarks of a generator torso from its fields (mm; `make_torso` snaps them onto the mesh)."""
    p = torso.p
    raw = {
        "sternal_notch": [0.0, torso.y_sn, _surface_z(torso, 0.0, torso.y_sn)],
        "belly_button": [p.umbilicus_offset_x, torso.y_umb, _surface_z(torso, p.umbilicus_offset_x, torso.y_umb)],
    }
    for b in torso.breasts:
        raw["left_nipple" if b.side > 0 else "right_nipple"] = b.nipple_tip.tolist()
    for side, key in ((1, "left_coracoid"), (-1, "right_coracoid")):
        x, y = side * p.coracoid_x * p.body_scale * p.width_scale, torso.y_sn + p.coracoid_dy
        raw[key] = [x, y, _surface_z(torso, x, y)]
    return np.array([raw[k] for k in LANDMARK_KEYS])


def make_torso(params: TorsoParams, spacing: float = MESH_SPACING_MM) -> SynthTorso:
    torso = Torso(params)
    volumes = fit_volumes(torso)
    mesh = _mesh(torso, spacing)
    analytic = analytic_landmarks(torso)
    landmarks, _, _ = trimesh.proximity.closest_point(mesh, analytic)
    lm = Landmarks(landmarks, units="mm")
    folds = {("left" if b.side > 0 else "right"): inframammary_fold(torso, i) for i, b in enumerate(torso.breasts)}
    truth = {
        "units": "mm",
        "landmarks": {k: landmarks[i].tolist() for i, k in enumerate(LANDMARK_KEYS)},
        "landmark_snap_mm": float(np.abs(landmarks - analytic).max()),
        "breast_volume_ml": {("left" if b.side > 0 else "right"): v for b, v in zip(torso.breasts, volumes)},
        "inframammary_fold": {k: v.tolist() for k, v in folds.items()},
        "distances_mm": lm.distances_mm(),
        "nipple_to_midline_mm": {"left": float(landmarks[2, 0]), "right": float(-landmarks[3, 0])},
        "nipple_to_fold_mm": {},
        "nipple_minus_fold_height_mm": {},
        "mesh": {"vertices": len(mesh.vertices), "faces": len(mesh.faces), "watertight": bool(mesh.is_watertight),
                 "volume_ml": float(mesh.volume / 1000.0), "spacing_mm": spacing},
    }
    for side, idx in (("left", 2), ("right", 3)):
        fold = folds[side]
        nipple = landmarks[idx]
        below = fold[np.argmin(np.abs(fold[:, 0] - nipple[0]))]
        truth["nipple_to_fold_mm"][side] = float(np.linalg.norm(nipple - below))
        truth["nipple_minus_fold_height_mm"][side] = float(nipple[1] - fold[:, 1].min())
    return SynthTorso(mesh, landmarks, params, truth)


def torso_name(index: int) -> str:
    return f"torso_{index:04d}"


def torso_rng(seed: int, index: int) -> np.random.Generator:
    """Each torso's own stream, so torso i is the same whatever N is (and runs resume)."""
    return np.random.default_rng([int(seed), int(index)])


def write_torso(t: SynthTorso, out_dir: Path, name: str) -> list[Path]:
    out_dir = Path(out_dir)
    (out_dir / "landmarks").mkdir(parents=True, exist_ok=True)
    ply = write_mesh(t.mesh, out_dir / f"{name}.ply")
    txt = out_dir / "landmarks" / f"{name}.txt"
    atomic_write_text(txt, "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in t.landmarks))
    info = {"name": name, "params": t.params.to_dict(), "truth": t.truth}
    js = atomic_write_text(out_dir / f"{name}.json", json.dumps(info, indent=1))   # written last: marks it done
    return [ply, txt, js]


def is_done(out_dir: Path, name: str) -> bool:
    out_dir = Path(out_dir)
    return all((out_dir / f).exists() for f in (f"{name}.ply", f"landmarks/{name}.txt", f"{name}.json"))


SOURCES = ("generator", "anny", "mix")


def source_of(index: int, source: str) -> str:
    """The anatomy source of torso `index`: `mix` alternates generator (even) and Anny (odd) torsos."""
    if source not in SOURCES:
        raise ValueError(f"unknown anatomy source {source!r} (expected {', '.join(SOURCES)})")
    return ("generator", "anny")[index % 2] if source == "mix" else source


def generate(index: int, seed: int, spacing: float = MESH_SPACING_MM, attempts: int = 5,
             source: str = "generator") -> SynthTorso:
    """Torso `index` of a seeded series from the generator or Anny (`source`). The rare parameter draw that
    cannot be built (a landmark that misses the surface, a non-watertight mesh) is redrawn from its own
    deterministic stream."""
    from . import anny_source
    last = None
    kind = source_of(index, source)
    for attempt in range(attempts):
        rng = torso_rng(seed, index) if attempt == 0 else np.random.default_rng([int(seed), int(index), attempt])
        try:
            t = make_torso(sample_params(rng), spacing) if kind == "generator" else \
                anny_source.make_anny_torso(anny_source.anny_rng_params(seed, index, attempt))
        except ValueError as exc:
            last = exc
            continue
        if t.truth["mesh"]["watertight"]:
            t.truth["attempt"] = attempt
            return t
        last = ValueError("mesh not watertight")
    raise RuntimeError(f"torso {index} (seed {seed}) failed {attempts} draws: {last}")


def mean_torso(spacing: float = MESH_SPACING_MM, source: str = "generator") -> SynthTorso:
    if source == "anny":
        from . import anny_source
        return anny_source.make_anny_torso(anny_source.sample_anny_params(mean=True))
    return make_torso(sample_params(mean=True), spacing)


def save_npz(path: Path, t: SynthTorso) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, vertices=t.mesh.vertices, faces=t.mesh.faces, landmarks=t.landmarks)
