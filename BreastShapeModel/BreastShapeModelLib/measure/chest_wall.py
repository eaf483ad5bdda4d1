"""Breast footprints and the chest wall behind them, found together on a radius map.

The chest wall is a smooth surface (a penalised tensor B-spline, P-spline, over angle and height: it bends across
the breasts as surgeons' tools bend a surface through the breast's base) fitted as the *lower envelope* of the
skin: skin standing out of it (breasts, arms) gets almost no weight in the next round. A breast is the region,
connected to its nipple, where the skin stands out from that wall; its outline is the breast base (inframammary
fold, medial, lateral and upper borders)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.interpolate import BSpline
from scipy.sparse.linalg import spsolve

from .cylinder import RadiusMap

LIFT_MM = 2.0               # skin this far in front of the wall belongs to the breast
OUTLIER_MM = 3.0            # skin this far out of the wall is not chest wall: weight OUTLIER_WEIGHT next round
OUTLIER_WEIGHT = 1e-3
START_RADIUS = 0.55         # first round: no weight within this x the nipple distance of each nipple
MAX_RADIUS = 0.95           # a footprint never reaches farther from its nipple than this x the nipple distance (the
                            # truth's farthest lifted skin: 0.37-0.85 on 64 validation breasts of 50-990 ml; 1.1 until
                            # session 21 let a fit's filled flank or shoulder join the breast)
LATERAL_DEG = 110.0         # nor farther round the side than this angle from the front (mid-axillary line)
ROUNDS = 12
AXILLA_MARGIN = 0.15
KNOT_DEG = 10.0             # P-spline knot spacing across (degrees) and along the body (mm)
KNOT_MM = 40.0
ORDER_THETA, ORDER_Y = 3, 3     # the chest curves round the body and along it: keep that curvature under a breast
PENALTY = 3.0               # second-difference penalty of the P-spline (relative to the data weight)
SADDLE_MM = 5.0             # a raised part with a top this far over the pass to its neighbour is a part of its own
MERGE_RATIO = 0.5           # and stays with the breast's part only if that pass is this x the lower top or higher


@dataclass
class ChestWall:
    wall: np.ndarray                 # [Y, T] wall radius (NaN outside the torso band)
    regions: dict                    # "left"/"right" -> [Y, T] bool footprint mask
    method: str = "envelope_pspline"


def _basis(x: np.ndarray, spacing: float, degree: int = 3):
    lo, hi = float(x.min()), float(x.max())
    n = max(2, int(np.ceil((hi - lo) / spacing)))
    inner = np.linspace(lo, hi, n + 1)
    t = np.r_[[lo] * degree, inner, [hi] * degree]
    return BSpline.design_matrix(x, t, degree).tocsr()


def _penalty(n: int, order: int = 2) -> sparse.csr_matrix:
    """Squared differences of the given order: 2 bends towards straight lines, 3 keeps the curvature going."""
    coeffs = {2: [1.0, -2.0, 1.0], 3: [-1.0, 3.0, -3.0, 1.0]}[order]
    d = sparse.diags(coeffs, list(range(order + 1)), shape=(n - order, n))
    return (d.T @ d).tocsr()


class _WallModel:
    """Weighted P-spline least squares over the (angle, height) grid of a radius map."""

    def __init__(self, rm: RadiusMap):
        bt = _basis(rm.theta, np.radians(KNOT_DEG))
        by = _basis(rm.y, KNOT_MM)
        self.A = sparse.kron(by, bt).tocsr()                       # cells (row-major Y, T) x coefficients
        nt, ny = bt.shape[1], by.shape[1]
        self.P = sparse.kron(sparse.eye(ny), _penalty(nt, ORDER_THETA)) + \
            sparse.kron(_penalty(ny, ORDER_Y), sparse.eye(nt))
        self.shape = rm.r.shape

    def fit(self, r: np.ndarray, weights: np.ndarray) -> np.ndarray:
        w = np.where(np.isfinite(r), weights, 0.0).ravel()
        rr = np.nan_to_num(r).ravel()
        W = sparse.diags(w)
        lhs = self.A.T @ W @ self.A + PENALTY * w.mean() * self.P
        coef = spsolve(lhs.tocsc(), self.A.T @ (w * rr))
        return (self.A @ coef).reshape(self.shape)


def estimate_chest_wall(rm: RadiusMap, nipples_body: np.ndarray, coracoids_body: np.ndarray | None = None,
                        wall_model=None, method: str = "envelope_pspline") -> ChestWall:
    """Footprints of both breasts and the wall behind them. `nipples_body`, `coracoids_body`: [2, 3] left, right
    (body frame). Above the nipple a footprint stays medial of the coracoid plus AXILLA_MARGIN x the nipple
    distance (the arm starts there), below it within LATERAL_DEG of the front. `wall_model` (anything with
    `fit(r, weights) -> wall`, e.g. chest_model.PredictedWall) replaces the P-spline."""
    ref = float(np.nanmedian(rm.r))
    U, V = np.meshgrid(rm.theta * ref, rm.y)
    valid = np.isfinite(rm.r)
    n2n = float(np.linalg.norm(nipples_body[0] - nipples_body[1]))
    th, ny, _ = rm.polar(nipples_body)
    dist = [np.hypot(U - th[k] * ref, V - ny[k]) for k in range(2)]
    side = [U > 0, U < 0]                                       # left breast on the patient's left
    lateral = np.abs(U / ref) < np.radians(LATERAL_DEG)
    model = wall_model or _WallModel(rm)
    # a wall predicted from the whole skin leaves the arms at no lift: the axilla rule is for the envelope's wall only
    from_skin = getattr(model, "from_skin", False)
    reach = [(dist[k] < MAX_RADIUS * n2n) & side[k] & valid & lateral for k in range(2)]
    if coracoids_body is not None and not from_skin:
        x_skin = np.nan_to_num(rm.r) * np.sin(U / ref)
        for k in range(2):
            limit = abs(float(coracoids_body[k][0])) + AXILLA_MARGIN * n2n
            reach[k] &= (V < ny[k]) | (np.abs(x_skin) <= limit)
    weights = np.where((dist[0] < START_RADIUS * n2n) | (dist[1] < START_RADIUS * n2n), 0.0, 1.0)
    wall = model.fit(rm.r, weights)
    # skin standing out of the wall is not wall: anywhere for the P-spline (it follows the skin closely enough to
    # recover), only where a breast may be for a wall model (one stiff fit low at the side would shed the side)
    zone = (reach[0] | reach[1]) if wall_model is not None else True
    for _ in range(0 if from_skin else ROUNDS):
        new_w = np.where((rm.r - wall > OUTLIER_MM) & zone, OUTLIER_WEIGHT, 1.0)
        new_w = np.where((dist[0] < START_RADIUS * n2n) | (dist[1] < START_RADIUS * n2n), np.minimum(new_w, 1.0),
                         new_w)
        if np.array_equal(new_w, weights):
            break
        weights = new_w
        wall = model.fit(rm.r, weights)
    wall = np.where(valid, wall, np.nan)
    lift = np.where(valid, rm.r - wall, -np.inf)
    raised, _ = ndimage.label(lift > LIFT_MM)          # the whole raised skin, before the reach limits cut it
    regions = {}
    for k, name in enumerate(("left", "right")):
        row, col = rm.index(th[k], ny[k])
        labels, _ = ndimage.label((lift > LIFT_MM) & reach[k])
        lab = labels[row, col]
        if lab == 0:                                           # the nipple cell itself is not raised: nearest
            near = np.argwhere(labels > 0)
            if len(near):
                d = np.hypot(near[:, 0] - row, near[:, 1] - col)
                r0, c0 = near[np.argmin(d)]
                lab = labels[r0, c0] if d.min() * rm.dy < 0.1 * n2n else 0
        region = labels == lab
        if lab:         # the tops are those of the whole raised skin: a reach limit cutting a mound makes false ones
            region &= _nipple_basins(lift, np.isin(raised, np.unique(raised[region])), (row, col))
        regions[name] = ndimage.binary_fill_holes(region) & reach[k]
    return ChestWall(wall, regions, method)


def _saddles(height: np.ndarray, basins: np.ndarray, n: int) -> np.ndarray:
    """[n + 1, n + 1] the highest pass between each two touching basins (-inf where they do not touch)."""
    S = np.full((n + 1, n + 1), -np.inf)
    for axis in (0, 1):
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        a, b = basins[tuple(lo)], basins[tuple(hi)]
        h = np.minimum(height[tuple(lo)], height[tuple(hi)])
        m = (a != b) & (a > 0) & (b > 0)
        np.maximum.at(S, (a[m], b[m]), h[m])
        np.maximum.at(S, (b[m], a[m]), h[m])
    return S


def _nipple_basins(lift: np.ndarray, region: np.ndarray, nipple_cell: tuple[int, int]) -> np.ndarray:
    """A raised region less the raised parts with a top of their own (an arm stump, a filled flank or shoulder):
    the region is split at the saddles of its lift (watershed from the tops that stand SADDLE_MM over their
    saddles); the nipple's part keeps the parts joined to it by a pass at least MERGE_RATIO x the lower of the two
    tops (one mound with two tops) and loses the others."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed
    if SADDLE_MM <= 0:
        return region
    height = np.where(region, lift, 0.0)
    tops, n = ndimage.label(h_maxima(height, SADDLE_MM) & region)
    if n < 2:
        return region
    basins = watershed(-height, tops, mask=region)
    own = basins[nipple_cell]
    if own == 0:                                         # the nipple cell is not raised: the nearest part
        cells = np.argwhere(basins > 0)
        own = basins[tuple(cells[np.argmin(np.hypot(*(cells - np.asarray(nipple_cell)).T))])]
    peaks = np.r_[0.0, ndimage.maximum(height, basins, np.arange(1, n + 1))]
    passes = _saddles(height, basins, n)
    keep, grow = {int(own)}, [int(own)]
    while grow:
        k = grow.pop()
        for j in np.flatnonzero(passes[k] >= MERGE_RATIO * np.minimum(peaks[k], peaks)):
            if j not in keep:
                keep.add(int(j))
                grow.append(int(j))
    return np.isin(basins, sorted(keep))


