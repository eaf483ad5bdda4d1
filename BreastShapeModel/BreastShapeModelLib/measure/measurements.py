"""What a surgeon measures on a breast surface (millimetres, any pose, six landmarks): per-side volume against
the estimated chest wall, tape-measure distances straight and along the skin, symmetry; each with a 90 % interval.

Intervals are calibrated on `bench/measure_accuracy.py` (ground-truth generator and Anny torsos): a relative
error for the chest-wall estimate, landmark placement for distances, the fit's residual, and the part of each
footprint that no input point observed (filled in by the model), which widens the volume interval in proportion
instead of shrinking the number."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from ..errors import UserError
from ..landmarks import LANDMARK_NAMES
from ..options import CHEST_WALL_AUTO, CHEST_WALL_CHOICES
from .chest_model import PredictedWall
from .chest_wall import estimate_chest_wall, fold_point, footprint_curve, footprint_region, plane_wall
from .cylinder import RadiusMap, grid_faces, radius_map
from .frame import L_CORACOID, L_NIPPLE, NAVEL, R_CORACOID, R_NIPPLE, SN, body_frame
from .geodesic import SkinPaths

Z90 = 1.645
# 90 % intervals: 1.645 x the errors measured by bench/measure_accuracy.py (standard deviations)
# the relative error of a volume from its chest wall and footprint on an exact surface, per estimator, and what a
# fitted surface adds per mm of its mean fit residual. The chest model's: 90 % of the 128 breasts of 64 validation
# torsos (generator and Anny, seeds 4242/4243, none in the bench or the models; scratch /tmp/cal2, 2026-12-07; 5.5 %
# set on the bench's own 24 covered 84 % there). The plane's and the P-spline's from the bench (24 breasts each:
# 92 % / 88 % of exact surfaces / scan fits, 90 % of video results; the plane covers 80 % of the validation breasts,
# where a few footprints leak and it reads 31 % off on average)
VOLUME_REL_SD = {"footprint_plane": 0.18, "envelope_pspline": 0.25, "chest_model": 0.068}
PARTLY_SEEN_REL_SD = 0.14       # the chest model's wall read from the seen skin only (wall_skin_seen): its error on
                                # the 44 video breasts of bench (c) (12.5 % MAE); with the residual term the intervals
                                # cover 89 % of them there (0.068: 82 %; in-sample, 2026-12-08)
RESIDUAL_REL_SD_PER_MM = 0.06
VOLUME_ABS_SD_ML = 10.0
UNOBSERVED_WIDEN = 0.5          # + this x the unobserved part of the volume on each side of the interval
DISTANCE_SD_MM = 2.0            # landmark placement on the surface
SURFACE_EXTRA_SD_MM = 1.5       # the tape's path (vertex snapping, mesh resolution)
FOLD_SD_MM = 15.0               # the fold point (the crease where a breast hangs over it): 90 % of the validation
                                # torsos' 128 folds within 1.645 x this (mean +5.7 mm, MAE 10.3 mm; 8 mm, set on the
                                # bench's 24 folds, covered 83 % there)
CODE_Z_UNUSUAL = 2.5            # chest model, code z of the broad shape (10 components), a note above this: 64
                                # validation torsos (seeds 4242/4243, 2026-12-07) 0.6-1.9 and one at 3.5 (its wall
                                # +55 % off on one side); 12 scan fits 0.6-1.1; the tests' cylinder torso 2.1
MISFIT_UNUSUAL_MM = 5.5         # `auto`: RMS skin the chest model's leading 150 components cannot follow: the 64
                                # validation torsos 1.1-5.3 mm, scan fits 1.5-4.1, video results 3.3-4.6 (set
                                # before the skin was read within FRONT_DEG of the front); the test torso with 10 mm
                                # ripples 6.4
GAP_UNUSUAL_MM = 2.5            # `auto`: RMS of the skin off the breasts from the chest model's wall
                                # (off_breast_gap_mm): the 64 validation torsos 0.4-1.9 mm, the cylinder 3.4
UNOBSERVED_MM = 5.0             # support beyond this: not observed (filled in by the model)
PARTLY_SEEN_SHARE = 0.2         # more of the surface than this unobserved: the chest model reads only the seen skin
                                # (scan fits of the bench 1-7 %, video results 48-76 %)
PLAUSIBLE_N2N_MM = (80.0, 400.0)


@dataclass
class Measurements:
    units: str
    breast_volume_ml: dict
    distances_mm: dict
    symmetry: dict
    chest_wall_method: str
    footprints: dict = field(default_factory=dict)      # side -> [N, 3] closed curve (surface frame)
    lines: dict = field(default_factory=dict)           # name -> [N, 3] polyline along the skin
    points: dict = field(default_factory=dict)          # name -> [3] (fold points, midline points)
    wall_mesh: trimesh.Trimesh | None = None            # the chest wall behind both footprints
    breast_meshes: dict = field(default_factory=dict)   # side -> closed mesh of the tissue counted as volume
    notes: list = field(default_factory=list)
    chest_model: dict | None = None                     # chest_model wall: how typical the skin was (typicality)

    def to_json(self) -> dict:
        out = {"units": self.units, "breast_volume_ml": self.breast_volume_ml, "distances_mm": self.distances_mm,
               "symmetry": self.symmetry, "chest_wall_method": self.chest_wall_method,
               "landmark_names": list(LANDMARK_NAMES), "notes": self.notes}
        if self.chest_model is not None:
            out["chest_model"] = self.chest_model
        return out

    def rows(self) -> list[dict]:
        """One row per measure, for spreadsheets."""
        out = []
        for side, v in self.breast_volume_ml.items():
            out.append({"measure": f"{side}_breast_volume", "kind": "volume", "value": v["value"],
                        "interval_low": v["interval"][0], "interval_high": v["interval"][1], "units": "ml"})
        for name, d in self.distances_mm.items():
            for kind in ("straight", "surface"):
                if d.get(kind) is not None:       # a straight line has its own interval where the tape's differs
                    lo, hi = d.get("interval_straight", d["interval"]) if kind == "straight" else d["interval"]
                    out.append({"measure": name, "kind": kind, "value": d[kind], "interval_low": lo,
                                "interval_high": hi, "units": "mm"})
        for name, s in self.symmetry.items():
            out.append({"measure": name, "kind": "symmetry", "value": s["value"],
                        "interval_low": s["interval"][0], "interval_high": s["interval"][1], "units": s["units"]})
        return out


def _interval(value: float, half: float) -> list:
    return [round(value - half, 2), round(value + half, 2)]


def check_units(mesh: trimesh.Trimesh, landmarks: np.ndarray, where: str) -> None:
    n2n = float(np.linalg.norm(landmarks[L_NIPPLE] - landmarks[R_NIPPLE]))
    lo, hi = PLAUSIBLE_N2N_MM
    if not lo <= n2n <= hi:
        raise UserError(f"{where}: the nipples are {n2n:.4g} units apart; measurements need millimetres "
                        f"(expected {lo:.0f}-{hi:.0f} mm). Rescale the surface, or reconstruct with --metrical")
    d, _ = cKDTree(mesh.vertices).query(landmarks)
    if (d > 0.1 * n2n).any():
        far = [f"{LANDMARK_NAMES[i]} ({d[i]:.0f} mm)" for i in np.flatnonzero(d > 0.1 * n2n)]
        raise UserError(f"{where}: landmarks far from the surface: {', '.join(far)}; are they of this surface?")




def measure_surface(mesh: trimesh.Trimesh, landmarks: np.ndarray, support: np.ndarray | None = None,
                    residual_mm: float = 0.0, where: str = "surface", chest_wall: str = CHEST_WALL_CHOICES[0],
                    footprints: dict | None = None) -> Measurements:
    """Every measurement of a surface in mm with its six landmarks; `support` per vertex (distance to the nearest
    input point, mm) widens the intervals where the model filled in; `residual_mm` (fit residual) widens all.
    `footprints` {"left"/"right": [N, 3] closed curve on the skin, surface frame} replace the automatic ones (a
    footprint the user edited)."""
    lm = np.asarray(landmarks, float)
    check_units(mesh, lm, where)
    frame = body_frame(lm)
    body = mesh.copy()
    body.vertices = frame.to_body(mesh.vertices)
    lmb = frame.to_body(lm)
    n2n = float(np.linalg.norm(lmb[L_NIPPLE] - lmb[R_NIPPLE]))
    if chest_wall not in CHEST_WALL_CHOICES:
        raise UserError(f"unknown chest wall {chest_wall!r} (expected {', '.join(CHEST_WALL_CHOICES)})")
    axis_z = _axis_z(body, lmb, n2n)
    y_lo = float(lmb[NAVEL, 1]) * 0.95
    rm = radius_map(body, frame, axis_z, y_lo, 30.0)
    if np.isfinite(rm.r).mean() < 0.3:
        raise UserError(f"{where}: the surface does not cover the chest between the landmarks")
    notes = []
    unobserved = None if support is None else unobserved_vertices(support)
    seen = wall_skin_seen(support)
    partly_seen = seen is not None
    predicted = PredictedWall(rm, body, lmb, observed=seen) if chest_wall in (CHEST_WALL_AUTO, "chest_model") else None
    cw = None
    if chest_wall == CHEST_WALL_AUTO:
        chest_wall, why, cw = _auto_wall(predicted, rm, lmb)
        notes.append(why)
        predicted = predicted if chest_wall == "chest_model" else None
    if cw is None:
        cw = estimate_chest_wall(rm, lmb[[L_NIPPLE, R_NIPPLE]], lmb[[L_CORACOID, R_CORACOID]], wall_model=predicted)
    if predicted is not None and partly_seen:
        notes.append(f"the chest model read the skin the input saw ({100 * seen.mean():.0f} % of the surface; the rest "
                     f"was filled in by the shape model)")
    typical = None
    if predicted is not None:
        typical = {**predicted.typicality(), "off_breast_gap_mm": round(off_breast_gap_mm(rm, cw), 2)}
    if typical and typical["code_z"] > CODE_Z_UNUSUAL:
        notes.append(f"the skin is unlike the torsos the chest model learned from (code z {typical['code_z']:.1f} > "
                     f"{CODE_Z_UNUSUAL}): its wall, and the volumes, may be far off; compare with --chest_wall "
                     f"footprint_plane")
    for side, region in cw.regions.items():             # a footprint is what its outline encloses, so a
        if region.any():                                 # written footprint read back measures the same
            cw.regions[side] = footprint_region(rm, footprint_curve(rm, region))
    vtree = cKDTree(mesh.vertices)
    for side, curve in (footprints or {}).items():
        off = float(np.median(vtree.query(np.asarray(curve, float))[0]))
        if off > 0.1 * n2n:
            raise UserError(f"{where}: the {side} footprint lies {off:.0f} mm from the surface (median); is it a "
                            f"curve drawn on this surface?")
        region = footprint_region(rm, frame.to_body(np.asarray(curve, float)))
        if region.sum() < 4:
            raise UserError(f"{where}: the {side} footprint encloses no part of the surface between the landmarks; "
                            f"draw it as a closed curve round the breast on this surface")
        cw.regions[side] = region
        notes.append(f"{side} footprint as given ({len(curve)} points), not found automatically")
    paths = SkinPaths(mesh, lm)
    unobserved_cells = None
    if unobserved is not None:
        cells = rm.cell_points().reshape(-1, 3)
        hit = np.isfinite(cells).all(axis=1)                # rays that missed the surface have no skin point
        flags = np.zeros(len(cells), bool)
        flags[hit] = unobserved[vtree.query(frame.to_surface(cells[hit]))[1]]
        unobserved_cells = flags.reshape(rm.r.shape)
    volumes, footprints, points, lines, distances = {}, {}, {}, {}, {}
    res_sd = float(residual_mm)
    for side, idx in (("left", L_NIPPLE), ("right", R_NIPPLE)):
        region = cw.regions[side]
        curve = footprint_curve(rm, region)
        if chest_wall == "footprint_plane":                 # a plane through the footprint's outline
            cw.wall = np.where(region, plane_wall(rm, curve), cw.wall)
        v = rm.volume_ml(cw.wall, region)
        observed = 1.0
        if unobserved_cells is not None and region.any():
            weights = np.where(region, rm.cell_volumes(cw.wall), 0)
            observed = 1.0 - float((weights * unobserved_cells).sum() / max(weights.sum(), 1e-9))
        rel = PARTLY_SEEN_REL_SD if chest_wall == "chest_model" and partly_seen else VOLUME_REL_SD[chest_wall]
        half = Z90 * np.hypot(np.hypot(rel * v, VOLUME_ABS_SD_ML), res_sd * RESIDUAL_REL_SD_PER_MM * v) + \
            UNOBSERVED_WIDEN * (1.0 - observed) * v
        volumes[side] = {"value": round(v, 1), "interval": [round(max(0.0, v - half), 1), round(v + half, 1)],
                         "observed_fraction": round(observed, 3), "footprint_area_cm2": round(_area(rm, region), 1)}
        if not region.any():
            notes.append(f"no {side} breast stands out from the chest wall: volume 0")
        footprints[side] = frame.to_surface(curve) if len(curve) else curve
        nip = lmb[idx]
        if len(curve):
            fold = fold_point(rm, curve, nip, n2n)
            medial = curve[np.argmin(np.abs(curve[:, 0]))]
            lateral = curve[np.argmax(np.abs(curve[:, 0]))]
            points[f"{side}_fold"] = frame.to_surface(fold)
            points[f"{side}_base_medial"], points[f"{side}_base_lateral"] = (frame.to_surface(medial),
                                                                            frame.to_surface(lateral))
        th, y, r = rm.polar(nip)
        row, col = rm.index(th, y)
        proj = float(r - cw.wall[row, col]) if np.isfinite(cw.wall[row, col]) else 0.0
        mid = rm.body_points(0.0, nip[1], rm.r[rm.index(0.0, nip[1])])
        points[f"{side}_midline"] = frame.to_surface(mid)
        distances[f"{side}_breast_projection"] = {"straight": round(max(proj, 0.0), 2), "surface": None,
                                                  "interval": _interval(max(proj, 0.0), Z90 * np.hypot(
                                                      DISTANCE_SD_MM, res_sd))}
    sd = np.hypot(DISTANCE_SD_MM, res_sd)
    sd_surf = np.hypot(sd, SURFACE_EXTRA_SD_MM)

    def tape(name: str, a: np.ndarray, b: np.ndarray, sd_straight: float, sd_surface: float, straight=None):
        line = paths.path(a, b)
        surface = float(np.linalg.norm(np.diff(line, axis=0), axis=1).sum()) if len(line) > 1 else 0.0
        s = float(np.linalg.norm(a - b)) if straight is None else straight
        lines[name] = line
        distances[name] = {"straight": round(s, 2), "surface": round(surface, 2),
                           "interval": _interval(surface, Z90 * max(sd_straight, sd_surface))}

    tape("sternal_notch_to_left_nipple", lm[SN], lm[L_NIPPLE], sd, sd_surf)
    tape("sternal_notch_to_right_nipple", lm[SN], lm[R_NIPPLE], sd, sd_surf)
    tape("nipple_to_nipple", lm[L_NIPPLE], lm[R_NIPPLE], sd, sd_surf)
    for side, idx in (("left", L_NIPPLE), ("right", R_NIPPLE)):
        tape(f"{side}_nipple_to_midline", lm[idx], points[f"{side}_midline"], sd, sd_surf,
             straight=abs(float(lmb[idx, 0])))
        if f"{side}_fold" in points:
            tape(f"{side}_nipple_to_fold", lm[idx], points[f"{side}_fold"], np.hypot(sd, FOLD_SD_MM),
                 np.hypot(sd_surf, FOLD_SD_MM))
            tape(f"{side}_breast_base_width", points[f"{side}_base_medial"], points[f"{side}_base_lateral"],
                 np.hypot(sd, FOLD_SD_MM), np.hypot(sd_surf, FOLD_SD_MM))
    # straight distances keep the straight interval; the surface value the surface one
    for name, d in distances.items():
        if d["surface"] is not None:
            d["interval_straight"] = _interval(d["straight"], d["interval"][1] - d["surface"])
    vl, vr = volumes["left"]["value"], volumes["right"]["value"]
    hl = (volumes["left"]["interval"][1] - volumes["left"]["interval"][0]) / 2
    hr = (volumes["right"]["interval"][1] - volumes["right"]["interval"][0]) / 2
    level = float(lmb[L_NIPPLE, 1] - lmb[R_NIPPLE, 1])
    symmetry = {"volume_difference_left_minus_right": {"value": round(vl - vr, 1), "units": "ml",
                                                        "interval": _interval(vl - vr, float(np.hypot(hl, hr)))},
                "volume_ratio_left_to_right": {"value": round(vl / vr, 3) if vr > 0 else None, "units": "ratio",
                                               "interval": _ratio_interval(vl, hl, vr, hr)},
                "nipple_level_difference_left_minus_right": {"value": round(level, 2), "units": "mm",
                                                             "interval": _interval(level, Z90 * sd * np.sqrt(2))}}
    breasts = {side: _breast_mesh(rm, cw.wall, cw.regions[side], frame) for side in ("left", "right")}
    return Measurements("mm", volumes, distances, symmetry, chest_wall, footprints, lines, points,
                        _wall_mesh(rm, cw, frame), {k: v for k, v in breasts.items() if v is not None}, notes,
                        typical)


def unobserved_vertices(support: np.ndarray) -> np.ndarray:
    """Per vertex: filled in by the model, not seen in the input (support, the distance to the nearest input point,
    beyond UNOBSERVED_MM or 3 x its median, whichever is larger)."""
    support = np.asarray(support, float)
    return support > max(UNOBSERVED_MM, 3.0 * float(np.median(support)))


def wall_skin_seen(support: np.ndarray | None) -> np.ndarray | None:
    """Per vertex: the skin the chest model reads (None: all of it). Where the input left much of the surface unseen
    (more than PARTLY_SEEN_SHARE of it farther than UNOBSERVED_MM from any input point: every video result, a
    front-only scan), only the skin within UNOBSERVED_MM of the input: the shape model's fill-in of the sides and of
    sparsely seen patches made the wall deep (bench (c), 44 video breasts: 20.2 % volume MAE from all the skin, 12.5 %
    from the seen skin; thresholds of 3.5-7.5 mm alike; the interval's rule, 3 x the median support, 15.6 %). A
    surface seen nearly everywhere (scan fits: 1-7 % unseen, specks at its cut edges) keeps all its skin: leaving the
    specks out moved the Anny scan fits 5 % lower (bench (b): 6.8 -> 7.9 %)."""
    if support is None:
        return None
    far = np.asarray(support, float) > UNOBSERVED_MM
    return ~far if far.mean() > PARTLY_SEEN_SHARE else None


def off_breast_gap_mm(rm: RadiusMap, cw) -> float:
    """RMS (mm) of the skin's distance from the wall off the breasts, on the front (within 60 degrees of the
    midline, below the notch): there the skin lies on the chest wall (a few mm of soft tissue at most), so a
    predicted wall that does not meet it there is off under the breasts too (validation torsos 0.4-1.9 mm; the
    tests' cylinder torso, whose chest-model wall is 29 % off, 3.4)."""
    T, Y = np.meshgrid(rm.theta, rm.y)
    off = np.isfinite(rm.r) & np.isfinite(cw.wall) & ~cw.regions["left"] & ~cw.regions["right"] & \
        (np.abs(T) < np.radians(60.0)) & (Y < 0.0)
    return float(np.sqrt(np.mean((rm.r - cw.wall)[off] ** 2))) if off.any() else float("inf")


def _auto_wall(predicted: PredictedWall, rm: RadiusMap, lmb: np.ndarray):
    """`auto`: the chest model when its wall fits this skin (the skin its components cannot follow, and the skin
    off the breasts standing away from its wall, both within what held-out torsos showed), else the footprint
    plane. -> (method, why, the chest model's ChestWall or None)."""
    try:
        cw = estimate_chest_wall(rm, lmb[[L_NIPPLE, R_NIPPLE]], lmb[[L_CORACOID, R_CORACOID]], wall_model=predicted)
    except UserError as exc:
        return "footprint_plane", f"chest wall: footprint plane (auto; the chest model cannot read this skin: {exc})", \
            None
    t, gap = predicted.typicality(), off_breast_gap_mm(rm, cw)
    if t["skin_misfit_mm"] <= MISFIT_UNUSUAL_MM and gap <= GAP_UNUSUAL_MM:
        return "chest_model", (f"chest wall: chest model (auto; the skin is typical: misfit {t['skin_misfit_mm']:.1f} "
                               f"mm, off the breasts {gap:.1f} mm from its wall)"), cw
    return "footprint_plane", (f"chest wall: footprint plane (auto; the skin is unlike the chest model's torsos: misfit "
                               f"{t['skin_misfit_mm']:.1f} mm (limit {MISFIT_UNUSUAL_MM}), off the breasts {gap:.1f} mm "
                               f"from its wall (limit {GAP_UNUSUAL_MM}))"), None


def _axis_z(body: trimesh.Trimesh, lmb: np.ndarray, n2n: float) -> float:
    """Depth of the radius map's axis: the torso's middle at the nipples for a surface with a back, else a depth
    behind the sternum proportional to the nipple distance (front-only scans). A back is there when a good share
    of the band's skin faces backwards; a small hole (an arm stub cut by the meshing grid) does not count."""
    band = np.abs(body.vertices[:, 1] - lmb[[L_NIPPLE, R_NIPPLE], 1].mean()) < 0.1 * n2n
    guess = -0.45 * n2n
    nz = body.vertex_normals[band, 2]                     # both signs: whatever the frame's handedness
    has_back = band.sum() > 50 and min(float((nz < -0.5).mean()), float((nz > 0.5).mean())) > 0.1
    if has_back:
        z = body.vertices[band, 2]
        return float(min((z.min() + z.max()) / 2, -0.2 * n2n))
    return guess


def _area(rm, region) -> float:
    return float((np.where(region, np.nan_to_num(rm.r), 0)).sum() * rm.dtheta * rm.dy / 100.0)


def _ratio_interval(a, ha, b, hb) -> list:
    if b - hb <= 0:
        return [None, None]
    return [round(max(a - ha, 0) / (b + hb), 3), round((a + ha) / (b - hb), 3)]


def _wall_mesh(rm, cw, frame) -> trimesh.Trimesh | None:
    """The chest wall under both footprints (cells of either region, one ring wider) as a triangle mesh."""
    from scipy import ndimage
    mask = ndimage.binary_dilation(cw.regions["left"] | cw.regions["right"]) & np.isfinite(cw.wall)
    if mask.sum() < 4:
        return None
    _, faces = grid_faces(mask)
    return trimesh.Trimesh(frame.to_surface(rm.cell_points(cw.wall)[mask]), faces, process=False)


def _breast_mesh(rm, wall: np.ndarray, region: np.ndarray, frame) -> trimesh.Trimesh | None:
    """The tissue counted as one breast's volume as a closed mesh (surface frame): the skin over the footprint,
    the chest wall under it, and the side walls along the footprint's edge; for display in Slicer."""
    mask = region & np.isfinite(wall) & np.isfinite(rm.r)
    if mask.sum() < 4:
        return None
    _, top = grid_faces(mask)
    if not len(top):
        return None
    n = int(mask.sum())
    skin, base = rm.cell_points()[mask], rm.cell_points(np.minimum(wall, rm.r))[mask]
    edges = np.concatenate([top[:, [0, 1]], top[:, [1, 2]], top[:, [2, 0]]])          # directed, as wound
    border = edges[trimesh.grouping.group_rows(np.sort(edges, axis=1), require_count=1)]
    a, b = border[:, 0], border[:, 1]                  # the side quad runs b -> a on top, a -> b underneath
    sides = np.concatenate([np.stack([b, a, a + n], 1), np.stack([b, a + n, b + n], 1)])
    faces = np.concatenate([top, top[:, ::-1] + n, sides])
    mesh = trimesh.Trimesh(frame.to_surface(np.concatenate([skin, base])), faces, process=False)
    if mesh.volume < 0:                                     # outward normals, whatever the frame's handedness
        mesh.invert()
    return mesh
