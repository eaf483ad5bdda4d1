"""The Slicer workflow's logic without Qt: modules load without the heavy packages, one dependency installer, one
job controller, the upright RAS frame, parameter nodes saved with the scene (real MRML from slicer-core)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
BLOCKED = ("torch", "trimesh", "pycolmap", "cv2", "av", "skimage", "scipy", "h5py", "potpourri3d", "matplotlib",
           "yaml", "tqdm", "rtree", "distributed")


def test_module_files_import_with_heavy_packages_blocked():
    """A fresh Slicer before torch & co. are installed: both module files and both Libs import (Slicer's own Qt
    classes are stood in for by empty ones: they are not what this checks)."""
    pytest.importorskip("slicer")
    code = textwrap.dedent(f"""
        import importlib.abc, sys, types
        BLOCKED = {BLOCKED!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        qt = types.ModuleType("qt"); qt.QTimer = object; sys.modules["qt"] = qt
        import slicer
        gui = types.ModuleType("slicer.ScriptedLoadableModule")
        for n in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest",
                  "ScriptedLoadableModuleWidget"):
            setattr(gui, n, type(n, (), {{}}))
        sys.modules["slicer.ScriptedLoadableModule"] = gui
        sys.path[:0] = [{str(ROOT / 'BreastShapeModel')!r}, {str(ROOT / 'BreastVideoReconstruction')!r}]
        import BreastShapeModel, BreastVideoReconstruction, BreastShapeModelLib, BreastVideoReconstructionLib
        from BreastShapeModelLib import dependencies, job_control, parameters, mrml_io
        from BreastVideoReconstructionLib import frame_volumes, module_logic
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("loaded:", loaded)
        assert not loaded, loaded
        try:
            import torch
        except ImportError:
            print("torch blocked")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT / "Testing")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "loaded: []" in r.stdout and "torch blocked" in r.stdout


def test_one_installer_asks_first_and_installs_the_pinned_requirements(monkeypatch):
    from BreastShapeModelLib import dependencies
    pyproject = (ROOT / "pyproject.toml").read_text()
    for spec in {**dependencies.MODEL_REQUIREMENTS, **dependencies.VIDEO_REQUIREMENTS}.values():
        assert f'"{spec}"' in pyproject, f"{spec} is not the requirement pyproject.toml pins"
    gone = {"potpourri3d", "cv2"}
    real = dependencies.importlib.util.find_spec
    monkeypatch.setattr(dependencies.importlib.util, "find_spec", lambda m: None if m in gone else real(m))
    asked, installed, errors = [], [], []
    assert dependencies.missing("model") == ["potpourri3d>=1.0"]
    assert dependencies.missing("video") == ["potpourri3d>=1.0", "opencv-python-headless>=4.8"]
    # no: nothing installed
    assert not dependencies.ensure("video", lambda q: asked.append(q) or False, installed.append, lambda: True,
                                   errors.append)
    assert installed == [] and "potpourri3d>=1.0" in asked[0]
    # yes: exactly the pinned requirements, then checked again
    def install(reqs):
        installed.append(reqs)
        gone.clear()
    assert dependencies.ensure("video", lambda q: True, install, lambda: True, errors.append)
    assert installed == [["potpourri3d>=1.0", "opencv-python-headless>=4.8"]] and errors == []
    # torch missing and not installed: a clear message, nothing else asked
    monkeypatch.setattr(dependencies, "torch_missing", lambda: True)
    assert not dependencies.ensure("model", lambda q: pytest.fail("asked"), installed.append, lambda: False,
                                   errors.append)
    assert "PyTorch extension" in errors[-1]


@dataclass
class _Task:
    job: object
    cleaned: bool = False

    def cleanup(self):
        self.cleaned = True
        if self.job.running:
            self.job.cancel()


def _controller():
    from BreastShapeModelLib.job_control import JobCallbacks, JobControl
    seen = {"progress": [], "status": [], "log": [], "running": [], "error": []}
    cb = JobCallbacks(*(seen[k].append for k in ("progress", "status", "log", "running", "error")))
    return JobControl(cb), seen


def _child(code: str):
    from BreastShapeModelLib.jobs import Job
    return Job([sys.executable, "-c", code])


def _wait(control, seconds=30):
    import time
    t = time.time()
    while (state := control.poll()) is None:
        assert time.time() - t < seconds
        time.sleep(0.05)
    return state


