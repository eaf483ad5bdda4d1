"""The Measure and Compare sections' logic against real MRML (slicer-core): model and markups nodes in, a real
child-process `measure` / `compare`, nodes out; editing a footprint curve and re-measuring."""
import numpy as np
import pytest
import trimesh

slicer = pytest.importorskip("slicer")
pytest.importorskip("potpourri3d")

from BreastShapeModelLib.errors import UserError  # noqa: E402
from BreastShapeModelLib.measure_logic import CompareJob, MeasureJob, measurement_rows  # noqa: E402
from BreastShapeModelLib.mesh_io import write_mesh  # noqa: E402
from BreastShapeModelLib.module_logic import place_landmarks_node  # noqa: E402
from BreastShapeModelLib.mrml_io import from_ras, load_model_node, markups_positions, to_ras  # noqa: E402
from test_measure import CENTRES, _landmarks, _mesh, _outside_volume_ml  # noqa: E402


def _run(job):
    job.start()
    assert job.job.wait(timeout=600) == 0, job.job.error_message()
    return job


def _landmarks_node(scene, lms):
    node = place_landmarks_node(scene)
    for i, p in enumerate(to_ras(lms, "lps")):           # placed where the surface is seen (Slicer reads LPS files)
        node.SetNthControlPointPositionWorld(i, p.tolist())
    return node


def _on_surface(mesh, node, tol=3.0):
    pts, _ = markups_positions(node)
    return float(trimesh.proximity.closest_point(mesh, from_ras(pts, "lps"))[1].max()) < tol


def test_measure_section_nodes_edit_and_remeasure(tmp_path):
    scene = slicer.vtkMRMLScene()
    mesh, lms = _mesh(), _landmarks()
    torso = load_model_node(scene, write_mesh(mesh, tmp_path / "torso.ply"), "torso", frame="lps")
    landmarks = _landmarks_node(scene, lms)
    truth = _outside_volume_ml(CENTRES[0])
    job = _run(MeasureJob(torso, landmarks))
    try:
        result = job.load_results(scene)
    finally:
        job.cleanup()
    assert not job.output_dir.exists()
    volumes = result.report["breast_volume_ml"]
    assert volumes["left"]["value"] == pytest.approx(truth, rel=0.08)
    # footprints: editable closed curves lying on the surface where it is shown
    assert set(result.footprints) == {"left", "right"}
    for node in result.footprints.values():
        assert node.IsA("vtkMRMLMarkupsClosedCurveNode") and node.GetNumberOfControlPoints() > 20
        assert _on_surface(mesh, node)
    names = [m.GetName() for m in result.models]
    assert any("chest wall" in n for n in names) and sum("breast" in n and "ml" in n for n in names) == 2
    # tape lines: a straight line node between the nipples, a curve along the skin at least as long
    straight = next(n for n in result.lines if n.GetName().startswith("nipple_to_nipple") and "straight" in n.GetName())
    along = next(n for n in result.lines if n.GetName().startswith("nipple_to_nipple") and "skin" in n.GetName())
    assert straight.GetLineLengthWorld() == pytest.approx(np.linalg.norm(lms[2] - lms[3]), abs=1.0)
    assert along.GetCurveLengthWorld() >= straight.GetLineLengthWorld() - 1.0
    assert _on_surface(mesh, along)
    # the table holds every value with its interval
    table = result.table.GetTable()
    rows = measurement_rows(result.report)
    assert table.GetNumberOfRows() == len(rows)
    assert table.GetValue(0, 1).ToDouble() == pytest.approx(volumes["left"]["value"])
    assert table.GetColumnByName("low") is not None and table.GetColumnByName("high") is not None

    # the user drags the left footprint inwards and measures again: the edited curve is used and kept
    left = result.footprints["left"]
    pts = from_ras(markups_positions(left)[0], "lps")
    moved = trimesh.proximity.closest_point(mesh, pts.mean(0) + 0.6 * (pts - pts.mean(0)))[0]
    for i, p in enumerate(to_ras(moved, "lps")):
        left.SetNthControlPointPositionWorld(i, p.tolist())
    result.remove(scene)
    assert scene.GetNodesByClass("vtkMRMLTableNode").GetNumberOfItems() == 0
    assert left.GetScene() is scene
    job = _run(MeasureJob(torso, landmarks, footprint_nodes=result.footprints))
    try:
        again = job.load_results(scene)
    finally:
        job.cleanup()
    v2 = again.report["breast_volume_ml"]
    assert v2["left"]["value"] < 0.95 * volumes["left"]["value"]
    assert v2["right"]["value"] == pytest.approx(volumes["right"]["value"], abs=0.5)
    assert again.footprints["left"] is left