def footprint_curve(rm: RadiusMap, region: np.ndarray) -> np.ndarray:
    """The footprint's outline as a closed curve on the skin, [N, 3] body frame (empty if no footprint)."""
    from skimage import measure
    if not region.any():
        return np.zeros((0, 3))
    padded = np.pad(region.astype(float), 1)
    contours = measure.find_contours(padded, 0.5)
    c = max(contours, key=len) - 1.0
    rows, cols = c[:, 0], c[:, 1]
    theta = np.interp(cols, np.arange(len(rm.theta)), rm.theta)
    y = np.interp(rows, np.arange(len(rm.y)), rm.y)
    rr, cc = rm.index(theta, y)
    r = rm.r[rr, cc]
    ok = np.isfinite(r)
    return rm.body_points(theta[ok], y[ok], r[ok])


def fold_point(rm: RadiusMap, curve: np.ndarray, nipple: np.ndarray, n2n: float) -> np.ndarray:
    """The inframammary fold below a nipple (body frame): the lowest outline point below it; where the breast hangs
    over its fold (air between the chest and the breast's underside on the rays between that point and the nipple),
    the crease instead, where the skin turns under the breast: the chest skin at the highest such ray. The outline
    there is the breast's lowest point, in front of and below the crease (bench: on Anny bodies with hanging
    breasts the straight distance came out 9-13 mm short)."""
    below = curve[(np.abs(curve[:, 0] - nipple[0]) < 0.06 * n2n) & (curve[:, 1] < nipple[1])]
    fold = below[np.argmin(below[:, 1])] if len(below) else curve[np.argmin(curve[:, 1])]
    if rm.gaps is None:
        return fold
    theta, y, _ = rm.polar(fold)
    lo, col = rm.index(theta, y)
    hi, _ = rm.index(theta, nipple[1])
    start = rm.gaps[lo:hi + 1, col, 0, 0]
    rows = np.flatnonzero(np.isfinite(start))
    if not len(rows):
        return fold
    k = rows.max()
    return rm.body_points(rm.theta[col], rm.y[lo + k], start[k])


