"""The loader reproduces the official implementation's numbers on the reference checkpoint."""
import math

import numpy as np
import pytest
import torch

from BreastShapeModelLib import ShapeModel
from BreastShapeModelLib import network as network_module

TOL = 1e-5


@pytest.fixture(scope="module")
def expected(reference):
    return np.load(reference / "official_format_random_expected.npz")


@pytest.fixture(scope="module")
def official(reference):
    return ShapeModel.load(reference / "official_format_random.pth", anchors=reference / "lirbsm_average_anchors.npy",
                           device="cpu")


@pytest.mark.parametrize("i", [0, 1])
@pytest.mark.parametrize("fast", [False, True])
def test_reproduces_reference_sdf_and_anchors(official, expected, i, fast):
    sdf = official.sdf(expected["points"], expected[f"latent_{i}"], fast=fast)
    anchors = official.anchors(expected[f"latent_{i}"])
    assert sdf.shape == (4096,) and anchors.shape == (6, 3)
    assert np.abs(sdf - expected[f"sdf_{i}"]).max() < TOL
    assert np.abs(anchors - expected[f"anchors_{i}"]).max() < TOL


def test_defaults_are_official_config_and_anchors(reference, expected):
    """A user with only the .pth gets the official configuration and average anchors."""
    model = ShapeModel.load(reference / "official_format_random.pth")
    np.testing.assert_allclose(model.average_anchors, np.load(reference / "lirbsm_average_anchors.npy"), atol=1e-7)
    assert np.abs(model.sdf(expected["points"], expected["latent_0"]) - expected["sdf_0"]).max() < TOL


def test_tensor_inputs_give_tensors(official, expected):
    out = official.sdf(torch.as_tensor(expected["points"]), torch.as_tensor(expected["latent_1"]))
    assert isinstance(out, torch.Tensor)
    assert (out.numpy() - expected["sdf_1"]).__abs__().max() < TOL


def _max_error(model, expected):
    return max(np.abs(model.sdf(expected["points"], expected[f"latent_{i}"], fast=False) - expected[f"sdf_{i}"]).max()
               for i in (0, 1))


def test_wrong_anchor_order_is_detected(reference, expected):
    anchors = np.load(reference / "lirbsm_average_anchors.npy")[[0, 1, 3, 2, 4, 5]]   # nipples swapped
    model = ShapeModel.load(reference / "official_format_random.pth")
    model.network.average_anchors.copy_(torch.as_tensor(anchors))
    model._folded_cache = None
    assert _max_error(model, expected) > 10 * TOL


def test_wrong_blending_constant_is_detected(reference, expected, tmp_path):
    import yaml
    from BreastShapeModelLib.config import DEFAULT_CONFIG_PATH
    cfg = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    cfg["model"]["local_ensembled_deep_sdf"]["blending"]["const"] = 0.25
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    model = ShapeModel.load(reference / "official_format_random.pth", config=path)
    assert _max_error(model, expected) > 10 * TOL


def test_wrong_skip_connection_is_detected(reference, expected, monkeypatch):
    model = ShapeModel.load(reference / "official_format_random.pth")
    monkeypatch.setattr(network_module.math, "sqrt", lambda x: 1.0)   # skip without the 1/sqrt(2)
    assert _max_error(model, expected) > 10 * TOL
    monkeypatch.setattr(network_module.math, "sqrt", math.sqrt)
    model.network.ensembled_deep_sdf.skip = 3                           # skip at the wrong layer
    with pytest.raises(RuntimeError):
        _max_error(model, expected)
