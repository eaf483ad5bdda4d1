"""Landmarks without clicks, for a video (the 3D route): find the torso in the SfM cloud, fit the model without
landmarks, and project its fitted anchors into the landmark frame.

The camera arc says where the subject stands: at the point nearest every optical axis, upright along the cameras'
mean up vector, facing the middle of the arc. The cloud is cut to a box round that point (background and floor
go), and the model's mean surface, its front only (a video sees the front), is matched onto the cut cloud by
trimmed similarity ICP from a few starts around that pose (`auto_align`'s ICP). The model is then fitted without
landmarks from the best match, with the fit-driven pruning of the video fit, and its six fitted anchors are the
proposed landmarks: in 3D in the SfM frame, and as pixels on the frame, where the user may drag them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from BreastShapeModelLib.alignment import Similarity
from BreastShapeModelLib.auto_align import MAX_COST, rotation_angle, similarity_icp
from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.found_landmarks import CONFIDENT, FOUND_BY, support_confidence
from BreastShapeModelLib.landmarks import LANDMARK_NAMES

from .cameras import Camera, Scene
from .nipples import MIN_VIEWS
from .sfm import orbit_centre

BOX = (0.6, 0.6, 0.5)             # the subject's box: half sizes (left-right, up-down, depth) x the camera distance
FRONT_NZ = 0.2                     # mean-surface points whose normal faces forward more than this: what a video sees
YAWS_DEG = (-30.0, 0.0, 30.0)      # ICP starts round the camera arc's pose ...
SCALES = (0.8, 1.0, 1.25)          # ... and round the scale of the cut cloud's spread
SCAN_SAMPLE, MODEL_SAMPLE = 4000, 1500
DRIFT_DEG = 35.0                   # the match turned this far from the camera arc's pose: unsure


@dataclass
class TorsoMatch:
    to_model: Similarity              # SfM frame -> model space
    cost_mm: float                    # trimmed distance of the mean torso's front to the cloud
    drift_deg: float                  # how far the match turned from the camera arc's pose
    inside: np.ndarray                # mask of the cloud's points in the subject's box

    def report(self) -> dict:
        return {"method": "camera-arc pose, mean-surface ICP (front), fit without landmarks",
                "cost_mm": round(self.cost_mm, 2), "drift_deg": round(self.drift_deg, 1),
                "box_points": int(self.inside.sum())}


def arc_pose(cams: list[Camera]) -> tuple[np.ndarray, np.ndarray, float]:
    """(centre, rotation world -> body with rows left, up, forward, median camera distance) from the camera arc."""
    centre = orbit_centre(cams)
    up = -np.mean([c.R[1] for c in cams], axis=0)               # image y points down
    up /= np.linalg.norm(up)
    forward = np.mean([c.center for c in cams], axis=0) - centre
    forward -= (forward @ up) * up
    if np.linalg.norm(forward) < 1e-9:
        raise UserError("the cameras do not circle the subject (no arc to face): record the video moving round the "
                        "torso, or place the landmarks")
    forward /= np.linalg.norm(forward)
    left = np.cross(up, forward)                                  # the model frame: x = y cross z
    distance = float(np.median([np.linalg.norm(c.center - centre) for c in cams]))
    return centre, np.stack([left, up, forward]), distance


def subject_points(points: np.ndarray, centre: np.ndarray, rot: np.ndarray, distance: float) -> np.ndarray:
    """Mask of the cloud inside the subject's box round the orbit centre."""
    body = (np.asarray(points, float) - centre) @ rot.T
    return np.all(np.abs(body) < np.asarray(BOX) * distance, axis=1)


def front_of_mean(model, count: int = 8000) -> np.ndarray:
    mesh = model.mesh(model.mean_code, 96)
    pts, face = trimesh.sample.sample_surface(mesh, count, seed=0)
    return pts[mesh.face_normals[face][:, 2] > FRONT_NZ]


