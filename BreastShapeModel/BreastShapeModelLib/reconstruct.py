"""Fit the model to a point cloud or scan: normalise, align by landmarks, optimise a code, mesh, undo.

Points (any units, any frame) are normalised into [-1, 1]^3 (bounding-box centre, padding 0.1); given six
landmarks, the normalised landmarks are similarity-aligned (Umeyama) to the model's average anchors and the
cloud follows. The fitted surface is mapped back to the input frame, or, with `metrical`, kept in the model
frame in millimetres (average scale, or exact from a measured nipple-to-nipple distance).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from .alignment import Similarity, umeyama
from .errors import UserError
from .fitting import FitResult, FitSettings, fit_code
from .progress import Progress
from .self_check import self_check
from .shape_model import ShapeModel
from .surface_distance import point_to_mesh_distance

PADDING = 0.1
SCALE_DISAGREEMENT_PCT = 3.0      # landmark vs fitted-anchor nipple distance: beyond this the fit is suspect


def normalisation(points: np.ndarray, padding: float = PADDING) -> Similarity:
    """Bounding-box centre to 0, longest side to 2 * (1 - padding)."""
    lo, hi = points.min(0), points.max(0)
    extent = float((hi - lo).max())
    if not np.isfinite(extent) or extent <= 0:
        raise UserError("the point cloud has no extent (all points coincide)")
    s = 2.0 * (1.0 - padding) / extent
    return Similarity(s, np.eye(3), -s * (lo + hi) / 2)


def compose(a: Similarity, b: Similarity) -> Similarity:
    """x -> a(b(x))."""
    return Similarity(a.scale * b.scale, a.rotation @ b.rotation, a.scale * a.rotation @ b.translation + a.translation)


@dataclass
class Reconstruction:
    mesh: trimesh.Trimesh                 # in the output frame
    anchors: np.ndarray                   # [6, 3] in the output frame
    code: np.ndarray
    to_model: Similarity                  # input frame -> model space
    output_frame: str                     # "input" or "metric"
    scale_mm_per_unit: float
    scale_source: str
    loss: list = field(default_factory=list)
    fit_seconds: float = 0.0
    residuals: dict = field(default_factory=dict)
    support: np.ndarray | None = None     # per output vertex: distance to the nearest input point (output units)
    scale_check: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    self_check: dict = field(default_factory=dict)
    observed: np.ndarray | None = None    # per output vertex: the distance within which it counts as observed


SPACING_NEIGHBOUR = 8        # local sampling density: distance from an input point to its 8th neighbour
OBSERVED_SPACINGS = 2.0      # a vertex is observed when an input point lies within 2 local spacings of it


def observed_distance(points: np.ndarray, vertices: np.ndarray, tree=None) -> tuple[np.ndarray, np.ndarray]:
    """(support, observed) per vertex: the distance to the nearest input point, and the distance within which
    that counts as observed, from the local sampling density there (so a sparsely but truly sampled region is not
    painted as filled in by the model); never below the cloud's median spacing."""
    tree = tree or cKDTree(points)
    support, nearest = tree.query(vertices)
    k = min(SPACING_NEIGHBOUR + 1, len(points))
    spacing = tree.query(points, k=k)[0][:, -1] if k > 1 else np.zeros(len(points))
    return support, np.maximum(OBSERVED_SPACINGS * spacing[nearest], np.median(spacing))


@dataclass
class RefineSettings:
    """Fit-driven pruning: keep points within `threshold` model units of the fitted surface, refit `iterations`
    from the fitted code, `rounds` times. The refit continues the schedules from `start_iteration` (default: where
    the fit ended, i.e. the smallest learning rate and the tightest cutoff). Restarting mid-schedule (iteration
    500) gives a fresh Adam a learning rate 8x larger under the 2 mm cutoff: on a generator video it threw one
    breast off the surface (3.5 mm mean error instead of 0.95); measured in the issue-18 notes."""
    threshold: float = 0.04
    iterations: int = 300
    rounds: int = 1
    start_iteration: int | None = None


