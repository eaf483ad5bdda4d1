"""Narrow-band meshing gives the dense mesh at a fraction of the evaluations."""
import numpy as np
import pytest
from scipy.spatial import cKDTree

from BreastShapeModelLib.meshing import extract_mesh


@pytest.mark.parametrize("resolution", [64, 97])
def test_narrow_band_equals_dense(any_model, resolution, rng):
    code = any_model.sample_code(rng) if resolution == 64 else any_model.mean_code
    dense = any_model.volume(code, resolution, method="dense")
    band = any_model.volume(code, resolution, method="narrow_band")
    vd, fd = extract_mesh(dense)
    vb, fb = extract_mesh(band)
    assert len(vd) > 1000
    assert len(vd) == len(vb) and len(fd) == len(fb)
    assert cKDTree(vb).query(vd)[0].max() < 1e-4
    assert cKDTree(vd).query(vb)[0].max() < 1e-4
    assert band.evaluated < 0.5 * dense.evaluated


def test_mesh_units_and_orientation(geo_model):
    code = geo_model.mean_code
    model_units = geo_model.mesh(code, 64)
    mm = geo_model.mesh(code, 64, units="mm")
    np.testing.assert_allclose(mm.vertices, model_units.vertices * geo_model.mm_per_unit, rtol=1e-6)
    assert model_units.is_watertight
    assert model_units.volume > 0          # outward normals
    assert np.abs(model_units.vertices).max() <= 1.0


def test_mesh_of_code_without_surface_is_a_clear_error(geo_model):
    from BreastShapeModelLib import UserError
    with pytest.raises(UserError, match="no zero crossing"):
        geo_model.mesh(geo_model.sample_code(0) * 0 + 50.0, 32)