def plane_wall(rm: RadiusMap, outline_body: np.ndarray) -> np.ndarray:
    """The naive baseline: the least-squares plane through a footprint's outline, as a radius map (where the
    rays meet it in front of the axis; NaN elsewhere)."""
    if len(outline_body) < 3:
        return np.full(rm.r.shape, np.nan)
    c = outline_body.mean(0)
    normal = np.linalg.svd(outline_body - c)[2][2]
    T, Y = np.meshgrid(rm.theta, rm.y)
    d = np.stack([np.sin(T), np.zeros_like(T), np.cos(T)], -1)
    o = np.stack([np.zeros_like(T), Y, np.full(T.shape, rm.axis_z)], -1)
    denom = d @ normal
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ((c - o) @ normal) / denom
    return np.where(np.abs(denom) > 1e-6, np.where(t > 0, t, np.nan), np.nan)


def footprint_region(rm: RadiusMap, curve_body: np.ndarray) -> np.ndarray:
    """The radius-map cells inside a closed curve on the skin (body frame), e.g. a footprint a user edited."""
    from skimage.draw import polygon2mask
    theta, y, _ = rm.polar(np.asarray(curve_body, float))
    rows = (y - rm.y[0]) / rm.dy
    cols = (theta - rm.theta[0]) / rm.dtheta
    return polygon2mask(rm.r.shape, np.c_[rows, cols]) & np.isfinite(rm.r)
