"""Landmark-free scans: the torso found by its shape in any orientation, position and units; non-torsos refused."""
import json

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from BreastShapeModelLib.auto_align import auto_align, proper_axis_rotations
from BreastShapeModelLib.found_landmarks import symmetric_landmarks
from BreastShapeModelLib.landmarks import read_landmarks

LIB = "BreastShapeModelLib"


def test_the_24_axis_rotations():
    rots = proper_axis_rotations()
    assert len(rots) == 24 and np.allclose([np.linalg.det(r) for r in rots], 1.0)
    assert len({tuple(r.ravel()) for r in rots}) == 24


def test_the_mean_surface_is_found_in_any_pose(bundled_model):
    m = bundled_model
    surface, _ = trimesh.sample.sample_surface(m.mesh(m.mean_code, 96), 6000, seed=0)
    for seed in range(3):
        rot = Rotation.random(random_state=seed).as_matrix()
        scale, shift = 300.0 * (seed + 1), np.array([50.0, -900.0, 20.0]) * seed
        found = auto_align(surface @ rot.T * scale + shift, surface[::3])
        assert not found.ambiguous
        back = found.to_model
        angle = np.degrees(Rotation.from_matrix(back.rotation @ rot).magnitude())
        assert angle < 3.0 and back.scale * scale == pytest.approx(1.0, rel=0.02)


def _torso_files(tmp_path, rotation, shift):
    from BreastShapeModelLib import synth
    t = synth.generate(0, 777_004, 2.5)
    pts, _ = trimesh.sample.sample_surface(t.mesh, 20000, seed=0)
    np.savetxt(tmp_path / "scan.xyz", pts @ rotation.T + shift)
    return t


def _breast_error(rec_dir, t, rotation, shift):
    from BreastShapeModelLib.surface_distance import point_to_mesh_distance
    mesh = trimesh.load(rec_dir / "reconstruction.ply", process=False)
    mesh.vertices = (np.asarray(mesh.vertices) - shift) @ rotation      # back into the truth's frame
    v, nz = np.asarray(t.mesh.vertices), np.asarray(t.mesh.vertex_normals)[:, 2]
    near = np.minimum(*(np.linalg.norm(v - t.landmarks[i], axis=1) for i in (2, 3)))
    return float(point_to_mesh_distance(v[(near < 90) & (nz > 0)], mesh).mean())


def test_reconstruct_without_landmarks_finds_the_torso(bundled_model, tmp_path, cli):
    rotation = Rotation.from_euler("xyz", [100, -35, 160], degrees=True).as_matrix()
    shift = np.array([400.0, -1200.0, 75.0])
    t = _torso_files(tmp_path, rotation, shift)
    fast = ["--iterations", "400", "--voxel_resolution", "96", "--progress", "none"]
    r = cli(LIB, "reconstruct", tmp_path / "scan.xyz", "--output_dir", tmp_path / "auto", *fast)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "auto" / "fit_report.json").read_text())
    assert report["auto_alignment"]["ambiguous"] is False and report["auto_alignment"]["cost_mm"] < 10
    assert report["landmarks"].startswith("found automatically")
    auto = _breast_error(tmp_path / "auto", t, rotation, shift)
    # the landmarks it found (the fitted anchors made symmetric, in the scan's frame) sit near the true ones, the
    # sternal notch and belly button on the midline (the truth's x = 0; its belly button is up to 8 mm off it)
    found = (read_landmarks(tmp_path / "auto" / "landmarks_found.mrk.json") - shift) @ rotation
    anchors = (read_landmarks(tmp_path / "auto" / "reconstruction_anchors.mrk.json") - shift) @ rotation
    assert np.median(np.linalg.norm(found - t.landmarks, axis=1)) < 25.0
    assert abs(found[0, 0]) < 4.0 and abs(found[1, 0]) < 10.0, found[:2]
    assert np.allclose(found[2:4], anchors[2:4], atol=1e-3)                      # the nipples are left alone
    assert report["symmetry_plane"]["mirror_gap"] < 5.0
    # ... and are the landmarks measured beside the surface (the same points here: the output is the scan's frame)
    assert np.allclose(read_landmarks(tmp_path / "auto" / "landmarks_found.mrk.json"),
                       read_landmarks(tmp_path / "auto" / "reconstruction_landmarks.mrk.json"), atol=1e-3)
    assert len(report["landmarks_found"]["confidence"]) == 6 and report["landmarks_found"]["frame"] == "input"
    # taking the rotated scan as it is (the old behaviour) cannot fit it
    r = cli(LIB, "reconstruct", tmp_path / "scan.xyz", "--output_dir", tmp_path / "as_is", "--orientation", "as_is",
            *fast)
    as_is = _breast_error(tmp_path / "as_is", t, rotation, shift)
    assert auto < 1.5 and as_is > 3 * auto, (auto, as_is)


