"""Landmark files in every supported format, and `reconstruct` from the command line and from Python."""
import json

import numpy as np
import pytest
import trimesh

from BreastShapeModelLib.errors import LandmarkError
from BreastShapeModelLib.landmarks import LANDMARK_NAMES, read_landmarks, write_landmarks
from BreastShapeModelLib.surface_distance import point_to_mesh_distance

LIB = "BreastShapeModelLib"
POINTS = np.array([[0, 160, -10], [0, -200, 55], [100, -20, 70], [-95, -22, 68], [150, 160, -40], [-150, 161, -40.]])


@pytest.mark.parametrize("suffix", [".mrk.json", ".csv", ".txt", ".pp", ".fcsv", ".ply"])
def test_landmark_formats_round_trip(tmp_path, suffix):
    path = write_landmarks(POINTS, tmp_path / f"lm{suffix}")
    assert np.allclose(read_landmarks(path), POINTS)


def test_markups_are_matched_by_label_and_ras_is_converted(tmp_path):
    path = write_landmarks(POINTS, tmp_path / "lm.mrk.json")
    doc = json.loads(path.read_text())
    m = doc["markups"][0]
    m["controlPoints"] = m["controlPoints"][::-1]                     # shuffled order, labels intact
    m["coordinateSystem"] = "RAS"
    for cp in m["controlPoints"]:
        cp["position"] = [-cp["position"][0], -cp["position"][1], cp["position"][2]]
    path.write_text(json.dumps(doc))
    assert np.allclose(read_landmarks(path), POINTS)


def test_csv_with_labels_in_any_order(tmp_path):
    rows = [f"{n},{x},{y},{z}" for n, (x, y, z) in zip(LANDMARK_NAMES, POINTS)][::-1]
    (tmp_path / "lm.csv").write_text("\n".join(rows) + "\n")
    assert np.allclose(read_landmarks(tmp_path / "lm.csv"), POINTS)


@pytest.mark.parametrize("content,message", [
    ("1 2 3\n4 5 6\n7 8 9\n1 0 0\n0 1 0\n", "expected 6 landmarks"),
    ("1 2 3\n4 5 6\n7 8 9\n1 0 0\n0 1 0\nnan 1 1\n", "finite"),
    ("0 0 0\n0 0 0\n1 1 1\n2 0 1\n0 3 1\n5 5 0\n", "coincide"),
    ("0 0 0\n1 1 1\n2 2 2\n3 3 3\n4 4 4\n5 5 5\n", "collinear"),
])
def test_bad_landmarks_are_named(tmp_path, content, message):
    (tmp_path / "lm.txt").write_text(content)
    with pytest.raises(LandmarkError, match=message) as e:
        read_landmarks(tmp_path / "lm.txt")
    assert "lm.txt" in str(e.value)


def test_unknown_landmark_format(tmp_path):
    (tmp_path / "lm.docx").write_text("x")
    with pytest.raises(LandmarkError, match="unknown landmark format"):
        read_landmarks(tmp_path / "lm.docx")


def _geo_surface(geo_model, n=4000):
    mesh = geo_model.mesh(geo_model.mean_code, 64)
    pts, _ = trimesh.sample.sample_surface(mesh, n, seed=0)
    return mesh, pts, geo_model.anchors(geo_model.mean_code)


def test_reconstruct_recovers_a_model_surface_in_the_input_frame(geo_model):
    from BreastShapeModelLib.alignment import Similarity
    from BreastShapeModelLib.fitting import FitSettings
    from BreastShapeModelLib.reconstruct import reconstruct
    from scipy.spatial.transform import Rotation
    mesh, pts, anchors = _geo_surface(geo_model)
    to_input = Similarity(150.0, Rotation.from_euler("xyz", [5, -10, 3], degrees=True).as_matrix(),
                          np.array([10.0, -20.0, 300.0]))                    # an arbitrary scanner frame
    rec = reconstruct(geo_model, to_input.apply(pts), to_input.apply(anchors),
                      FitSettings(iterations=150, anchor_weight=1.0), resolution=64)
    d = point_to_mesh_distance(to_input.apply(pts), rec.mesh)
    assert d.mean() < 0.02 * 150, d.mean()                             # < 0.02 model units
    assert np.linalg.norm(rec.anchors - to_input.apply(anchors), axis=1).max() < 0.05 * 150
    assert rec.support.shape == (len(rec.mesh.vertices),)
    assert rec.residuals["mean"] == pytest.approx(d.mean(), rel=0.5)


def test_refit_continues_where_the_fit_ended(geo_model, monkeypatch):
    """Fit-driven pruning refits from the fitted code at the final learning rate; restarting the schedules
    mid-way (iteration 500) threw a breast off its points on a generator video (README, robustness)."""
    from BreastShapeModelLib import reconstruct as R
    from BreastShapeModelLib.fitting import FitSettings
    starts, real_fit = [], R.fit_code
    monkeypatch.setattr(R, "fit_code", lambda *a, **k: starts.append(k.get("start_iteration", 0)) or real_fit(*a, **k))
    mesh, pts, anchors = _geo_surface(geo_model)
    R.reconstruct(geo_model, pts, anchors, FitSettings(iterations=60), resolution=32,
                  refine=R.RefineSettings(iterations=20, rounds=2))
    assert starts == [0, 60, 80]


