"""Compare a pipeline result with a synthetic video's ground truth (for tests and benches).

The SfM frame is tied to the truth by the camera centres (similarity, Umeyama), so the truth can be carried into
the output frame with no help from the landmarks: errors of landmarks, alignment, fit and metric scale all count
in `surface_error_mm` (the truth at its true size); `shape_error_mm` leaves the scale error out.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh

from BreastShapeModelLib.alignment import umeyama
from BreastShapeModelLib.landmarks import read_landmarks
from BreastShapeModelLib.surface_distance import point_to_mesh_distance

from .cameras import read_cameras_json
from .workspace import VideoWorkspace as W

BREAST_RADIUS_MM = 90.0


def breast_region(mesh: trimesh.Trimesh, landmarks: np.ndarray, radius: float = BREAST_RADIUS_MM) -> np.ndarray:
    """Front-facing truth vertices within `radius` mm of either nipple."""
    v = np.asarray(mesh.vertices)
    near = np.minimum(np.linalg.norm(v - landmarks[2], axis=1), np.linalg.norm(v - landmarks[3], axis=1)) < radius
    return v[near & (np.asarray(mesh.vertex_normals)[:, 2] > 0.0)]


def evaluate(out_dir: Path, truth_dir: Path) -> dict:
    out_dir, truth_dir = Path(out_dir), Path(truth_dir)
    frames = json.loads((out_dir / W.FRAMES).read_text())
    source = {f["image"]: f["source_frame"] for f in frames["frames"]}
    truth_cams = read_cameras_json(truth_dir / W.CAMERAS)
    cams = read_cameras_json(out_dir / W.CAMERAS)
    sfm_c = np.stack([c.center for c in cams])
    gt_c = np.stack([truth_cams[source[c.name]].center for c in cams])
    gt_to_sfm = umeyama(gt_c, sfm_c)
    cam_err = np.linalg.norm(gt_to_sfm.inverse().apply(sfm_c) - gt_c, axis=1)
    fit = json.loads((out_dir / W.FIT_REPORT).read_text())
    out_from_sfm = np.asarray(fit["output_from_sfm"])
    T = out_from_sfm @ gt_to_sfm.matrix()                     # truth (mm) -> output frame
    scale = float(np.cbrt(np.linalg.det(T[:3, :3])))
    mesh_gt = trimesh.load(truth_dir / "mesh.ply", process=False)
    lms_gt = read_landmarks(truth_dir / "landmarks.txt")
    region = breast_region(mesh_gt, lms_gt)
    rec = trimesh.load(out_dir / W.RECONSTRUCTION, process=False)
    # metric: the truth keeps its true size (rotation and translation of T only, matched at the region's centre),
    # so a wrong output scale shows up as surface error; shape: the truth scaled like the output (scale-free)
    R = T[:3, :3] / scale
    centre = region.mean(0)
    shape_pts = region @ T[:3, :3].T + T[:3, 3]
    metric_pts = (region - centre) @ R.T + (centre @ T[:3, :3].T + T[:3, 3])
    metric = point_to_mesh_distance(metric_pts, rec)
    shape = point_to_mesh_distance(shape_pts, rec)
    to_out = lambda p: np.asarray(p) @ T[:3, :3].T + T[:3, 3]      # noqa: E731
    units = fit.get("units", "mm")
    mm = 1.0 if units == "mm" else None
    lm_out = to_out(lms_gt)
    anchors = np.asarray(fit["anchors"])
    n2n_true = float(np.linalg.norm(lms_gt[2] - lms_gt[3]))
    written = out_dir / (W.LANDMARKS + ".csv")        # the landmarks the run used (clicked, or found), output frame
    landmarks = read_landmarks(written) if written.exists() and mm else None
    return {
        "cameras_registered": len(cams), "camera_centre_error_mm": float(cam_err.mean()),
        "scale_error_pct": 100 * (scale - 1) if mm else None,
        "surface_error_mm": {"mean": float(metric.mean()), "p95": float(np.percentile(metric, 95)),
                             "median": float(np.median(metric))} if mm else None,
        "shape_error_mm": {"mean": float(shape.mean()), "p95": float(np.percentile(shape, 95))},
        "anchor_error_mm": np.linalg.norm(anchors - lm_out, axis=1).round(2).tolist() if mm else None,
        "landmark_error_mm": None if landmarks is None else
        np.linalg.norm(landmarks - lm_out, axis=1).round(2).tolist(),
        "nipple_to_nipple_true_mm": n2n_true, "region_points": int(len(region)),
    }