def test_found_landmarks_are_made_symmetric_about_the_surfaces_plane_of_symmetry():
    """An ellipsoid body turned and moved: notch and navel end on its mid-plane, the coracoids mirror images (their
    mean), every point on the surface, the nipples untouched; the plane is found from the surface, not the frame."""
    body = trimesh.creation.icosphere(subdivisions=5, radius=1.0)
    body.apply_scale([150.0, 250.0, 100.0])
    rotation = Rotation.from_euler("xyz", [30, -60, 110], degrees=True).as_matrix()
    shift = np.array([500.0, -20.0, 900.0])

    def front(x, y):                                  # the ellipsoid's front surface point at (x, y)
        return np.array([x, y, 100.0 * np.sqrt(max(1 - (x / 150) ** 2 - (y / 250) ** 2, 0.0))])

    lms = np.stack([front(25, 200), front(-15, -200), front(80, 10), front(-70, 0), front(110, 100),
                    front(-90, 90)])
    moved = body.copy()
    moved.apply_transform(np.block([[rotation, shift[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]]))
    found, plane = symmetric_landmarks(moved, lms @ rotation.T + shift)
    found = (found - shift) @ rotation
    assert abs(abs(np.asarray(plane["normal"]) @ rotation[:, 0]) - 1) < 1e-3, plane
    assert abs(found[0, 0]) < 1.0 and abs(found[1, 0]) < 1.0 and found[0, 1] > 150 and found[1, 1] < -150
    assert np.allclose(found[2:4], lms[2:4])
    assert abs(found[4, 0] + found[5, 0]) < 1.5 and abs(found[4, 1] - found[5, 1]) < 1.5
    assert abs(found[4, 0] - 100) < 4 and abs(found[4, 1] - 95) < 4, found[4:]
    on = trimesh.proximity.closest_point(body, found)[1]
    assert on.max() < 1.0


def test_an_ambiguous_orientation_is_fitted_both_ways_and_the_closer_fit_kept():
    from types import SimpleNamespace
    from BreastShapeModelLib.alignment import Similarity
    from BreastShapeModelLib.api import fit_found_torso
    from BreastShapeModelLib.auto_align import AutoAlignment
    a = Similarity(1.0, np.eye(3), np.zeros(3))
    b = Similarity(1.0, Rotation.from_euler("z", 180, degrees=True).as_matrix(), np.zeros(3))
    residual = {id(a): 2.0, id(b): 0.5}
    fits = []

    def fit(pose):
        fits.append(pose)
        return SimpleNamespace(residuals={"mean": residual[id(pose)]}, pose=pose)

    found = AutoAlignment(a, 0.030, 0.033, candidates=[(0.030, a), (0.033, b)])
    assert found.ambiguous
    rec, still, tried = fit_found_torso(fit, found)
    assert rec.pose is b and not still and [t["residual_mean"] for t in tried] == [2.0, 0.5]
    residual[id(b)] = 1.9                                  # the fits cannot tell them apart either: still ambiguous
    rec, still, _ = fit_found_torso(fit, found)
    assert rec.pose is b and still
    fits.clear()
    rec, still, tried = fit_found_torso(fit, AutoAlignment(a, 0.030, 0.060, candidates=[(0.030, a), (0.060, b)]))
    assert fits == [a] and rec.pose is a and not still and tried == []


def test_the_best_pose_is_polished_out_of_a_tilted_icp_minimum(bundled_model):
    """ICP of the mean torso started 30 degrees off stops short; polishing from turned starts reaches the pose."""
    from BreastShapeModelLib.alignment import Similarity
    from BreastShapeModelLib.auto_align import polish_pose, rotation_angle, similarity_icp
    mean_pts, _ = trimesh.sample.sample_surface(bundled_model.mesh(bundled_model.mean_code, 64), 3000, seed=0)
    scan = mean_pts[:1500] * 2.0 + np.array([1.0, -2.0, 0.5])            # the torso, in other units and place
    tilt = Rotation.from_euler("zx", [40, 20], degrees=True).as_matrix()
    start = Similarity(0.5, tilt, -0.5 * tilt @ scan.mean(0) + mean_pts.mean(0))
    t0, c0 = similarity_icp(scan, mean_pts[1500:], start)
    t1, c1 = polish_pose(scan, mean_pts[1500:], t0, c0)
    assert rotation_angle(t0.rotation, np.eye(3)) > 10.0                   # plain ICP stopped short
    assert c1 < c0 and rotation_angle(t1.rotation, np.eye(3)) < 5.0, (rotation_angle(t0.rotation, np.eye(3)), c0, c1)


def test_a_box_is_not_a_torso(tmp_path, cli):
    pts, _ = trimesh.sample.sample_surface(trimesh.creation.box((400, 300, 200)), 20000, seed=0)
    np.savetxt(tmp_path / "box.xyz", pts)
    r = cli(LIB, "reconstruct", tmp_path / "box.xyz", "--output_dir", tmp_path / "out", "--progress", "none")
    assert r.returncode == 2 and "no torso found" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "reconstruction.ply").exists()


