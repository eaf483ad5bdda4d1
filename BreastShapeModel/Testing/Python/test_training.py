"""Preprocess -> anchors -> train -> resume -> export, end to end on a tiny synthetic set, plus the fast paths."""
import json

import h5py
import numpy as np
import pytest
import torch
import trimesh
import yaml

from BreastShapeModelLib import synth
from BreastShapeModelLib.config import DEFAULT_CONFIG_PATH

LIB = "BreastShapeModelLib"
TRAIN_CONFIG = DEFAULT_CONFIG_PATH.parent / "train_synthetic_cpu.yaml"


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Three synthetic torsos, one mesh with a hole and one without landmarks (both must be skipped)."""
    d = tmp_path_factory.mktemp("scans")
    for i in range(3):
        synth.write_torso(synth.generate(i, 99, spacing=5.0), d, synth.torso_name(i))
    broken = trimesh.load(d / "torso_0000.ply")
    broken.update_faces(np.arange(len(broken.faces)) > 10)
    broken.export(d / "holey.ply")
    (d / "landmarks" / "holey.txt").write_text((d / "landmarks" / "torso_0000.txt").read_text())
    trimesh.load(d / "torso_0001.ply").export(d / "no_landmarks.obj")
    return d


@pytest.fixture(scope="module")
def dataset(scans, tmp_path_factory):
    from conftest import run_cli
    out = tmp_path_factory.mktemp("data") / "data.hdf5"
    r = run_cli(LIB, "preprocess", scans, "--output", out, "--num_points", 3000, "--workers", 1, "--progress", "none")
    assert r.returncode == 0, r.stderr
    assert "holey.ply: mesh is not watertight" in r.stderr
    assert "no_landmarks.obj: no landmark file" in r.stderr
    return out


def test_hdf5_has_the_method_layout(dataset):
    with h5py.File(dataset, "r") as f:
        assert sorted(f.keys()) == ["0", "1", "2"]
        g = f["0"]
        pts, nrm, lm = g["surf_points"][:], g["surf_normals"][:], g["landmarks"][:]
    assert pts.shape == (3000, 3) and nrm.shape == (3000, 3) and lm.shape == (6, 3)
    assert np.abs(pts).max() <= 0.5 and np.abs(pts).max() > 0.4       # padding 0.1: longest side 0.9
    assert np.allclose(np.linalg.norm(nrm, axis=1), 1, atol=1e-4)


def test_anchors_are_twice_the_mean_landmarks(dataset, tmp_path, cli):
    out = tmp_path / "avg.npy"
    r = cli(LIB, "anchors", dataset, "--output", out, "--progress", "none")
    assert r.returncode == 0, r.stderr
    with h5py.File(dataset, "r") as f:
        expected = 2 * np.mean([f[k]["landmarks"][:] for k in f], axis=0)
    assert np.allclose(np.load(out), expected, atol=1e-6)


def _tiny_config(tmp_path, dataset):
    cfg = yaml.safe_load(TRAIN_CONFIG.read_text())
    cfg["data"].update(dataset_path=str(dataset), num_surface_points=64, num_volume_points=32)
    cfg["train"].update(batch_size=2, epochs=2, epochs_til_evaluation=2, val_fraction=0.34, eval_shapes=1)
    cfg["eval"].update(voxel_resolution=24, fit_iterations=5)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_resume_is_exact_and_export_loads(dataset, tmp_path, cli, reference):
    config = _tiny_config(tmp_path, dataset)
    straight, split = tmp_path / "straight", tmp_path / "split"
    r = cli(LIB, "train", config, "--output_dir", straight, "--device", "cpu", "--progress", "none")
    assert r.returncode == 0, r.stderr
    r = cli(LIB, "train", config, "--output_dir", split, "--epochs", 1, "--device", "cpu", "--progress", "none")
    assert r.returncode == 0, r.stderr
    r = cli(LIB, "train", config, "--output_dir", split, "--device", "cpu", "--progress", "none")
    assert r.returncode == 0 and "resumed" in r.stderr, r.stderr
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(split / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 2                                    # 2 training shapes, batch 2
    for k in a["model_state_dict"]:
        assert torch.allclose(a["model_state_dict"][k], b["model_state_dict"][k], atol=1e-7), k
    assert torch.allclose(a["codes"], b["codes"], atol=1e-7)
    assert list((straight / "tensorboard").glob("events.out.tfevents.*")), "no TensorBoard log written"
    rows = (straight / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step") and len(rows) == 3
    assert "chamfer_l1" in json.loads(r.stdout.splitlines()[-1])

    model_path = tmp_path / "model.pth"
    r = cli(LIB, "export", straight, "--output", model_path, "--official", "--progress", "none")
    assert r.returncode == 0, r.stderr
    from BreastShapeModelLib import ShapeModel
    m = ShapeModel.load(model_path)
    assert m.provenance["steps"] == 2 and m.provenance["data_shapes"] == 3
    assert 150 < m.mm_per_unit < 400
    official = torch.load(tmp_path / "model_official.pth", weights_only=True)
    ref = torch.load(reference / "official_format_random.pth", weights_only=True)
    assert set(official) == set(ref)
    assert {k: v.shape for k, v in official["model_state_dict"].items()} == \
        {k: v.shape for k, v in ref["model_state_dict"].items()}
    m2 = ShapeModel.load(tmp_path / "model_official.pth", tmp_path / "model_official_config.yaml",
                         tmp_path / "model_official_average_anchors.pt")
    pts = np.random.default_rng(0).uniform(-1, 1, (100, 3)).astype(np.float32)
    assert np.allclose(m.sdf(pts, m.mean_code), m2.sdf(pts, m2.mean_code), atol=1e-6)


def test_train_bad_input(tmp_path, cli):
    r = cli(LIB, "train", TRAIN_CONFIG, "--dataset", tmp_path / "missing.hdf5", "--progress", "none")
    assert r.returncode == 2 and "missing.hdf5" in r.stderr and "Traceback" not in r.stderr
    r = cli(LIB, "preprocess", tmp_path, "--progress", "none")
    assert r.returncode == 2 and "no .ply or .obj" in r.stderr
    r = cli(LIB, "export", tmp_path, "--progress", "none")
    assert r.returncode == 2 and "best.pt" in r.stderr


@pytest.mark.parametrize("shapes", [1, 2])          # one shape: the fit's broadcast path; two: training's
def test_sparse_forward_matches_the_plain_network(any_model, shapes):
    """Values and code gradients of the training/fitting path equal the plain network's."""
    net = any_model.network
    gen = torch.Generator().manual_seed(0)
    pts = torch.rand((shapes, 400, 3), generator=gen) * 2 - 1
    codes = (any_model.latent_mean + torch.randn((shapes, 576), generator=gen) * any_model.latent_std)
    grads = []
    for fn in (lambda c: net(pts, c), lambda c: net.forward_sparse(pts, c, 0.0)):
        c = codes.clone().requires_grad_(True)
        sdf, anchors = fn(c)
        (sdf.abs().mean() + anchors.square().sum()).backward()
        grads.append((sdf.detach(), anchors.detach(), c.grad))
    (plain, anchors, g_plain), (exact, anchors2, g_exact) = grads
    assert torch.allclose(plain, exact, atol=1e-6) and torch.equal(anchors, anchors2)
    assert torch.allclose(g_plain, g_exact, atol=1e-6, rtol=1e-4)
    sparse, _ = net.forward_sparse(pts, codes)
    assert ((plain - sparse).abs() / (1 + plain.abs())).max() < 7e-4      # <= threshold x 7 members
