"""One run per output folder (a lock naming its holder, stale locks taken over) and Cancel (SIGTERM) handled like
Ctrl-C: a clean stop with exit 143, a JSON error event, no temporary files, earlier results intact, resume works."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

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
