"""The job runner (child process, JSON progress, cancel) and results as real MRML nodes (slicer-core)."""
import os
import sys
import textwrap
import time

import pytest

from BreastShapeModelLib.jobs import Job
from BreastShapeModelLib.module_logic import ModelChoice, SampleRequest, ShapeJob


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
def test_cancel_kills_the_process_tree(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    script = textwrap.dedent(f"""
        import json, subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pidfile)!r}, "w").write(str(p.pid))
        for i in range(600):
            print(json.dumps({{"type": "progress", "stage": "work", "fraction": i / 600}}), flush=True)
            time.sleep(0.05)
    """)
    job = Job([sys.executable, "-c", script]).start()
    deadline = time.time() + 30
    events = []
    while time.time() < deadline and (len(events) < 3 or not pidfile.exists()):
        events += job.poll()
        time.sleep(0.05)
    assert [e for e in events if e["type"] == "progress"], events
    grandchild = int(pidfile.read_text())
    assert _alive(grandchild)
    job.cancel(grace=1.0)
    assert not job.running and job.cancelled
    time.sleep(0.5)
    assert not _alive(job.process.pid) and not _alive(grandchild)


def test_job_reports_child_error():
    job = Job([sys.executable, "-m", "BreastShapeModelLib", "sample", "1", "--ckpt", "/no/such.pth",
               "--progress", "json"]).start()
    assert job.wait(timeout=120) == 2
    assert "checkpoint not found" in job.error_message()


def test_sample_job_loads_model_and_markups_nodes(geo_ckpt):
    slicer = pytest.importorskip("slicer")
    scene = slicer.vtkMRMLScene()
    job = ShapeJob(SampleRequest(ModelChoice(str(geo_ckpt), device="cpu"), num_samples=2, seed=4, resolution=40))
    job.start()
    try:
        assert job.job.wait(timeout=300) == 0, job.job.error_message()
        events = job.job.poll()
        assert any(e["type"] == "progress" for e in events)
        nodes = job.load_results(scene)
    finally:
        job.cleanup()
    assert not job.output_dir.exists()
    models = [n for n in nodes if n.IsA("vtkMRMLModelNode")]
    markups = [n for n in nodes if n.IsA("vtkMRMLMarkupsFiducialNode")]
    assert len(models) == 2 and len(markups) == 2
    assert models[0].GetPolyData().GetNumberOfPoints() > 500
    assert markups[0].GetNumberOfControlPoints() == 6
    assert markups[0].GetNthControlPointLabel(3) == "right nipple"
    assert scene.GetNumberOfNodesByClass("vtkMRMLModelNode") == 2


def test_missing_model_file_is_a_user_error():
    from BreastShapeModelLib import UserError
    with pytest.raises(UserError, match="ckpt file not found"):
        SampleRequest(ModelChoice("/no/model.pth")).command("/tmp/x")
