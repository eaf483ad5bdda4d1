"""The synthetic anatomy generator: watertight torsos, exact landmarks, ground truth, calibration, realism."""
import json

import numpy as np
import pytest
import trimesh

from BreastShapeModelLib import synth
from BreastShapeModelLib.alignment import umeyama
from BreastShapeModelLib.anatomy import sample_params
from BreastShapeModelLib.landmarks import OFFICIAL_AVERAGE_ANCHORS
from BreastShapeModelLib.surface_distance import point_to_mesh_distance

LIB = "BreastShapeModelLib"
OFFICIAL_MM = 291.77


@pytest.fixture(scope="module")
def mean_torso():
    return synth.mean_torso()


def test_mean_torso_is_close_to_the_official_mean_shape(mean_torso, reference):
    """Realism check: similarity-aligned by the six landmarks, within 10 mm over the front, landmarks 15 mm."""
    ref = np.load(reference / "lirbsm_mean_shape_points.npy").astype(np.float64) * OFFICIAL_MM
    target = OFFICIAL_AVERAGE_ANCHORS * OFFICIAL_MM
    t = umeyama(mean_torso.landmarks, target)
    mesh = trimesh.Trimesh(t.apply(mean_torso.mesh.vertices), mean_torso.mesh.faces)
    front = ref[ref[:, 2] > ref[:, 2].min() + 3]                     # the flat back excluded
    dist = point_to_mesh_distance(front, mesh)
    lm_err = np.linalg.norm(t.apply(mean_torso.landmarks) - target, axis=1)
    assert dist.mean() < 10.0, dist.mean()
    assert lm_err.max() < 15.0, lm_err


def test_torso_is_watertight_with_landmarks_on_the_surface(mean_torso):
    m = mean_torso.mesh
    assert m.is_watertight and m.volume > 0
    _, d, _ = trimesh.proximity.closest_point(m, mean_torso.landmarks)
    assert d.max() < 1e-6
    lm = mean_torso.landmarks
    assert lm[2, 0] > 0 > lm[3, 0]                      # +x is the patient's left
    assert lm[0, 1] > lm[2, 1] > lm[1, 1]               # notch above nipples above the umbilicus
    assert lm[2, 2] > lm[0, 2]                          # nipples in front of the notch


def test_volume_meets_its_target_and_ground_truth_is_complete(mean_torso):
    truth = mean_torso.truth
    for side in ("left", "right"):
        assert truth["breast_volume_ml"][side] == pytest.approx(340.0, rel=0.03)
        fold = np.array(truth["inframammary_fold"][side])
        assert fold.shape[1] == 3 and len(fold) > 10
        assert 30 < truth["nipple_to_fold_mm"][side] < 120
    d = truth["distances_mm"]
    assert 150 < d["nipple_to_nipple"] < 240
    assert 170 < d["sternal_notch_to_left_nipple"] < 240


def test_parameters_follow_the_published_distributions():
    rng = np.random.default_rng(7)
    ps = [sample_params(rng) for _ in range(400)]
    vols = np.array([[p.breasts[s].volume_target for s in ("left", "right")] for p in ps])
    assert 300 < vols.mean() < 380 and 80 < vols.std() < 140
    assert vols.min() >= 92 and vols.max() <= 919
    diff = np.abs(vols[:, 0] - vols[:, 1])
    assert 30 < diff.mean() < 65
    grades = np.array([[p.breasts[s].ptosis_grade for s in ("left", "right")] for p in ps])
    assert 0.15 < (grades > 0).mean() < 0.31
    sn = np.array([p.breasts["right"].sn_to_nipple for p in ps])
    assert 190 < sn.mean() < 208 and 15 < sn.std() < 30


def test_same_seed_same_torso_and_different_seeds_differ():
    a = sample_params(synth.torso_rng(3, 5)).to_dict()
    b = sample_params(synth.torso_rng(3, 5)).to_dict()
    c = sample_params(synth.torso_rng(3, 6)).to_dict()
    assert a == b and a != c


def test_synth_cli_writes_the_preprocessing_layout_and_resumes(cli, tmp_path):
    out = tmp_path / "torsos"
    r = cli(LIB, "synth", 2, "--output_dir", out, "--seed", 11, "--spacing", 4, "--workers", 1, "--progress", "none")
    assert r.returncode == 0, r.stderr
    for name in ("torso_0000", "torso_0001"):
        mesh = trimesh.load(out / f"{name}.ply")
        assert mesh.is_watertight
        lm = np.loadtxt(out / "landmarks" / f"{name}.txt")
        assert lm.shape == (6, 3)
        info = json.loads((out / f"{name}.json").read_text())
        assert set(info["truth"]["breast_volume_ml"]) == {"left", "right"}
        assert info["params"]["breasts"]["left"]["ptosis_grade"] in (0, 1, 2, 3)
    stamp = (out / "torso_0000.ply").stat().st_mtime_ns
    r = cli(LIB, "synth", 2, "--output_dir", out, "--seed", 11, "--spacing", 4, "--workers", 1, "--progress", "none")
    assert r.returncode == 0 and (out / "torso_0000.ply").stat().st_mtime_ns == stamp


def test_synth_sheet_and_bad_input(cli, tmp_path):
    r = cli(LIB, "synth", 2, "--sheet", tmp_path / "sheet.png", "--progress", "none")
    assert r.returncode == 0, r.stderr
    from PIL import Image
    img = np.asarray(Image.open(tmp_path / "sheet.png"))
    assert img.shape[0] > 100 and img.std() > 10
    r = cli(LIB, "synth", 2, "--progress", "none")
    assert r.returncode == 2 and "--output_dir" in r.stderr and "Traceback" not in r.stderr
