"""Nipples found on the skin (nipples.py): the spot detector on a painted areola with a shading crescent, and
the RANSAC triangulation that ignores frames whose spot is elsewhere (the whole path on a synthetic video is in
test_video_cli.py::test_run_without_landmarks_matches_ground_truth)."""
from __future__ import annotations

import numpy as np

from test_propose import _arc_cameras


def _skin_with_areola(centre_px, ra, seed=0, shadow=True):
    """A BGR frame of mottled skin with a reddish areola (radius `ra` px) and a darker nipple at `centre_px`, and
    a grey shadow crescent at the areola's lower edge (what a nipple's bump casts under a light from above)."""
    rng = np.random.default_rng(seed)
    h, w = 360, 640
    img = np.array([120.0, 140.0, 200.0]) * (1 + rng.normal(0, 0.03, (h, w, 1)))
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(xx - centre_px[0], yy - centre_px[1]) / ra
    a = (np.clip((1.15 - d) / 0.3, 0, 1) * 0.55)[..., None]
    img = img * (1 - a) + a * img * np.array([0.36, 0.42, 0.62])
    img *= 1 - (np.clip((0.3 - d) / 0.1, 0, 1) * 0.25)[..., None]
    if shadow:
        crescent = (d > 0.5) & (d < 0.75) & (yy - centre_px[1] > 0.35 * ra)
        img[crescent] *= 0.75
    return np.clip(img, 0, 255).astype(np.uint8)


def test_the_spot_is_the_areolas_centre_not_its_shadow():
    from BreastVideoReconstructionLib.cameras import Camera
    from BreastVideoReconstructionLib.nipples import AREOLA_MM, nipple_spot
    cam = Camera("000.png", np.array([[800.0, 0, 320], [0, 800.0, 180], [0, 0, 1]]), np.eye(3), np.zeros(3), 640, 360)
    point = np.array([0.0, 0.0, 600.0])                       # mm, projects to (320, 180)
    ra = AREOLA_MM * 800 / 600
    centre = np.array([329.0, 174.0])                         # the true nipple, 11 px from where the guess projects
    got, _ = nipple_spot(_skin_with_areola(centre, ra), cam, point, 1.0)
    assert np.linalg.norm(got - centre) < 3.0, got
    assert nipple_spot(_skin_with_areola(centre, ra), cam, np.array([0.0, 0.0, -600.0]), 1.0) is None  # behind
    assert nipple_spot(_skin_with_areola(centre, ra), cam, np.array([230.0, 0.0, 600.0]), 1.0) is None  # off the edge


def test_ransac_triangulation_ignores_frames_that_saw_something_else():
    from BreastVideoReconstructionLib.nipples import ransac_triangulate
    X = np.array([10.0, -20.0, 5.0])
    cams = _arc_cameras(np.zeros(3), degrees=range(-40, 41, 10))
    pixels = [c.project(X[None])[0][0] for c in cams]
    for k in (1, 4, 7):                                       # a fold or a shadow won in these frames
        pixels[k] = pixels[k] + np.array([35.0, -20.0])
    got, agree, worst = ransac_triangulate(cams, pixels)
    assert np.linalg.norm(got - X) < 1e-6 and sorted(agree) == [0, 2, 3, 5, 6, 8] and worst < 1e-6
    assert ransac_triangulate(cams[:1] * 2, pixels[:1] * 2) is None        # one viewpoint: no depth


def test_a_guessed_click_takes_its_depth_from_the_nipple_found():
    from BreastVideoReconstructionLib.nipples import depth_on_ray
    centre, clicked = np.zeros(3), np.array([0.0, 0.0, 5.0])          # the guess: 5 units along the click's ray
    point, gap, moved = depth_on_ray(centre, clicked, np.array([0.02, 0.0, 5.4]), 100.0, 8.0)
    assert np.allclose(point, [0.0, 0.0, 5.4]) and abs(gap - 2.0) < 1e-9 and abs(moved - 40.0) < 1e-9
    point, gap, _ = depth_on_ray(centre, clicked, np.array([0.2, 0.0, 5.0]), 100.0, 8.0)     # 20 mm aside
    assert point is None and abs(gap - 20.0) < 1e-9


