"""Landmark-free video: the torso found in an SfM-like cloud from the camera arc, and refused when there is none
(`run` without a landmark file on a synthetic video is tested in test_video_cli.py)."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

def _arc_cameras(target, radius=650.0, degrees=(-30, -15, 0, 15, 30)):
    """OpenCV cameras on a horizontal arc in front of `target` (the model frame: y up, z towards the cameras)."""
    from BreastVideoReconstructionLib.cameras import Camera
    K = np.array([[800.0, 0, 320], [0, 800.0, 180], [0, 0, 1]])
    cams = []
    for k, a in enumerate(np.radians(degrees)):
        c = target + radius * np.array([np.sin(a), 0.0, np.cos(a)])
        f = (target - c) / np.linalg.norm(target - c)
        x = np.cross(f, [0.0, 1.0, 0.0])
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(f, x), f])
        cams.append(Camera(f"{k:03d}.png", K, R, -R @ c, 640, 360))
    return cams


@pytest.fixture(scope="module")
def torso():
    from BreastShapeModelLib import synth
    return synth.generate(0, 777_009, 4.0)


def _scene(points, cams, seed=0):
    from BreastVideoReconstructionLib.cameras import Scene
    rng = np.random.default_rng(seed)
    pts = np.asarray(points, float) + rng.normal(0, 1.0, np.shape(points))
    return Scene(cams, pts, np.full((len(pts), 3), 128, np.uint8), None, {})


def test_torso_found_from_the_camera_arc_and_nothing_else(torso):
    """A torso's front (what a video sees) with clutter behind it: found, upright and facing the cameras, at its
    size; a ball or a wall in front of the same cameras: 'no torso found'."""
    from BreastShapeModelLib import ShapeModel
    from BreastShapeModelLib.auto_align import rotation_angle
    from BreastShapeModelLib.errors import UserError
    from BreastVideoReconstructionLib.propose import find_torso_in_scene
    model = ShapeModel.load()
    mesh = torso.mesh
    pts, face = trimesh.sample.sample_surface(mesh, 30000, seed=1)
    front = pts[mesh.face_normals[face][:, 2] > 0.1]
    centre = mesh.bounds.mean(0)
    rng = np.random.default_rng(2)
    wall = np.c_[rng.uniform(-900, 900, (3000, 2)), np.full(3000, -1200.0)] + [0, centre[1], 0]
    cams = _arc_cameras(centre)
    match = find_torso_in_scene(_scene(np.concatenate([front, wall]), cams), model)
    assert match.cost_mm < 9.0 and match.drift_deg < 15.0
    assert rotation_angle(match.to_model.rotation, np.eye(3)) < 10.0            # the torso is upright, facing +z
    assert match.to_model.scale * model.mm_per_unit == pytest.approx(1.0, rel=0.2)     # sizes differ by 10 %
    lms = match.to_model.apply(torso.landmarks)
    assert np.linalg.norm(lms - model.average_anchors, axis=1).mean() * model.mm_per_unit < 40.0
    ball = trimesh.creation.icosphere(4, radius=200.0)
    ball_pts = trimesh.sample.sample_surface(ball, 15000, seed=3)[0] + centre
    panel = np.c_[rng.uniform(-300, 300, (15000, 2)), np.zeros(15000)] + centre
    for name, cloud in (("ball", ball_pts[ball_pts[:, 2] > centre[2]]), ("wall", panel)):
        with pytest.raises(UserError, match="no torso found"):
            find_torso_in_scene(_scene(cloud, cams), model)
