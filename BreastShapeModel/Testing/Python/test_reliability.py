"""Faults a careless user or a busy machine causes, each ending in one clear line and nothing lost: one run per
output folder (a lock naming its holder, stale locks taken over); Cancel (SIGTERM) handled like Ctrl-C (exit 143,
a JSON error event, no temporary files, earlier results intact, resume works); landmarks that do not fit the data;
outputs changed after a step; too little disk space; damaged models."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from BreastShapeModelLib.jobs import module_command

LIB = "BreastShapeModelLib"
DATA = Path(__file__).resolve().parent / "data"
FAST = ["--iterations", "40", "--voxel_resolution", "48", "--device", "cpu"]


def _reconstruct(out, *extra):
    return [sys.executable, "-m", LIB, "reconstruct", str(DATA / "anny_torso.ply"), "--landmarks",
            str(DATA / "landmarks" / "anny_torso.txt"), "--output_dir", str(out), *map(str, extra)]


def test_second_run_on_a_folder_is_refused_and_a_stale_lock_taken_over(tmp_path):
    from BreastShapeModelLib.workspace import Workspace
    out = tmp_path / "out"
    with Workspace(out).lock():
        r = subprocess.run(_reconstruct(out, *FAST, "--progress", "none"), capture_output=True, text=True)
    assert r.returncode == 2 and "is in use by process" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    (out / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "command": "old"}))
    r = subprocess.run(_reconstruct(out, *FAST, "--progress", "none"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (out / "reconstruction.ply").is_file() and not (out / ".lock").exists()


def test_sigterm_stops_cleanly_keeps_results_and_resumes(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(_reconstruct(out, *FAST, "--progress", "none"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    before = (out / "reconstruction.ply").read_bytes()
    proc = subprocess.Popen(_reconstruct(out, "--iterations", 20000, "--voxel_resolution", 48, "--device", "cpu",
                                         "--progress", "json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    for line in proc.stdout:
        if '"stage": "fit"' in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    rc = proc.wait(timeout=60)
    err = proc.stderr.read()
    assert rc == 143 and "cancelled" in err and "Traceback" not in err, (rc, err[-2000:])
    events = [json.loads(x) for x in rest.splitlines() if x.startswith("{")]
    assert events[-1] == {"type": "error", "message": "cancelled", "cancelled": True}
    assert (out / "reconstruction.ply").read_bytes() == before                 # the earlier result is intact
    assert not list(out.glob(".reconstruction*")) and not (out / ".lock").exists()
    r = subprocess.run(_reconstruct(out, "--iterations", 60, "--voxel_resolution", 48, "--device", "cpu",
                                    "--progress", "none"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "fit_report.json").read_text())["options"]["iterations"] == 60


def test_landmark_faults_are_refused_before_fitting(tmp_path):
    """Landmarks far away, in metres for a cloud in mm, nipples swapped, all sides swapped: one line, exit 2."""
    from BreastShapeModelLib.landmarks import read_landmarks, write_landmarks
    lm = read_landmarks(DATA / "landmarks" / "anny_torso.txt")
    cases = {"far": (lm + [0.0, 0.0, 2000.0], "far from the cloud"), "metres": (lm / 1000.0, "different units"),
             "nipples": (lm[[0, 1, 3, 2, 4, 5]], "nipple landmarks are swapped"),
             "sides": (lm[[0, 1, 3, 2, 5, 4]], "left and right landmarks are swapped")}
    for name, (points, needle) in cases.items():
        path = write_landmarks(points, tmp_path / f"{name}.csv")
        r = subprocess.run([sys.executable, "-m", LIB, "reconstruct", str(DATA / "anny_torso.ply"), "--landmarks",
                            str(path), "--output_dir", str(tmp_path / name), *FAST, "--progress", "none"],
                           capture_output=True, text=True)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / name / "reconstruction.ply").exists()


def test_resume_redoes_a_step_whose_outputs_changed(tmp_path):
    """A stamp holds only while its outputs are as the step left them: a truncated file or a folder with a file
    missing makes the step run again; a step cannot be stamped without its outputs."""
    import pytest
    from BreastShapeModelLib.workspace import Workspace
    ws = Workspace(tmp_path / "ws").create()
    (ws.root / "report.json").write_text('{"frames": 3}')
    (ws.root / "images").mkdir()
    for i in range(3):
        (ws.root / "images" / f"{i:03d}.png").write_bytes(b"png")
    ws.mark_done("frames", "k1", ["report.json", "images"], {})
    assert ws.is_done("frames", "k1") and not ws.is_done("frames", "k2")
    (ws.root / "images" / "001.png").unlink()
    assert not ws.is_done("frames", "k1")                                   # a frame went missing
    (ws.root / "images" / "001.png").write_bytes(b"png")
    assert ws.is_done("frames", "k1")
    (ws.root / "report.json").write_text('{"fra')                            # truncated (disk full, killed)
    assert not ws.is_done("frames", "k1")
    with pytest.raises(RuntimeError, match="did not write missing.ply"):
        ws.mark_done("fit", "k", ["missing.ply"], {})
    assert not ws.has_step("fit")


def test_too_little_disk_space_is_refused_before_the_work(tmp_path, monkeypatch):
    """The output folder's disk is checked first: one clear message, nothing written, no fit started."""
    import shutil as _shutil
    import pytest
    from BreastShapeModelLib import workspace
    from BreastShapeModelLib.api import run_scan
    from BreastShapeModelLib.errors import UserError
    real = _shutil.disk_usage
    monkeypatch.setattr(workspace.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=5 * 2 ** 20))                 # 5 MB left
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"only 5 MB free .* a fit needs about 30 MB"):
        run_scan(DATA / "anny_torso.ply", out, DATA / "landmarks" / "anny_torso.txt")
    assert sorted(p.name for p in out.iterdir()) == []                                # not even a lock left