def test_a_single_ray_click_floating_in_front_of_the_skin_moves_onto_it(tmp_path):
    """A clicked landmark that only a single ray placed, 60 mm in front of the skin it was clicked on (a stray
    point), takes the ray's first hit on the fitted skin; one 3 mm in front stays; one behind the first hit stays
    (the skin in front may be the model's fill-in); a grazing ray keeps its guess; tracked and swept landmarks are
    never touched."""
    import types

    import trimesh
    from BreastShapeModelLib.progress import Progress
    from BreastVideoReconstructionLib.cameras import Camera, look_at, write_cameras_json
    from BreastVideoReconstructionLib.steps import _single_rays_onto_skin
    from BreastVideoReconstructionLib.workspace import VideoWorkspace as W
    centre = np.array([0.0, 0.0, 600.0])
    R = look_at(centre, np.zeros(3), np.array([0.0, 1.0, 0.0]))
    cam = Camera("007.png", np.array([[1000.0, 0, 960], [0, 1000.0, 540], [0, 0, 1]]), R, -R @ centre, 1920, 1080)
    ws = W(tmp_path)
    write_cameras_json([cam], ws / W.CAMERAS)
    skin = trimesh.creation.icosphere(subdivisions=5, radius=100.0)
    rec = types.SimpleNamespace(mesh=skin, output_frame="metric", scale_mm_per_unit=1.0)

    def on_ray(direction, dist):
        d = np.asarray(direction, float) / np.linalg.norm(direction)
        return centre + dist * d

    def first(direction):                                           # where the ray first meets the sphere
        d = np.asarray(direction, float) / np.linalg.norm(direction)
        b = centre @ d
        return on_ray(d, -b - np.sqrt(b * b - centre @ centre + 100.0 ** 2))

    hit_a = first([0.02, 0.01, -1.0])                               # near-frontal: met at ~14 deg
    landmarks = np.stack([
        on_ray([0.02, 0.01, -1.0], 440.0),                            # ray, ~60 mm in front of the skin -> moved
        first([-0.01, 0.0, -1.0]) + 3.0 * np.array([0.01, 0.0, 1.0]),  # ray, ~3 mm off -> kept
        on_ray([0.02, 0.01, -1.0], 440.0),                            # track -> never touched
        on_ray([0.0, -0.1, -1.0], 560.0),                             # sweep -> never touched
        on_ray([0.1655, 0.0, -1.0], 560.0),                           # ray grazing the sphere's rim -> kept
        first([0.0, 0.03, -1.0]) + 40.0 * np.array([0.0, 0.03, -1.0]) / np.linalg.norm([0.0, 0.03, -1.0])])
    # the last: a ray, 40 mm behind the skin it first meets -> kept
    align_rep = {"methods": ["ray", "ray", "track", "sweep", "ray", "ray"], "landmark_frame": "007.png"}
    out, rows = _single_rays_onto_skin(ws, align_rep, rec, landmarks, np.eye(4), [], Progress())
    ray0 = (landmarks[0] - centre) / np.linalg.norm(landmarks[0] - centre)
    assert np.linalg.norm(np.cross(out[0] - centre, ray0)) < 1e-6                 # still on the clicked ray
    assert abs(np.linalg.norm(out[0]) - 100.0) < 1.0 and out[0][2] > 0              # on the skin, the seen side
    assert np.linalg.norm(out[0] - hit_a) < 2.0
    assert np.allclose(out[1:4], landmarks[1:4]) and np.allclose(out[5], landmarks[5])
    assert np.allclose(out[4], landmarks[4])
    by_name = {r["landmark"]: r for r in rows}
    assert by_name["sternal notch"]["used"] and by_name["sternal notch"]["in_front_of_skin_mm"] > 50
    assert not by_name["left coracoid process"]["used"] and by_name["left coracoid process"]["ray_angle_deg"] > 75
    assert set(by_name) == {"sternal notch", "left coracoid process"}
    # a nipple whose depth the frames already gave is left alone even when it is a single ray
    _, rows = _single_rays_onto_skin(ws, {**align_rep, "methods": ["track", "track", "ray", "track", "track",
                                                                    "track"]}, rec,
                                     np.stack([landmarks[0]] * 6), np.eye(4),
                                     [{"landmark": "left nipple", "used": True}], Progress())
    assert rows == []
