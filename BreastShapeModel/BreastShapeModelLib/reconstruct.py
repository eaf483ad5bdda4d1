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
from .fitting import FitSettings, fit_code
from .shape_model import ShapeModel
from .surface_distance import point_to_mesh_distance

PADDING = 0.1


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


def reconstruct(model: ShapeModel, points: np.ndarray, landmarks: np.ndarray | None = None,
                settings: FitSettings | None = None, resolution: int = 256, metrical: bool = False,
                nipple_to_nipple_mm: float | None = None, on_iteration=None, on_grid=None,
                chunk_size: int | None = None, meshing: str = "narrow_band") -> Reconstruction:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 10:
        raise UserError(f"need at least 10 points with x, y, z, got {pts.shape}")
    if not np.isfinite(pts).all():
        raise UserError("the point cloud contains NaN or infinite coordinates")
    norm = normalisation(pts)
    to_model = norm
    if landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float64)
        to_model = compose(umeyama(norm.apply(lm), model.average_anchors), norm)
    model_pts = to_model.apply(pts)
    model_lms = None if landmarks is None else to_model.apply(landmarks)
    s = settings or FitSettings()
    fit = fit_code(model.network, model_pts, model_lms, s, on_iteration)
    mesh_kw = {"chunk_size": chunk_size} if chunk_size else {}
    mesh = model.mesh(fit.code, resolution, method=meshing, progress=on_grid, **mesh_kw)
    anchors = fit.anchors
    if metrical:
        if nipple_to_nipple_mm is not None:
            d = float(np.linalg.norm(anchors[2] - anchors[3]))
            scale, source = nipple_to_nipple_mm / d, "nipple_to_nipple"
        else:
            scale, source = model.mm_per_unit, "average"
        out = Similarity(scale, np.eye(3), np.zeros(3))
        frame = "metric"
    else:
        out = to_model.inverse()
        scale, source, frame = model.mm_per_unit, "average", "input"
    mesh = trimesh.Trimesh(out.apply(mesh.vertices), mesh.faces, process=False)
    anchors_out = out.apply(anchors)
    # residuals: input points to the fitted surface, in input units and mm (model units x mm scale)
    with_pts = out.apply(model_pts)
    dist = point_to_mesh_distance(with_pts, mesh)
    res = {"mean": float(dist.mean()), "median": float(np.median(dist)), "p95": float(np.percentile(dist, 95)),
           "units": "mm" if frame == "metric" else "input"}
    mm_factor = 1.0 if frame == "metric" else model.mm_per_unit * to_model.scale
    res["mean_mm"], res["median_mm"], res["p95_mm"] = (res["mean"] * mm_factor, res["median"] * mm_factor,
                                                       res["p95"] * mm_factor)
    support, _ = cKDTree(with_pts).query(mesh.vertices)
    return Reconstruction(mesh, anchors_out, fit.code, to_model, frame, scale, source, fit.loss, fit.seconds, res,
                          support)