def test_damaged_models_say_what_is_wrong(tmp_path):
    """NaN weights and degenerate average anchors: one line naming the problem, exit 2 (not 'no zero crossing'
    after minutes of work)."""
    import numpy as np
    import torch
    from BreastShapeModelLib import BUNDLED_MODEL
    data = torch.load(BUNDLED_MODEL, weights_only=True)
    states = data["model_state_dict"]
    name = next(k for k, v in states.items() if v.is_floating_point() and v.ndim >= 2)
    states[name] = states[name].clone()
    states[name].view(-1)[0] = float("nan")
    torch.save(data, tmp_path / "nan.pth")
    r = subprocess.run(module_command(LIB, "info", "--ckpt", str(tmp_path / "nan.pth")), capture_output=True, text=True)
    assert r.returncode == 2 and "NaN or infinity" in r.stderr and "Traceback" not in r.stderr, r.stderr
    np.save(tmp_path / "zeros.npy", np.zeros((6, 3)))
    r = subprocess.run(module_command(LIB, "mean", "--anchors", str(tmp_path / "zeros.npy"), "--output_dir",
                                      str(tmp_path / "out"), "--voxel_resolution", "32", "--progress", "none"),
                       capture_output=True, text=True)
    assert r.returncode == 2 and "degenerate" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_meshing_memory_is_estimated_before_starting(monkeypatch, capsys, tmp_path):
    """A resolution that cannot fit this machine is refused at once with the estimate and what fits; a large one
    that fits gets a warning first (measured: 16.4 GB at 1024, 2.4 GB at 512, narrow band)."""
    from BreastShapeModelLib import options
    from BreastShapeModelLib.cli import main
    assert 14000 < options.mesh_memory_mb(1024) < 18000 and 2000 < options.mesh_memory_mb(512) < 2800
    monkeypatch.setattr(options, "physical_memory_mb", lambda: 4096.0)
    code = main(["sample", "1", "--voxel_resolution", "1024", "--output_dir", str(tmp_path / "o"),
                 "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "needs about 15.3 GB" in err and "--voxel_resolution 512 or less" in err, err
    assert not (tmp_path / "o").exists()
    assert "2.2 GB" in options.MeshOptions(512).memory_warning()
    assert options.MeshOptions(256).memory_warning() is None


def test_unreadable_inputs_say_what_they_are(tmp_path):
    """A garbage .vtk and a still image renamed .mp4: one line each naming the file and what was expected."""
    import pytest
    (tmp_path / "bad.vtk").write_text("garbage\n")
    r = subprocess.run(module_command(LIB, "reconstruct", str(tmp_path / "bad.vtk"), "--landmarks",
                                      str(DATA / "landmarks" / "anny_torso.txt"), "--output_dir",
                                      str(tmp_path / "o"), "--progress", "none"), capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'bad.vtk'}: not a readable legacy VTK file with points (a mesh or point cloud was "
        f"expected)"], r.stderr
    cv2 = pytest.importorskip("cv2")
    import numpy as np
    assert cv2.imwrite(str(tmp_path / "photo.png"), np.full((120, 160, 3), 128, np.uint8))
    (tmp_path / "photo.png").rename(tmp_path / "photo.mp4")
    r = subprocess.run(module_command("BreastVideoReconstructionLib", "extract-frames", str(tmp_path / "photo.mp4"),
                                      str(tmp_path / "o2"), "--progress", "none"), capture_output=True, text=True)
    assert r.returncode == 2 and "has 1 frame" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_sample_set_is_all_or_nothing_when_the_disk_fills(tmp_path, monkeypatch, capsys):
    """`sample N` commits its shapes as a set: the disk filling up at the second shape leaves the earlier set
    exactly as it was, no staging folder behind, and one line naming the problem (exit 2)."""
    import errno
    import os
    from BreastShapeModelLib import cli
    out = tmp_path / "shapes"
    args = ["sample", "2", "--voxel_resolution", "32", "--output_dir", str(out), "--progress", "none"]
    assert cli.main(args + ["--seed", "1"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(before) == 2 * 4 + 1                               # ply, mrk.json, csv, code per shape + info
    real, calls = cli.write_shape, []

    def fills_up(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(a[2]) + ".ply")
        return real(*a, **k)
    monkeypatch.setattr(cli, "write_shape", fills_up)
    capsys.readouterr()
    assert cli.main(args + ["--seed", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "earlier complete results are kept" in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before            # old set intact, nothing extra
    # a file where the output folder should be
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(cli, "write_shape", real)
    assert cli.main(["mean", "--voxel_resolution", "32", "--output_dir", str(tmp_path / "file"),
                     "--progress", "none"]) == 2
    assert "file" in capsys.readouterr().err


def test_non_torso_inputs_end_in_a_loud_warning(tmp_path):
    """A flat plane (landmarks on it) and a box are not torsos: the fit runs, but the command line and the report
    say SELF-CHECK FAILED instead of a quiet exit 0 with a plausible-looking number."""
    import numpy as np
    import trimesh
    from BreastShapeModelLib.landmarks import read_landmarks, write_landmarks
    lm = read_landmarks(DATA / "landmarks" / "anny_torso.txt")
    rng = np.random.default_rng(0)
    plane = np.c_[rng.uniform([-250, -300], [250, 250], (20000, 2)), np.full(20000, lm[:, 2].mean())]
    flat = lm.copy()
    flat[:, 2] = plane[0, 2]
    box = trimesh.creation.box((400, 550, 60))
    box.apply_translation([0, -25, lm[:, 2].mean() - 30])
    box_points = trimesh.sample.sample_surface(box, 20000, seed=0)[0]
    on_box = box.nearest.on_surface(lm)[0]
    for name, points, marks in (("plane", plane, flat), ("box", box_points, on_box)):
        np.save(tmp_path / f"{name}.npy", points)
        write_landmarks(marks, tmp_path / f"{name}.csv")
        out = tmp_path / name
        r = subprocess.run(module_command(LIB, "reconstruct", str(tmp_path / f"{name}.npy"), "--landmarks",
                                          str(tmp_path / f"{name}.csv"), "--output_dir", str(out), "--iterations",
                                          "200", "--voxel_resolution", "64", "--progress", "none"),
                           capture_output=True, text=True)
        assert "Traceback" not in r.stderr, r.stderr
        if r.returncode == 2:                                   # refused before fitting: also not quiet
            assert r.stderr.startswith("error:"), r.stderr
            continue
        assert r.returncode == 0 and "SELF-CHECK FAILED" in r.stderr, (name, r.stderr)
        assert json.loads((out / "fit_report.json").read_text())["self_check"]["passed"] is False