def reconstruct(model: ShapeModel, points: np.ndarray, landmarks: np.ndarray | None = None,
                settings: FitSettings | None = None, resolution: int = 256, metrical: bool = False,
                nipple_to_nipple_mm: float | None = None, on_iteration=None, on_grid=None,
                chunk_size: int | None = None, meshing: str = "narrow_band", landmark_weights=None,
                refine: RefineSettings | None = None, to_model: Similarity | None = None) -> Reconstruction:
    """Fit `points` (with six `landmarks`, optionally weighted) and mesh the result; with `refine`, prune the
    points that the fitted surface does not explain and refit (so clutter and far-off points stop pulling).
    `to_model` (input -> model space, e.g. from `auto_align`) replaces the alignment from the landmarks; landmarks
    given with it are only anchor targets (and the scale's nipples)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 10:
        raise UserError(f"need at least 10 points with x, y, z, got {pts.shape}")
    if not np.isfinite(pts).all():
        raise UserError("the point cloud contains NaN or infinite coordinates")
    norm = normalisation(pts)
    if to_model is None and landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float64)
        to_model = compose(umeyama(norm.apply(lm), model.average_anchors, weights=landmark_weights), norm)
    to_model = to_model or norm
    model_pts = to_model.apply(pts)
    model_lms = None if landmarks is None else to_model.apply(landmarks)
    s = settings or FitSettings()
    fit = fit_code(model.network, model_pts, model_lms, s, on_iteration, landmark_weights=landmark_weights)
    kept = np.ones(len(model_pts), bool)
    for r in range(refine.rounds if refine else 0):
        dist = np.abs(np.asarray(model.sdf(model_pts, fit.code), np.float64).ravel())
        kept = dist <= refine.threshold
        if kept.sum() < 100:
            break
        refit = FitSettings(**{**vars(s), "iterations": refine.iterations})
        on_refit = None if on_iteration is None else \
            (lambda it, loss, r=r: on_iteration(s.iterations + r * refine.iterations + it, loss))
        more = fit_code(model.network, model_pts[kept], model_lms, refit, on_refit, init_code=fit.code,
                        landmark_weights=landmark_weights,
                        start_iteration=(s.iterations + r * refine.iterations) if refine.start_iteration is None
                        else refine.start_iteration)
        fit = FitResult(more.code, more.anchors, fit.loss + more.loss, fit.seconds + more.seconds)
    mesh_kw = {"chunk_size": chunk_size} if chunk_size else {}
    mesh = model.mesh(fit.code, resolution, method=meshing, progress=on_grid, **mesh_kw)
    anchors = fit.anchors
    check, warnings = {}, []
    if metrical:
        scale, source, check, warnings = metric_scale(model, anchors, model_lms, nipple_to_nipple_mm,
                                                      landmark_weights)
        out = Similarity(scale, np.eye(3), np.zeros(3))
        frame = "metric"
    else:
        out = to_model.inverse()
        scale, source, frame = model.mm_per_unit, "average", "input"
    mesh = trimesh.Trimesh(out.apply(mesh.vertices), mesh.faces, process=False)
    anchors_out = out.apply(anchors)
    # residuals: input points to the fitted surface, in input units and mm (model units x mm scale)
    with_pts = out.apply(model_pts)
    dist = point_to_mesh_distance(with_pts[kept], mesh)          # the points the final fit used
    res = {"mean": float(dist.mean()), "median": float(np.median(dist)), "p95": float(np.percentile(dist, 95)),
           "units": "mm" if frame == "metric" else "input"}
    mm_factor = 1.0 if frame == "metric" else model.mm_per_unit * to_model.scale
    res["mean_mm"], res["median_mm"], res["p95_mm"] = (res["mean"] * mm_factor, res["median"] * mm_factor,
                                                       res["p95"] * mm_factor)
    support, observed = observed_distance(with_pts, mesh.vertices)
    lms_out = None if model_lms is None else out.apply(model_lms)
    checked = self_check(mesh, with_pts, lms_out, mm_factor, None if model_lms is None else model_lms[:, 0],
                         code_sd=model.code_sd(fit.code), residual_p95_mm=res["p95_mm"])
    res["points_used"] = int(kept.sum())
    return Reconstruction(mesh, anchors_out, fit.code, to_model, frame, scale, source, fit.loss, fit.seconds, res,
                          support, check, warnings, checked, observed)


def reconstruct_with_progress(progress: Progress | None, label: str, total: int, *args, mesh_stage: bool = True,
                              **kwargs):
    """`reconstruct.reconstruct` with a fit bar, then (not nested inside it) a mesh bar."""
    if progress is None:
        return reconstruct(*args, **kwargs)
    with progress.sequence() as begin:
        fit_update = begin(label, total, "it")
        state = {}

        def on_iteration(it, loss):
            if it % 10 == 0 or it == total:
                fit_update(it, f"loss {loss:.5f}")

        def on_grid(fraction, message):
            if "mesh" not in state:
                state["mesh"] = begin("mesh", 100, "%")
            state["mesh"](round(100 * fraction), message)
        return reconstruct(*args, on_iteration=on_iteration, on_grid=on_grid if mesh_stage else None, **kwargs)


def metric_scale(model: ShapeModel, anchors: np.ndarray, landmarks: np.ndarray | None,
                 nipple_to_nipple_mm: float | None, landmark_weights=None) -> tuple[float, str, dict, list[str]]:
    """Millimetres per model unit -> (scale, source, both candidate scales, warnings).

    With a measured nipple distance, the scale comes from what the user marked: the given (or triangulated)
    nipple landmarks; the model's fitted nipple anchors only when there are no landmarks. The fitted anchors'
    scale is reported beside it, and a disagreement beyond SCALE_DISAGREEMENT_PCT is a warning: the model did
    not reproduce the subject's nipples (foreign anatomy, a wrong landmark). A nipple landmark whose weight is
    below 0.5 (doubtful evidence) is replaced by the fitted anchor."""
    if nipple_to_nipple_mm is None:
        return model.mm_per_unit, "average", {}, []
    d_anchor = float(np.linalg.norm(anchors[2] - anchors[3]))
    check = {"nipple_to_nipple_mm": float(nipple_to_nipple_mm), "from_anchors": nipple_to_nipple_mm / d_anchor}
    if landmarks is None:
        return check["from_anchors"], "nipple_to_nipple (fitted anchors)", check, []
    lms = np.array(landmarks, dtype=np.float64)
    source = "nipple_to_nipple (landmarks)"
    if landmark_weights is not None:
        doubtful = [i for i in (2, 3) if landmark_weights[i] < 0.5]
        for i in doubtful:
            lms[i] = anchors[i]
        if doubtful:
            source += "; " + " and ".join(("left", "right")[i - 2] for i in doubtful) + " nipple from the fit"
    d_lm = float(np.linalg.norm(lms[2] - lms[3]))
    check["from_landmarks"] = nipple_to_nipple_mm / d_lm
    check["disagreement_pct"] = 100.0 * (check["from_anchors"] / check["from_landmarks"] - 1.0)
    warnings = []
    if abs(check["disagreement_pct"]) > SCALE_DISAGREEMENT_PCT:
        warnings.append(f"the fitted model's nipples are {abs(check['disagreement_pct']):.1f} % "
                        f"{'closer together' if check['disagreement_pct'] > 0 else 'farther apart'} than the "
                        f"landmarks: the model did not reproduce this subject's nipples; the scale comes from the "
                        f"landmarks, check the surface near the nipples")
    return check["from_landmarks"], source, check, warnings