def test_job_control_routes_events_and_reports_the_outcome():
    from BreastShapeModelLib.errors import UserError
    control, seen = _controller()
    events = [{"type": "progress", "stage": "fit", "fraction": 0.5, "message": "iteration 50"},
              {"type": "warning", "message": "scale looks off"}, {"type": "step", "name": "sfm", "status": "done",
                                                                   "seconds": 2.0}]
    code = "import json\n" + "".join(f"print(json.dumps({e!r}))\n" for e in events)
    task = _Task(_child(code).start())
    assert control.start(lambda: task, lambda t: "loaded 2 nodes")
    assert seen["running"] == [True] and control.running
    assert _wait(control) is True
    assert 50 in seen["progress"] and "fit: iteration 50" in seen["status"]
    assert "WARNING: scale looks off" in seen["log"] and "sfm: done (2 s)" in seen["log"]
    assert seen["log"][-1] == "loaded 2 nodes" and seen["running"][-1] is False and task.cleaned

    # a failing child: its own error line is the message
    fail = 'import json,sys; print(json.dumps({"type": "error", "message": "landmarks.json: expected 6"})); sys.exit(2)'
    task = _Task(_child(fail).start())
    control.start(lambda: task, lambda t: pytest.fail("loaded after a failure"))
    assert _wait(control) is False and control.last_message == "Failed: landmarks.json: expected 6"

    # loading the results fails: shown as a failure, not a crash
    task = _Task(_child("pass").start())
    control.start(lambda: task, lambda t: (_ for _ in ()).throw(UserError("mesh file not found: x.ply")))
    assert _wait(control) is False and "mesh file not found" in control.last_message

    # bad input: the error dialog, nothing started
    assert not control.start(lambda: (_ for _ in ()).throw(UserError("choose an input")), lambda t: "")
    assert seen["error"] == ["choose an input"] and not control.running

    # cancel stops the child and cleans up
    task = _Task(_child("import time; time.sleep(60)").start())
    control.start(lambda: task, lambda t: "")
    assert not control.start(lambda: task, lambda t: "")            # one job at a time
    control.cancel()
    assert task.cleaned and not task.job.running and not control.running and control.last_message == "Cancelled."


def test_model_frame_results_load_upright_and_round_trip(tmp_path):
    """A result in the model frame (x patient left, y up, z forward) appears standing in RAS: nipples anterior,
    sternal notch superior, left nipple on the patient's left; placed points write back to the same numbers."""
    slicer = pytest.importorskip("slicer")
    import trimesh
    from BreastShapeModelLib.landmarks import write_anchor_files
    from BreastShapeModelLib.mesh_io import write_mesh
    from BreastShapeModelLib.module_logic import landmarks_from_markups, place_landmarks_node
    from BreastShapeModelLib.mrml_io import FRAME_ATTRIBUTE, from_ras, load_markups_node, load_model_node, to_ras
    # sternal notch, navel, left nipple, right nipple, left coracoid, right coracoid (model frame, mm)
    lms = np.array([[0, 150, 60], [0, -120, 80], [95, 20, 130], [-95, 20, 130], [150, 140, 40], [-150, 140, 40.0]])
    box = trimesh.creation.box((300, 300, 120))
    box.apply_translation([0, 0, 40])
    write_mesh(box, tmp_path / "result.ply")
    write_anchor_files(lms, tmp_path / "anchors", units="mm")
    scene = slicer.vtkMRMLScene()
    model = load_model_node(scene, tmp_path / "result.ply", "result")
    anchors = load_markups_node(scene, tmp_path / "anchors.mrk.json", "anchors")
    ras = np.array([anchors.GetNthControlPointPosition(i) for i in range(6)])
    notch, navel, left, right = ras[0], ras[1], ras[2], ras[3]
    assert notch[2] > navel[2] + 200                        # S: notch above the navel
    assert left[1] > notch[1] + 50 and right[1] > notch[1] + 50       # A: nipples in front
    assert left[0] < right[0]                               # R: the patient's left nipple at smaller R
    bounds = [0.0] * 6
    model.GetPolyData().GetBounds(bounds)
    assert np.allclose(bounds, [-150, 150, -20, 100, -150, 150], atol=1e-3)     # the box stood up, RAS
    assert model.GetAttribute(FRAME_ATTRIBUTE) == "model"
    assert np.allclose(landmarks_from_markups(anchors), lms)                     # the frame it was loaded in
    # points placed on the result (where they are seen) write back in the model frame
    placed = place_landmarks_node(scene)
    for i, p in enumerate(to_ras(lms, "model")):
        placed.SetNthControlPointPosition(i, *p)
    assert np.allclose(landmarks_from_markups(placed, "model"), lms)
    assert np.allclose(from_ras(to_ras(lms, "lps"), "lps"), lms)
    with pytest.raises(ValueError, match="unknown frame"):
        to_ras(lms, "xyz")


