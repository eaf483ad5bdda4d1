"""Parametric anatomy of the anterior female torso: parameters, their distributions, and the implicit field.

The torso is an implicit surface in millimetres (model orientation: +x the patient's left, +y up, +z forward),
negative inside. A superelliptic trunk whose width, depth and roundness vary smoothly with height is joined to
two upper-arm stubs (cut like the method's scans), given a sternal-notch and umbilicus dent, two breasts (tilted,
asymmetric ellipsoids with an areola and nipple, smoothly united to the chest so the inframammary fold forms a
crease), cut flat at the top, below the umbilicus, and by a posterior plane.

Profiles along the body are knots taken from the official liRBSM mean shape (used for calibration only); a
subject's anatomy scales and bends them with independent, smooth parameters. Breast parameters are drawn
from published anthropometry (see `sample_params`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.interpolate import PchipInterpolator

# Knots along t = (y - y_umbilicus) / (y_sternal_notch - y_umbilicus), from the official mean shape (mm).
_T = np.array([-0.12, -0.03, 0.02, 0.08, 0.13, 0.18, 0.24, 0.29, 0.40, 0.51, 0.57, 0.73, 0.90, 1.00, 1.10, 1.25])
_HALF_WIDTH = np.array([172, 168, 166, 162, 155, 147, 144, 145, 150, 157, 160, 163, 160, 152, 142, 130.0])
_DEPTH = np.array([138, 142, 148, 151, 151, 148, 146, 144, 138, 133, 130, 117, 101, 80, 66, 58.0])
_ROUNDNESS = np.array([2.4, 2.4, 2.4, 2.4, 2.35, 2.3, 2.3, 2.3, 2.4, 2.5, 2.5, 2.5, 2.4, 2.3, 2.3, 2.3])
BACK_PLANE_Z = -84.5            # posterior cut, mm (the official mean shape's flat back)
SN_TO_UMBILICUS_MEAN = 366.0    # official mean (mm), before the body scale


@dataclass
class BreastParams:
    """One breast. Nipple (x from the midline, sternal-notch distance) is the anchor; the rest shapes the blob."""

    nipple_to_midline: float      # mm
    sn_to_nipple: float           # straight-line jugulum-nipple distance, mm
    base_width: float             # mm
    volume_target: float          # ml (the generator adjusts projection to reach it)
    ptosis_grade: int             # 0 none, Regnault I-III
    tilt_deg: float               # downward tilt of the breast axis
    yaw_deg: float                # lateral turn of the breast axis
    upper_pole: float             # upper radius / half base width
    lower_pole: float             # lower radius / half base width
    lateral_fullness: float       # lateral radius / medial radius
    embed: float                  # fraction of the projection sunk into the chest
    areola_radius: float          # mm
    areola_relief: float          # mm
    nipple_radius: float          # mm
    nipple_height: float          # mm
    projection: float = 0.0       # ellipsoid radius along the axis, mm (solved for the volume target)


@dataclass
class TorsoParams:
    """Every parameter of one synthetic torso (mm, degrees)."""

    body_scale: float = 0.9
    width_scale: float = 1.0
    depth_scale: float = 1.0
    waist: float = 0.0            # mm narrower (+) or wider (-) at the waist
    hips: float = 0.0             # mm wider at the bottom
    roundness: float = 0.0        # added to the superellipse exponent
    abdomen: float = 0.0          # mm lower-abdomen protrusion
    umbilicus_depth: float = 8.0
    umbilicus_offset_x: float = 0.0
    sternal_notch_depth: float = 4.0
    shoulder_slope: float = 0.0   # degrees, arms and top line
    arm_radius: float = 42.0
    coracoid_x: float = 153.0     # before body scale
    coracoid_dy: float = 3.0      # mm above the sternal notch
    bottom_below_umbilicus: float = 12.0
    top_above_notch: float = 55.0
    breasts: dict = field(default_factory=dict)   # "left"/"right" -> BreastParams

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TorsoParams":
        d = dict(d)
        d["breasts"] = {k: BreastParams(**v) for k, v in d.get("breasts", {}).items()}
        return cls(**d)


def _clipped_normal(rng, mean, std, lo, hi):
    return float(np.clip(rng.normal(mean, std), lo, hi))


PTOSIS_TILT = {0: (0.0, 15.0), 1: (22.0, 35.0), 2: (36.0, 50.0), 3: (55.0, 70.0)}


def sample_params(rng: np.random.Generator | None = None, mean: bool = False) -> TorsoParams:
    """Draw one torso. Distributions (per breast unless noted) follow published anthropometry:
    jugulum-nipple 19.9 ± 2.3 cm (R) / 20.1 ± 2.4 (L); nipple-midline 9.4 ± 1.3 / 10.0 ± 1.2; base width
    14.3 ± 1.4; volume 340 ± 109 ml (92-919, log-normal); left-right volume difference 48 ± 42 ml; nipple
    level difference 4.9 ± 3.7 mm; ptosis in ~23 % of breasts (Regnault I-III). `mean=True` gives the
    mean-parameter torso."""
    rng = rng or np.random.default_rng()
    g = (lambda m, s, lo, hi: m) if mean else (lambda m, s, lo, hi: _clipped_normal(rng, m, s, lo, hi))
    p = TorsoParams(
        body_scale=g(0.9, 0.05, 0.78, 1.05), width_scale=g(1.0, 0.05, 0.88, 1.14),
        depth_scale=g(1.0, 0.08, 0.8, 1.25), waist=g(0.0, 7.0, -15, 18), hips=g(0.0, 8.0, -15, 22),
        roundness=g(0.0, 0.3, -0.6, 0.7), abdomen=g(4.0, 6.0, -5, 25), umbilicus_depth=g(8.0, 3.0, 2, 15),
        umbilicus_offset_x=g(0.0, 3.0, -8, 8), sternal_notch_depth=g(4.0, 1.5, 1.5, 8),
        shoulder_slope=g(0.0, 4.0, -9, 9), arm_radius=g(42.0, 4.0, 33, 52), coracoid_x=g(153.0, 7.0, 138, 168),
        coracoid_dy=g(3.0, 6.0, -10, 16), bottom_below_umbilicus=g(12.0, 4.0, 5, 22),
        top_above_notch=g(55.0, 4.0, 45, 65))

    # Volumes: log-normal with mean 340 ml, sd 109 ml, clipped to the published range; sides differ by a
    # half-normal amount of mean ~48 ml. Nipple heights differ by ~4.9 mm.
    sigma2 = math.log(1 + (109 / 340) ** 2)
    vol_mean = 340.0 if mean else float(np.clip(rng.lognormal(math.log(340) - sigma2 / 2, math.sqrt(sigma2)), 92, 919))
    diff = 0.0 if mean else float(min(abs(rng.normal(0, 60.0)), 0.6 * vol_mean))
    sign = 1.0 if (mean or rng.random() < 0.5) else -1.0
    level = 0.0 if mean else float(rng.normal(0, 6.1))
    shared_grade = 0 if mean else int(rng.choice(4, p=[0.77, 0.12, 0.07, 0.04]))
    base_common = g(143.0, 12.0, 118, 170)
    sn_common = g(200.0, 22.0, 150, 280)
    mid_common = g(97.0, 11.0, 68, 135)
    for side, sn_offset, mid_offset, s in (("left", 1.0, 3.0, +1), ("right", -1.0, -3.0, -1)):
        grade = shared_grade if (mean or rng.random() < 0.8) else int(rng.choice(4, p=[0.77, 0.12, 0.07, 0.04]))
        lo, hi = PTOSIS_TILT[grade]
        p.breasts[side] = BreastParams(
            nipple_to_midline=float(np.clip(mid_common + mid_offset + g(0.0, 4.0, -10, 10), 60, 145)),
            sn_to_nipple=float(sn_common + sn_offset + s * level / 2),
            base_width=float(np.clip(base_common + g(0.0, 5.0, -12, 12), 110, 180)),
            volume_target=float(np.clip(vol_mean + s * sign * diff / 2, 92, 919)), ptosis_grade=grade,
            tilt_deg=8.0 if mean else float(rng.uniform(lo, hi)), yaw_deg=g(12.0, 5.0, 0, 25),
            upper_pole=g(1.25, 0.12, 0.95, 1.6), lower_pole=g(0.85, 0.07, 0.65, 1.05),
            lateral_fullness=g(1.15, 0.08, 0.95, 1.4), embed=g(0.25, 0.05, 0.1, 0.4),
            areola_radius=g(20.0, 4.0, 12, 32), areola_relief=g(1.5, 0.6, 0.3, 3.0),
            nipple_radius=g(5.0, 0.8, 3.5, 7.0), nipple_height=g(5.0, 1.5, 2.0, 9.0))
    return p


# ------------------------------------------------------------------ implicit field
def smin(a, b, k):
    """Polynomial smooth minimum (union) with blend radius k (mm)."""
    if np.ndim(k) == 0 and k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def smax(a, b, k):
    """Smooth maximum (intersection)."""
    return -smin(-a, -b, k)


def _rotation(tilt_deg: float, yaw_deg: float, side: int) -> np.ndarray:
    """Columns e_x, e_y, e_z of a breast frame whose axis e_z points forward, tilted down and turned outward."""
    t, w = math.radians(tilt_deg), math.radians(yaw_deg) * side
    ez = np.array([math.sin(w) * math.cos(t), -math.sin(t), math.cos(w) * math.cos(t)])
    ey = np.array([0.0, 1.0, 0.0]) - ez[1] * ez
    ey /= np.linalg.norm(ey)
    ex = np.cross(ey, ez)
    return np.stack([ex, ey, ez], axis=1)


@dataclass
class BreastGeometry:
    """A placed breast: blob centre, frame and radii, nipple tip (all mm)."""

    side: int
    centre: np.ndarray
    frame: np.ndarray
    radii_x: tuple[float, float]      # medial, lateral
    radii_y: tuple[float, float]      # lower, upper
    radius_z: float
    tip: np.ndarray
    nipple_tip: np.ndarray
    params: BreastParams


class Torso:
    """The implicit torso of one parameter set. `field(points)` is negative inside (approximately mm)."""

    def __init__(self, params: TorsoParams):
        self.p = p = params
        s = p.body_scale
        self.y_sn = 159.0 * s
        self.y_umb = self.y_sn - SN_TO_UMBILICUS_MEAN * s
        self.y_bottom = self.y_umb - p.bottom_below_umbilicus
        self.y_top = self.y_sn + p.top_above_notch
        t = _T
        width = _HALF_WIDTH * s * p.width_scale
        width = width - p.waist * np.exp(-((t - 0.24) / 0.12) ** 2) + p.hips * np.clip((0.13 - t) / 0.25, 0, 1)
        depth = _DEPTH * s * p.depth_scale + p.abdomen * np.exp(-((t - 0.08) / 0.14) ** 2)
        self._w = PchipInterpolator(t, width, extrapolate=True)
        self._d = PchipInterpolator(t, depth, extrapolate=True)
        self._r = PchipInterpolator(t, _ROUNDNESS + p.roundness, extrapolate=True)
        slope = math.radians(p.shoulder_slope)
        self.arm_top = np.array([200.0 * s * p.width_scale, 150.0 * s, -75.0])
        arm_dir = np.array([math.sin(math.radians(8) + slope), -math.cos(math.radians(8) + slope), 0.0])
        self.arm_bottom = self.arm_top + 260.0 * s * arm_dir
        # arm cut: from the armpit out and up (normal pointing up and inward keeps the arm above it)
        self.cut_point = np.array([160.0 * s * p.width_scale, -5.0 * s + self.y_sn - 159.0 * s])
        self.cut_normal = np.array([-math.sin(math.radians(30) - slope), math.cos(math.radians(30) - slope)])
        self.breasts = [self._place_breast(p.breasts[k], side) for k, side in (("left", 1), ("right", -1))
                        if k in p.breasts]

    # -- profiles
    def _t(self, y):
        return (y - self.y_umb) / (self.y_sn - self.y_umb)

    def front_z(self, x, y):
        """z of the chest wall surface (no breasts, no dents) at (x, y)."""
        t = self._t(y)
        w, d, r = self._w(t), self._d(t), self._r(t)
        u = np.clip(np.abs(x) / w, 0, 1)
        return BACK_PLANE_Z + d * (1 - u ** r) ** (1 / r)

    def _trunk(self, x, y, z):
        t = self._t(y)
        w, d, r = self._w(t), self._d(t), self._r(t)
        zz = np.maximum(z - BACK_PLANE_Z, 0.0)
        rho = ((np.abs(x) / w) ** r + (zz / d) ** r) ** (1.0 / r)
        return (rho - 1.0) * np.minimum(w, d)

    def _arms(self, x, y, z):
        pts = np.stack([np.abs(x), y, z], axis=-1)
        a, b = self.arm_top, self.arm_bottom
        ab = b - a
        h = np.clip(((pts - a) @ ab) / (ab @ ab), 0, 1)
        dist = np.linalg.norm(pts - (a + h[..., None] * ab), axis=-1) - self.p.arm_radius
        below = -((np.abs(x) - self.cut_point[0]) * self.cut_normal[0] + (y - self.cut_point[1]) * self.cut_normal[1])
        return np.maximum(dist, below)

    def _dents(self, x, y):
        p = self.p
        sn = p.sternal_notch_depth * np.exp(-(x ** 2 + (y - self.y_sn) ** 2) / (2 * 11.0 ** 2))
        umb = p.umbilicus_depth * np.exp(-((x - p.umbilicus_offset_x) ** 2 + (y - self.y_umb) ** 2) / (2 * 7.0 ** 2))
        return sn + umb

    def chest_field(self, pts: np.ndarray) -> np.ndarray:
        """The torso without breasts (the generator's own chest wall)."""
        x, y, z = pts[..., 0], pts[..., 1], pts[..., 2]
        f = smin(self._trunk(x, y, z), self._arms(x, y, z), 28.0) + self._dents(x, y)
        return self._cuts(f, x, y, z)

    def _cuts(self, f, x, y, z):
        bend = 0.0025 * (1.0 + self.p.shoulder_slope / 20.0) / self.p.body_scale
        top = self.y_top - bend * np.maximum(np.abs(x) - 40.0 * self.p.body_scale, 0.0) ** 2
        f = smax(f, y - top, 12.0)
        f = np.maximum(f, self.y_bottom - y)
        return np.maximum(f, BACK_PLANE_Z - z)

    def breast_field(self, pts: np.ndarray, b: BreastGeometry) -> np.ndarray:
        local = (pts - b.centre) @ b.frame
        lx = local[..., 0] * b.side           # + is lateral
        rx = np.where(lx > 0, b.radii_x[1], b.radii_x[0])
        ry = np.where(local[..., 1] > 0, b.radii_y[1], b.radii_y[0])
        rho = np.sqrt((lx / rx) ** 2 + (local[..., 1] / ry) ** 2 + (local[..., 2] / b.radius_z) ** 2)
        f = (rho - 1.0) * min(b.radius_z, b.radii_y[0])
        bp = b.params
        tip_local = local - np.array([0.0, 0.0, b.radius_z])
        areola = (np.sqrt((tip_local[..., 0] / bp.areola_radius) ** 2 + (tip_local[..., 1] / bp.areola_radius) ** 2
                          + (tip_local[..., 2] / max(bp.areola_relief * 2.5, 0.5)) ** 2) - 1.0) * bp.areola_relief * 2.5
        f = smin(f, areola, 2.0)
        nip = np.linalg.norm(tip_local - np.array([0, 0, bp.nipple_height - bp.nipple_radius]), axis=-1) - bp.nipple_radius
        return smin(f, nip, 2.5)

    def field(self, pts: np.ndarray, breasts: bool = True) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64)
        x, y, z = pts[..., 0], pts[..., 1], pts[..., 2]
        f = smin(self._trunk(x, y, z), self._arms(x, y, z), 28.0)
        if breasts:
            for b in self.breasts:
                f = smin(f, self.breast_field(pts, b), self._fold_k(b))
        f = f + self._dents(x, y)
        return self._cuts(f, x, y, z)

    @staticmethod
    def _fold_k(b: BreastGeometry) -> float:
        """Blend radius of breast and chest: a sharper crease for firm breasts, softer with ptosis."""
        return 12.0 + 4.0 * b.params.ptosis_grade

    # -- breasts
    def _place_breast(self, bp: BreastParams, side: int, projection: float | None = None) -> BreastGeometry:
        az = projection if projection is not None else (bp.projection or self._projection_guess(bp))
        frame = _rotation(bp.tilt_deg, bp.yaw_deg, side)
        ez = frame[:, 2]
        nipple_len = az + bp.nipple_height
        xn = side * bp.nipple_to_midline
        # nipple height from the sternal-notch distance: solve with the nipple's depth from the chest wall
        zn_guess = self.front_z(xn, self.y_sn - 150) + 0.6 * az
        dz = zn_guess - (self.front_z(0.0, self.y_sn) - self.p.sternal_notch_depth)
        dy = math.sqrt(max(bp.sn_to_nipple ** 2 - bp.nipple_to_midline ** 2 - dz ** 2, 50.0 ** 2))
        yn = self.y_sn - dy
        bx, by = xn - nipple_len * ez[0], yn - nipple_len * ez[1]
        cz = self.front_z(bx, by) - bp.embed * az
        centre = np.array([bx, by, cz])
        half = bp.base_width / 2
        radii_x = (half / math.sqrt(bp.lateral_fullness), half * math.sqrt(bp.lateral_fullness))
        radii_y = (half * bp.lower_pole, half * bp.upper_pole)
        tip = centre + az * ez
        return BreastGeometry(side, centre, frame, radii_x, radii_y, az, tip, centre + nipple_len * ez, bp)

    @staticmethod
    def _projection_guess(bp: BreastParams) -> float:
        half = bp.base_width / 2
        vol_mm3 = bp.volume_target * 1000.0
        return float(np.clip(vol_mm3 / (2.0 / 3.0 * math.pi * half * half * (bp.upper_pole + bp.lower_pole) / 2)
                             / (1 - bp.embed) * 0.85, 15, 160))

    def replace_breast(self, index: int, projection: float) -> None:
        b = self.breasts[index]
        b.params.projection = projection
        self.breasts[index] = self._place_breast(b.params, b.side, projection)
