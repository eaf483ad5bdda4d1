"""Configs, checkpoints (official and ours), bad files, and the fast path against the plain one."""
import pickle

import numpy as np
import pytest
import torch
import yaml

from BreastShapeModelLib import CheckpointError, ConfigError, LandmarkError, ShapeModel
from BreastShapeModelLib.config import DEFAULT_CONFIG_PATH, ModelConfig, load_config


def test_official_config_values():
    cfg = load_config()
    assert (cfg.global_latent_dim, cfg.local_latent_dim, cfg.latent_dim, cfg.ensemble_size) == (128, 64, 576, 7)
    assert (cfg.hidden_dim, cfg.num_layers, cfg.skip_layer, cfg.member_input_dim) == (200, 4, 2, 195)
    assert (cfg.sigma, cfg.const) == (0.25, 0.2)


@pytest.mark.parametrize("key", ["hidden_dim", "blending", "anchor_indices"])
def test_config_missing_key_is_named(tmp_path, key):
    cfg = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    del cfg["model"]["local_ensembled_deep_sdf"][key]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=key):
        load_config(path)


def test_config_wrong_type_and_bad_yaml(tmp_path):
    cfg = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    cfg["model"]["local_ensembled_deep_sdf"]["hidden_dim"] = "two hundred"
    with pytest.raises(ConfigError, match="hidden_dim"):
        ModelConfig.from_dict(cfg)
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(path)


def test_checkpoint_errors(reference, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        ShapeModel.load(tmp_path / "missing.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((reference / "official_format_random.pth").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated"):
        ShapeModel.load(truncated)
    not_ckpt = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), not_ckpt)
    with pytest.raises(CheckpointError, match="model_state_dict"):
        ShapeModel.load(not_ckpt)


class _Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("touch exploited-marker",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pth"
    torch.save({"model_state_dict": _Exploit(), "latent_mean": torch.zeros(576)}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        ShapeModel.load(evil)
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps({"model_state_dict": _Exploit()}))
    with pytest.raises(CheckpointError):
        ShapeModel.load(raw)
    assert not (tmp_path / "exploited-marker").exists()


def test_config_not_matching_weights(reference, tmp_path):
    cfg = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    cfg["model"]["local_ensembled_deep_sdf"]["hidden_dim"] = 256
    path = tmp_path / "wide.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        ShapeModel.load(reference / "official_format_random.pth", config=path)


def test_wrong_anchor_count(reference, tmp_path):
    five = tmp_path / "five.npy"
    np.save(five, np.load(reference / "lirbsm_average_anchors.npy")[:5])
    with pytest.raises(LandmarkError, match="expected 6"):
        ShapeModel.load(reference / "official_format_random.pth", anchors=five)


def test_official_anchor_pt_file(reference, tmp_path):
    pt = tmp_path / "average_anchors.pt"
    torch.save(torch.from_numpy(np.load(reference / "lirbsm_average_anchors.npy")), pt)
    model = ShapeModel.load(reference / "official_format_random.pth", anchors=pt)
    np.testing.assert_allclose(model.average_anchors, np.load(reference / "lirbsm_average_anchors.npy"), atol=1e-7)


def test_own_format_round_trip_and_official_export(geo_model, geo_ckpt, reference, tmp_path, rng):
    loaded = ShapeModel.load(geo_ckpt)
    pts = rng.uniform(-1, 1, (2000, 3)).astype(np.float32)
    code = geo_model.sample_code(rng)
    np.testing.assert_allclose(loaded.sdf(pts, code), geo_model.sdf(pts, code), atol=1e-6)
    assert loaded.provenance["purpose"] == "tests"
    assert loaded.mm_per_unit == pytest.approx(geo_model.mm_per_unit)
    official_path = loaded.save(tmp_path / "official.pth", official=True)
    ours = torch.load(official_path, weights_only=True)
    ref = torch.load(reference / "official_format_random.pth", weights_only=True)
    assert set(ours) == set(ref)
    assert {k: v.shape for k, v in ours["model_state_dict"].items()} == \
           {k: v.shape for k, v in ref["model_state_dict"].items()}
    assert ours["latent_mean"].shape == ref["latent_mean"].shape


def test_fast_path_matches_plain_path(any_model, rng):
    """Uniform points and points near the surface (where most members are active), mean and sampled codes."""
    for code in (any_model.mean_code, any_model.sample_code(rng)):
        surface = any_model.mesh(code, 48).vertices
        near = surface[rng.choice(len(surface), 3000)] + rng.normal(0, 0.01, (3000, 3))
        pts = np.concatenate([rng.uniform(-1, 1, (3000, 3)), near]).astype(np.float32)
        fast = any_model.sdf(pts, code, fast=True)
        plain = any_model.sdf(pts, code, fast=False)
        assert np.abs(fast - plain).max() < 1e-5


def test_code_of_wrong_length(geo_model):
    from BreastShapeModelLib import UserError
    with pytest.raises(UserError, match="576"):
        geo_model.sdf(np.zeros((3, 3)), np.zeros(100))
