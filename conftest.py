"""Shared pytest fixtures: the reference data beside the repository and small, well-behaved test models."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent
REFERENCE = ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference() -> Path:
    if not (REFERENCE / "official_format_random.pth").is_file():
        pytest.skip(f"reference data not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def geo_model(reference):
    """The official architecture with geometric init plus code-dependent weights: a smooth, closed SDF that
    changes with the code (random official weights have no meaningful surface)."""
    from BreastShapeModelLib import ShapeModel
    from BreastShapeModelLib.network import geometric_init

    model = ShapeModel.load(reference / "official_format_random.pth", device="cpu")
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)                                # geometric_init draws from the global generator: the
    geometric_init(model.network, radius=0.4)           # toy must not depend on which tests ran before
    with torch.no_grad():
        model.network.average_anchors.mul_(0.6)         # keep the blended surface well inside [-1, 1]^3
        lin0 = model.network.ensembled_deep_sdf.lin0
        lin0.weight[:, :, 3:] += 0.01 * torch.randn(lin0.weight[:, :, 3:].shape, generator=gen)
        model.latent_std.fill_(0.2)
        model.latent_mean.zero_()
    model._folded_cache = None
    return model


@pytest.fixture(scope="session")
def bundled_model():
    """The model shipped in the repository (trained on synthetic anatomy)."""
    from BreastShapeModelLib import BUNDLED_MODEL, ShapeModel
    if not BUNDLED_MODEL.is_file():
        pytest.skip(f"bundled model not found at {BUNDLED_MODEL}")
    return ShapeModel.load(device="cpu")


@pytest.fixture(scope="session", params=["geometric-init", "bundled"])
def any_model(request):
    """Each model the speed paths must reproduce exactly: the geometric-init test surface and the bundled model."""
    return request.getfixturevalue("geo_model" if request.param == "geometric-init" else "bundled_model")


@pytest.fixture(scope="session")
def geo_ckpt(geo_model, tmp_path_factory) -> Path:
    """`geo_model` saved in our self-contained checkpoint format."""
    path = tmp_path_factory.mktemp("ckpt") / "geo_model.pth"
    geo_model.save(path, provenance={"purpose": "tests"})
    return path


def run_cli(module: str, *args, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """Run `python -m module args...` as a user would; returns the completed process (text output)."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def rng():
    """A fresh, seeded generator per test, so results do not depend on test order."""
    return np.random.default_rng(1234)