def test_compare_section_colours_the_change(tmp_path):
    scene = slicer.vtkMRMLScene()
    mesh, lms = _mesh(), _landmarks()
    bigger = CENTRES.copy()
    bigger[0] = CENTRES[0] * np.array([1.0, 1.0, 1.1])
    before = load_model_node(scene, write_mesh(mesh, tmp_path / "before.ply"), "visit 1", frame="lps")
    after = load_model_node(scene, write_mesh(_mesh(bigger), tmp_path / "after.ply"), "visit 2", frame="lps")
    landmarks = _landmarks_node(scene, lms)
    added = _outside_volume_ml(bigger[0]) - _outside_volume_ml(CENTRES[0])
    job = _run(CompareJob(before, after, landmarks))
    try:
        report, (model, table) = job.load_results(scene)
    finally:
        job.cleanup()
    assert report["volume_change_ml"]["left"] == pytest.approx(added, rel=0.05)
    values = model.GetPolyData().GetPointData().GetArray("signed_distance")
    assert values is not None and values.GetNumberOfTuples() == model.GetPolyData().GetNumberOfPoints()
    display = model.GetDisplayNode()
    assert display.GetActiveScalarName() == "signed_distance"
    lo, hi = display.GetScalarRange()
    assert lo == pytest.approx(-hi) and hi >= 2.0
    assert scene.GetNodeByID(display.GetColorNodeID()).IsA("vtkMRMLProceduralColorNode")
    legends = [model.GetNthDisplayNode(i) for i in range(model.GetNumberOfDisplayNodes())]
    assert any(d.IsA("vtkMRMLColorLegendDisplayNode") for d in legends)
    # the gained left breast is red (positive) where it grew: the largest values lie on the left breast
    pts = from_ras(np.array([model.GetPolyData().GetPoint(i) for i in range(values.GetNumberOfTuples())]), "lps")
    d = np.array([values.GetValue(i) for i in range(values.GetNumberOfTuples())])
    assert np.linalg.norm(pts[np.argmax(d)] - CENTRES[0]) < 80.0
    assert table.GetTable().GetNumberOfRows() >= 3


def test_sections_refuse_missing_inputs(tmp_path):
    scene = slicer.vtkMRMLScene()
    torso = load_model_node(scene, write_mesh(_mesh(h=6.0), tmp_path / "torso.ply"), "torso", frame="lps")
    with pytest.raises(UserError, match="landmarks"):
        MeasureJob(torso, None).cleanup()
    with pytest.raises(UserError, match="surface"):
        MeasureJob(None, place_landmarks_node(scene))
    with pytest.raises(UserError, match="same model"):
        CompareJob(torso, torso, place_landmarks_node(scene))
    incomplete = place_landmarks_node(scene)
    with pytest.raises(UserError, match="place"):
        MeasureJob(torso, incomplete)


def test_a_fitted_node_takes_its_support_map_and_residual_to_measure(tmp_path):
    """A fit loaded as a node keeps its support map (point array) and residual (attribute); measuring the node gives
    `measure` both beside the exported surface (a PLY written by Slicer keeps no custom vertex property), so the
    chest model reads the seen skin and the intervals widen as on the command line."""
    import json
    from BreastShapeModelLib.measure.surface_io import find_residual, find_support, read_surface
    from BreastShapeModelLib.mrml_io import FIT_RESIDUAL_ATTRIBUTE, attach_fit_quality
    from BreastShapeModelLib.workspace import Workspace
    scene = slicer.vtkMRMLScene()
    mesh, lms = _mesh(h=6.0), _landmarks()
    result = tmp_path / "fit"
    result.mkdir()
    write_mesh(mesh, result / Workspace.RECONSTRUCTION)
    support = np.linspace(0.0, 40.0, len(mesh.vertices))
    np.save(result / Workspace.SUPPORT, support)
    (result / Workspace.FIT_REPORT).write_text(json.dumps({"residuals": {"mean_mm": 0.9}}), encoding="utf-8")
    node = load_model_node(scene, result / Workspace.RECONSTRUCTION, "fit", frame="lps")
    attach_fit_quality(node, result)
    assert node.GetAttribute(FIT_RESIDUAL_ATTRIBUTE) == "0.9000"
    job = MeasureJob(node, _landmarks_node(scene, lms))
    try:
        surface = job.output_dir / "surface.ply"
        got = find_support(read_surface(surface), surface)
        assert got is not None and np.allclose(got, support, atol=1e-4)
        assert find_residual(surface) == pytest.approx(0.9)
    finally:
        job.cleanup()
    plain = load_model_node(scene, result / Workspace.RECONSTRUCTION, "plain", frame="lps")
    job = MeasureJob(plain, _landmarks_node(scene, lms))             # a mesh with nothing beside it: nothing made up
    try:
        surface = job.output_dir / "surface.ply"
        assert find_support(read_surface(surface), surface) is None and find_residual(surface) == 0.0
    finally:
        job.cleanup()