def test_reconstruct_cli_outputs_and_metric_scale(geo_model, geo_ckpt, cli, tmp_path):
    mesh, pts, anchors = _geo_surface(geo_model)
    anchors = trimesh.proximity.closest_point(mesh, anchors)[0]     # landmarks lie on the scan (they are checked)
    np.save(tmp_path / "cloud.npy", pts * 100)
    write_landmarks(anchors * 100, tmp_path / "lm.csv")
    out = tmp_path / "out"
    r = cli(LIB, "reconstruct", tmp_path / "cloud.npy", "--landmarks", tmp_path / "lm.csv", "--ckpt", geo_ckpt,
            "--iterations", 60, "--voxel_resolution", 48, "--output_dir", out, "--nipple_to_nipple_dist", 200,
            "--progress", "json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert any(e["type"] == "progress" and e["stage"] == "fit" for e in events)
    assert events[-1]["type"] == "result"
    rec = trimesh.load(out / "reconstruction.ply")
    report = json.loads((out / "fit_report.json").read_text())
    # the given nipple landmarks end up exactly the measured distance apart in the metric output
    M = np.asarray(report["input_to_model"])
    lm_model = (anchors * 100) @ M[:3, :3].T + M[:3, 3]
    assert report["scale_mm_per_unit"] * np.linalg.norm(lm_model[2] - lm_model[3]) == pytest.approx(200, rel=1e-6)
    assert report["scale_source"] == "nipple_to_nipple (landmarks)" and len(report["loss"]) == 6      # every 10th iteration
    assert report["scale_check"]["from_anchors"] > 0 and "disagreement_pct" in report["scale_check"]
    assert {"mean", "median", "p95", "mean_mm"} <= set(report["residuals"])
    assert len(rec.vertices) > 100
    assert "property float support" in (out / "reconstruction.ply").read_bytes()[:600].decode("latin-1")


def test_reconstruct_bad_inputs_keep_earlier_outputs(geo_ckpt, cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "reconstruction.ply").write_text("earlier result")
    cases = {"empty.npy": np.zeros((0, 3)), "nan.npy": np.full((50, 3), np.nan)}
    for name, arr in cases.items():
        np.save(tmp_path / name, arr)
    (tmp_path / "broken.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 9999\n")
    (tmp_path / "five.txt").write_text("0 0 0\n1 0 0\n0 1 0\n0 0 1\n1 1 1\n")
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).normal(size=(100, 3)))
    runs = [("empty.npy", None, "empty"), ("nan.npy", None, "NaN"), ("broken.ply", None, "broken.ply"),
            ("ok.npy", "five.txt", "expected 6 landmarks"), ("missing.ply", None, "not found")]
    for cloud, lm, message in runs:
        args = ["reconstruct", tmp_path / cloud, "--ckpt", geo_ckpt, "--output_dir", out, "--progress", "none"]
        if lm:
            args += ["--landmarks", tmp_path / lm]
        r = cli(LIB, *args)
        assert r.returncode == 2, (cloud, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1
    assert (out / "reconstruction.ply").read_text() == "earlier result"


def test_support_colours_follow_the_local_sampling():
    """A truly observed but sparsely sampled patch is green, a hole is red: 'observed' is judged from the local
    sampling density, not from one global threshold."""
    from BreastShapeModelLib.reconstruct import observed_distance
    from BreastShapeModelLib.results import support_colors
    g = np.stack(np.meshgrid(np.arange(0, 200, 2.0), np.arange(0, 200, 2.0)), -1).reshape(-1, 2)
    sparse = (np.abs(g[:, 0] - 50) < 20) & (np.abs(g[:, 1] - 100) < 20)
    keep = ~sparse | ((g[:, 0] % 8 == 0) & (g[:, 1] % 8 == 0))             # 4x sparser patch
    hole = (np.abs(g[:, 0] - 150) < 25) & (np.abs(g[:, 1] - 100) < 25)
    pts = np.c_[g[keep & ~hole], np.zeros((keep & ~hole).sum())]
    verts = np.array([[51.0, 101.0, 0.0], [151.0, 101.0, 0.0], [21.0, 21.0, 0.0]])   # sparse, hole, dense
    support, observed = observed_distance(pts, verts)
    rgb = support_colors(support, observed)[:, :3].astype(int)
    assert rgb[0, 1] > 200 and rgb[0, 0] < 60                                 # sparse patch: green
    assert rgb[1, 0] > 200 and rgb[1, 1] < 60                                 # hole: red
    assert rgb[2, 1] > 200 and rgb[2, 0] < 60                                 # dense: green
    old_rule = support >= 4 * np.median(support)                              # the global rule marked the patch
    assert support[0] > 2 * support[2] and not old_rule[2]
