"""The Fit section's logic against real MRML (slicer-core): markups in, a real child-process fit, nodes out."""
import numpy as np
import trimesh
import pytest

slicer = pytest.importorskip("slicer")

from BreastShapeModelLib.errors import UserError  # noqa: E402
from BreastShapeModelLib.landmarks import LANDMARK_NAMES  # noqa: E402
from BreastShapeModelLib.mesh_io import write_mesh  # noqa: E402
from BreastShapeModelLib.module_logic import (FitJob, FitRequest, ModelChoice, landmarks_from_markups,  # noqa: E402
                                              missing_packages, place_landmarks_node)
from BreastShapeModelLib.options import ScanOptions  # noqa: E402
from BreastShapeModelLib.mrml_io import load_model_node, to_ras  # noqa: E402


def test_place_landmarks_creates_six_named_undefined_points():
    scene = slicer.vtkMRMLScene()
    node = place_landmarks_node(scene)
    assert node.GetNumberOfControlPoints() == 6
    assert [node.GetNthControlPointLabel(i) for i in range(6)] == list(LANDMARK_NAMES)
    assert node.GetNumberOfDefinedControlPoints() == 0
    with pytest.raises(UserError, match="place sternal notch"):
        landmarks_from_markups(node)


def test_fit_job_from_model_node_and_markups(geo_model, geo_ckpt, tmp_path):
    scene = slicer.vtkMRMLScene()
    mesh = geo_model.mesh(geo_model.mean_code, 64)
    mesh.vertices *= 100.0
    scan = load_model_node(scene, write_mesh(mesh, tmp_path / "scan.ply"), "scan")
    anchors = trimesh.proximity.closest_point(mesh, geo_model.anchors(geo_model.mean_code) * 100.0)[0]   # on it
    landmarks = place_landmarks_node(scene)
    for i, p in enumerate(to_ras(anchors, "model")):      # the scan is shown upright: placed where it is seen
        landmarks.SetNthControlPointPositionWorld(i, p.tolist())
    assert np.allclose(landmarks_from_markups(landmarks, "model"), anchors)
    job = FitJob(FitRequest(ModelChoice(str(geo_ckpt), device="cpu"), input_path="",
                            options=ScanOptions(iterations=80, voxel_resolution=48)),
                 input_node=scan, landmarks_node=landmarks).start()
    try:
        assert job.job.wait(timeout=600) == 0, job.job.error_message()
        events = [e["type"] for e in job.job.poll()]
        assert "progress" in events and "result" in events
        model, fitted = job.load_results(scene)
        support = model.GetPolyData().GetPointData().GetArray("support")
        assert support is not None and support.GetNumberOfTuples() == model.GetPolyData().GetNumberOfPoints()
        assert model.GetDisplayNode().GetActiveScalarName() == "support"
        assert fitted.GetNumberOfControlPoints() == 6
        # input units (x100 model units); the toy model's anchors lie 0.25 units off its surface, so landmarks
        # placed on the scan (as they must be: they are checked) align it only roughly
        assert job.report["residuals"]["mean"] < 15.0
    finally:
        job.cleanup()
    assert not job.output_dir.exists()


def test_no_packages_missing_here():
    assert missing_packages() == []


def test_sample_scan_fits_as_in_the_module_self_test(tmp_path):
    """The module self-test's path on the shipped sample scan: nodes -> FitJob -> result overlaying the scan."""
    from BreastShapeModelLib.mrml_io import load_markups_node, markups_positions
    from BreastShapeModelLib.sample_data import sources
    scan_source = sources()[0]
    scene = slicer.vtkMRMLScene()
    scan = load_model_node(scene, scan_source.files[0], frame="lps")
    landmarks = load_markups_node(scene, scan_source.files[1], frame="lps")
    job = FitJob(FitRequest(ModelChoice(device="cpu"), input_path="",
                            options=ScanOptions(iterations=100, voxel_resolution=64)),
                 input_node=scan, landmarks_node=landmarks).start()
    try:
        assert job.job.wait(timeout=600) == 0, job.job.error_message()
        model, fitted = job.load_results(scene)
        assert job.report["residuals"]["mean_mm"] < 5.0
        # the result is in the scan's frame: its anchors sit near the scan's landmarks in RAS (a wrong frame puts
        # them hundreds of mm away; the short fit's nipple anchors are off by 20-35 mm, the model's anchor error)
        a, _ = markups_positions(fitted)
        b, _ = markups_positions(landmarks)
        d = np.linalg.norm(a - b, axis=1)
        assert np.median(d) < 20.0 and d.max() < 50.0, d
    finally:
        job.cleanup()


def test_fit_without_landmarks_proposes_them_on_the_scan_and_a_second_fit_accepts_them(tmp_path):
    """Issue 15, a scan in Slicer: a fit without landmarks leaves the six landmarks it found on the scan as named
    points (confidence in each description), and the Fit again takes them as its landmarks."""
    from scipy.spatial.transform import Rotation
    from BreastShapeModelLib import synth
    from BreastShapeModelLib.mrml_io import markups_positions
    t = synth.generate(0, 777_004, 2.5)
    rotation = Rotation.from_euler("xyz", [80, 20, -30], degrees=True).as_matrix()
    mesh = t.mesh.copy()
    mesh.vertices = np.asarray(mesh.vertices) @ rotation.T + [100.0, -300.0, 50.0]
    scene = slicer.vtkMRMLScene()
    scan = load_model_node(scene, write_mesh(mesh, tmp_path / "scan.ply"), "scan", frame="lps")
    fast = ScanOptions(iterations=200, voxel_resolution=48)
    job = FitJob(FitRequest(ModelChoice(device="cpu"), input_path="", options=fast), input_node=scan).start()
    try:
        assert job.job.wait(timeout=600) == 0, job.job.error_message()
        nodes = job.load_results(scene)
        assert len(nodes) == 3 and nodes[2] is job.proposed
        proposed = job.proposed
        assert [proposed.GetNthControlPointLabel(i) for i in range(6)] == list(LANDMARK_NAMES)
        assert all("confidence" in proposed.GetNthControlPointDescription(i) for i in range(6))
        conf = job.report["landmarks_found"]["confidence"]
        assert [bool(proposed.GetNthControlPointSelected(i)) for i in range(6)] == [c >= 0.5 for c in conf]
        # on the scan as shown: the points (RAS) sit near the true landmarks moved with the scan
        truth_ras = to_ras(t.landmarks @ rotation.T + [100.0, -300.0, 50.0], "lps")
        got, _ = markups_positions(proposed)
        assert np.median(np.linalg.norm(got - truth_ras, axis=1)) < 25.0
    finally:
        job.cleanup()
    # Accept: the proposed points (one dragged onto the true nipple) are the second fit's landmarks
    proposed.SetNthControlPointPosition(2, *truth_ras[2])
    accept = FitRequest(ModelChoice(device="cpu"), input_path="",
                        options=ScanOptions(iterations=60, voxel_resolution=32))
    again = FitJob(accept, input_node=scan, landmarks_node=proposed).start()
    try:
        assert again.job.wait(timeout=600) == 0, again.job.error_message()
        nodes = again.load_results(scene)
        assert len(nodes) == 2 and again.proposed is None
        assert "landmarks_found" not in again.report and "auto_alignment" not in again.report
        given = np.loadtxt(again.output_dir / "result" / "reconstruction_landmarks.csv", delimiter=",")
        assert np.linalg.norm(given[2] - (t.landmarks[2] @ rotation.T + [100.0, -300.0, 50.0])) < 0.01
    finally:
        again.cleanup()