def test_a_metric_fit_without_landmarks_writes_the_found_ones_in_the_scans_frame(bundled_model, tmp_path, cli):
    """With the nipple distance the result is in millimetres in the model's frame; the landmarks found still come
    back in the scan's own frame, so they can be checked on it and given as --landmarks for it."""
    rotation = Rotation.from_euler("xyz", [-70, 10, 40], degrees=True).as_matrix()
    shift = np.array([-300.0, 800.0, 40.0])
    t = _torso_files(tmp_path, rotation, shift)
    n2n = float(np.linalg.norm(t.landmarks[2] - t.landmarks[3]))
    r = cli(LIB, "reconstruct", tmp_path / "scan.xyz", "--output_dir", tmp_path / "metric", "--nipple_to_nipple_dist",
            f"{n2n:.2f}", "--iterations", "150", "--voxel_resolution", "48", "--progress", "none")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "metric" / "fit_report.json").read_text())
    assert report["output_frame"] == "metric" and report["landmarks_found"]["file"] == "landmarks_found.mrk.json"
    in_scan = read_landmarks(tmp_path / "metric" / "landmarks_found.mrk.json")
    assert np.median(np.linalg.norm((in_scan - shift) @ rotation - t.landmarks, axis=1)) < 30.0
    anchors = read_landmarks(tmp_path / "metric" / "reconstruction_anchors.mrk.json")     # model frame, mm
    assert np.median(np.linalg.norm(anchors - (t.landmarks @ rotation.T + shift), axis=1)) > 100.0
    # the found file is a landmark file for the scan
    r = cli(LIB, "reconstruct", tmp_path / "scan.xyz", "--output_dir", tmp_path / "again", "--landmarks",
            tmp_path / "metric" / "landmarks_found.mrk.json", "--iterations", "50", "--voxel_resolution", "32",
            "--progress", "none")
    assert r.returncode == 0, r.stderr