def match_torso(points: np.ndarray, front: np.ndarray, rot: np.ndarray, seed: int = 0):
    """Trimmed similarity ICP of the mean torso's front onto the cut cloud from the starts round the arc's pose:
    (SfM -> model similarity, cost in model units, drift from the arc's pose in degrees)."""
    rng = np.random.default_rng(seed)
    scan = points[rng.choice(len(points), min(SCAN_SAMPLE, len(points)), replace=False)]
    model_pts = front[rng.choice(len(front), min(MODEL_SAMPLE, len(front)), replace=False)]
    cm = model_pts.mean(0)
    spread = np.sqrt(((model_pts - cm) ** 2).sum(1).mean()) / np.sqrt(((scan - scan.mean(0)) ** 2).sum(1).mean())
    best = None
    for yaw in YAWS_DEG:
        r = Rotation.from_euler("y", yaw, degrees=True).as_matrix() @ rot
        for f in SCALES:
            s = spread * f
            t, cost = similarity_icp(scan, model_pts, Similarity(s, r, cm - s * r @ scan.mean(0)))
            if best is None or cost < best[1]:
                best = (t, cost)
    return best[0], best[1], rotation_angle(best[0].rotation, rot)


def find_torso_in_scene(scene: Scene, model, progress=None) -> TorsoMatch:
    """Where the torso is in the SfM cloud (pose, scale, position), or 'no torso found'."""
    if len(scene.cameras) < 3:
        raise UserError(f"need at least 3 registered frames to find the torso, got {len(scene.cameras)}")
    centre, rot, distance = arc_pose(scene.cameras)
    inside = subject_points(scene.points, centre, rot, distance)
    if inside.sum() < 200:
        raise UserError(f"no torso found: only {int(inside.sum())} SfM points near the centre of the camera arc "
                        f"(need 200); film the torso from 0.5-1.5 m, moving round it, or give a landmark file")
    to_model, cost, drift = match_torso(scene.points[inside], front_of_mean(model), rot)
    cost_mm = cost * model.mm_per_unit
    if cost > MAX_COST:
        raise UserError(f"no torso found: the model's mean torso matches the video's cloud no closer than "
                        f"{cost_mm:.0f} mm (torsos give 5-8 mm); give a landmark file if it is a torso")
    if progress is not None:
        progress.log(f"no landmarks: torso found in the cloud ({cost_mm:.1f} mm from the mean torso's front, "
                     f"{drift:.0f} deg from the camera arc's pose)")
    return TorsoMatch(to_model, cost_mm, drift, inside)


def proposal(cam: Camera, anchors_sfm: np.ndarray, points_sfm: np.ndarray, mm_per_sfm_unit: float,
             drift_deg: float = 0.0, nipples=None) -> dict:
    """The landmarks found (fitted anchors; nipples found on the skin, `nipples.NippleFind`, where given) on the
    frame of `cam`: pixels, a confidence per landmark (how close the nearest SfM point lies: an anchor out in the
    model's fill-in is a guess; a nipple by how many frames agreed on it; zero outside the frame) and the reasons
    to let the user confirm, in the landmark-file layout (`read_landmarks_2d` reads it)."""
    pixels, depth = cam.project(anchors_sfm)
    gap = cKDTree(points_sfm).query(anchors_sfm)[0] * mm_per_sfm_unit
    seen = (depth > 0) & (pixels[:, 0] >= 0) & (pixels[:, 0] <= cam.width - 1) & (pixels[:, 1] >= 0) & \
        (pixels[:, 1] <= cam.height - 1)
    conf = np.where(seen, support_confidence(gap), 0.0)
    found_by = [f"{how}, projected" for how in FOUND_BY]
    for i, n in zip((2, 3), nipples or ()):
        if n.found:
            conf[i] = float(seen[i]) * min(1.0, n.views / (2.0 * MIN_VIEWS))
            found_by[i] = f"the nipple on the skin, {n.views} of {n.frames} frames agreeing"
        else:
            conf[i] = min(conf[i], 0.3)
            found_by[i] = "the landmark-free fit's anchor (not found on the skin), projected"
    unsure = []
    if drift_deg > DRIFT_DEG:
        unsure.append(f"the torso's match turned {drift_deg:.0f} deg from the camera arc's pose")
    for i in np.flatnonzero(conf < CONFIDENT):
        why = "outside the frame" if not seen[i] else f"{gap[i]:.0f} mm from the nearest SfM point"
        unsure.append(f"{LANDMARK_NAMES[i]}: confidence {conf[i]:.2f} ({why})")
    pixels = np.clip(pixels, 0, [cam.width - 1, cam.height - 1])
    return {"image": cam.name, "points": pixels.round(2).tolist(), "names": list(LANDMARK_NAMES),
            "confidence": conf.round(3).tolist(), "found_by": found_by,
            "unsure": unsure, "confident": not unsure}