def test_parameter_node_survives_a_saved_and_reloaded_scene(tmp_path):
    slicer = pytest.importorskip("slicer")
    from BreastShapeModelLib.options import ScanOptions
    from BreastShapeModelLib.parameters import get, get_node, parameter_node, put, put_node
    from BreastVideoReconstructionLib.options import VideoOptions
    scene = slicer.vtkMRMLScene()
    node = parameter_node(scene, "BreastVideoReconstruction")
    assert parameter_node(scene, "BreastVideoReconstruction") is node            # one per module
    opts = VideoOptions()
    opts.frames.num_frames, opts.fit.nipple_to_nipple_dist, opts.colour.colorize = 17, 191.5, False
    put(node, "options", opts)
    put(node, "video", "/data/patient 1/torso.mp4")
    put(node, "last_result", {"nipple_to_nipple": 190.2, "units": "mm"})
    lm = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "FrameLandmarks")
    put_node(node, "landmarks", lm)
    other = parameter_node(scene, "BreastShapeModel")
    put(other, "options", ScanOptions(iterations=123))
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()
    loaded = slicer.vtkMRMLScene()
    loaded.SetURL(str(tmp_path / "scene.mrml"))
    assert loaded.Connect()
    node2 = parameter_node(loaded, "BreastVideoReconstruction")
    back = get(node2, "options", VideoOptions())
    assert back == opts and back is not opts
    assert get(node2, "video") == "/data/patient 1/torso.mp4"
    assert get(node2, "last_result")["nipple_to_nipple"] == 190.2
    assert get_node(node2, "landmarks").GetName() == "FrameLandmarks"
    assert get(parameter_node(loaded, "BreastShapeModel"), "options", ScanOptions()).iterations == 123
    assert get(node2, "missing", 5) == 5
    node2.SetParameter("options", "{not json")
    assert get(node2, "options", VideoOptions()) == VideoOptions()               # unreadable: the defaults


def test_shipped_sample_data_loads_upright_with_its_landmarks(tmp_path):
    """The sample scan and its landmarks load standing in RAS with the landmarks on the surface; the sample video
    decodes and its landmark file fits its frames; registration hands SampleData local file URIs."""
    slicer = pytest.importorskip("slicer")
    cv2 = pytest.importorskip("cv2")
    from scipy.spatial import cKDTree
    from BreastShapeModelLib.mrml_io import load_markups_node, load_model_node
    from BreastShapeModelLib.sample_data import register, sources
    from BreastVideoReconstructionLib.landmarks2d import check_inside, read_landmarks_2d
    scan, video = sources()
    scene = slicer.vtkMRMLScene()
    model = load_model_node(scene, scan.files[0], frame="lps")              # as Slicer's own reader does
    marks = load_markups_node(scene, scan.files[1], frame="lps")
    ras = np.array([marks.GetNthControlPointPosition(i) for i in range(6)])
    assert ras[0][2] > ras[1][2] + 200 and min(ras[2][1], ras[3][1]) > ras[0][1] + 20 and ras[2][0] < ras[3][0]
    poly = model.GetPolyData()
    verts = np.array([poly.GetPoint(i) for i in range(poly.GetNumberOfPoints())])
    assert cKDTree(verts).query(ras)[0].max() < 6.0                            # landmarks on the surface (mm)
    cap = cv2.VideoCapture(str(video.files[0]))
    ok, frame = cap.read()
    assert ok and frame.shape[:2] == (360, 640) and cap.get(cv2.CAP_PROP_FRAME_COUNT) >= 20
    lm = read_landmarks_2d(video.files[1])
    check_inside(lm, 640, 360)
    calls = []

    class Logic:
        @staticmethod
        def registerCustomSampleDataSource(**kw):
            calls.append(kw)
    assert register(Logic, sources()) == 2
    assert calls[0]["uris"][0].startswith("file://") and calls[0]["loadFiles"] == [True, True]
    assert register(Logic, sources(tmp_path, tmp_path)) == 0                    # missing files: nothing offered
