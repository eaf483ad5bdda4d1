"""The Python API and cohort runs on Dask: real LocalCluster workers, a real synthetic video, real scans, a corrupt
video, a killed worker, and the options that the CLI, the API, the modules and the manifest share."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")
pytest.importorskip("cv2")
pytest.importorskip("pycolmap")

MOD = "BreastVideoReconstructionLib"
DATA = Path(__file__).resolve().parents[3] / "BreastShapeModel" / "Testing" / "Python" / "data"
SCAN_COLUMNS = {"iterations": "120", "voxel_resolution": "64"}


def _manifest(path: Path, rows: list[dict]) -> Path:
    cols = ["subject", "visit", "input", "landmarks", "nipple_to_nipple_mm", "iterations", "voxel_resolution",
            "num_frames", "seed"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def _rows(path: Path) -> dict:
    with open(path, newline="") as f:
        return {(r["subject"], r["visit"]): r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three subjects: p1 a scan at two visits, p2 a synthetic video, p3 a corrupt video."""
    from conftest import run_cli as cli
    d = tmp_path_factory.mktemp("cohort")
    (d / "scans").mkdir()
    for name in ("anny_torso.ply",):
        (d / "scans" / name).write_bytes((DATA / name).read_bytes())
    (d / "scans" / "anny_torso.txt").write_bytes((DATA / "landmarks" / "anny_torso.txt").read_bytes())
    r = cli(MOD, "synth-video", "--output_dir", d / "p2", "--seed", 5, "--width", 640, "--height", 360, "--fps", 10,
            "--duration", 3, "--landmark_noise", 1.0, "--progress", "none")
    assert r.returncode == 0, r.stderr
    (d / "p3.mp4").write_bytes(os.urandom(30000))
    (d / "p3_landmarks.txt").write_text("\n".join(f"{100 + 20 * i},{100 + 10 * i}" for i in range(6)))
    video = {"iterations": "300", "voxel_resolution": "96", "num_frames": "20"}
    rows = [{"subject": "p1", "visit": "pre", "input": "scans/anny_torso.ply", "landmarks": "scans/anny_torso.txt",
             "nipple_to_nipple_mm": "", **SCAN_COLUMNS, "seed": "0"},
            {"subject": "p1", "visit": "post", "input": "scans/anny_torso.ply", "landmarks": "scans/anny_torso.txt",
             "nipple_to_nipple_mm": "", **SCAN_COLUMNS, "seed": "1"},
            {"subject": "p2", "visit": "1", "input": "p2/video.mp4", "landmarks": "p2/landmarks.json",
             "nipple_to_nipple_mm": "", **video},
            {"subject": "p3", "visit": "1", "input": "p3.mp4", "landmarks": "p3_landmarks.txt",
             "nipple_to_nipple_mm": "", **video}]
    return _manifest(d / "manifest.csv", rows)


def _worker_pids(pid: int) -> list[int]:
    import psutil
    return [p.pid for p in psutil.Process(pid).children(recursive=True)
            if "spawn_main" in " ".join(p.cmdline())]


def test_batch_two_workers_failure_kill_and_resume(cohort, tmp_path):
    out = tmp_path / "cohort_out"
    args = [sys.executable, "-m", MOD, "batch", str(cohort), "--output_dir", str(out), "--workers", "2",
            "--threads", "1", "--progress", "json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = False
    deadline = time.time() + 600
    log = out / "p2" / "1" / "batch_log.jsonl"
    while proc.poll() is None and time.time() < deadline:        # kill a worker while the video subject runs
        if not killed and log.exists() and '"name": "sfm"' in log.read_text():
            pids = _worker_pids(proc.pid)
            assert pids, "no worker processes found"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)                      # both: the video subject's worker dies for sure
            killed = True
        time.sleep(0.5)
    stdout, stderr = proc.communicate(timeout=600)
    assert killed, "the video subject never started its SfM step"
    assert proc.returncode in (0, 4), stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    # the batch itself survives; whatever the kill cost is redone by a re-run, which skips the finished subjects
    r = subprocess.run(args[:-2] + ["--progress", "none"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 4, r.stderr[-3000:]                   # p3 fails: exit 4, "some subjects failed"
    rows = _rows(out / "cohort.csv")
    assert [rows[k]["status"] for k in (("p1", "pre"), ("p1", "post"), ("p2", "1"), ("p3", "1"))] == \
        ["ok", "ok", "ok", "failed"]
    err = rows[("p3", "1")]["error"]
    assert "p3.mp4" in err and "\n" not in err and "Traceback" not in err
    assert rows[("p1", "pre")]["error"] == "" and float(rows[("p1", "pre")]["residual_mean_mm"]) < 5.0
    for key in (("p1", "pre"), ("p2", "1")):
        assert Path(rows[key]["output_dir"], "reconstruction.ply").is_file()
    assert 150 < float(rows[("p2", "1")]["nipple_to_nipple_mm"]) < 260            # a metric video result
    # a third run: nothing left to do but the broken subject
    r3 = subprocess.run(args[:-2] + ["--progress", "json"], capture_output=True, text=True, timeout=600)
    events = [json.loads(line) for line in r3.stdout.splitlines() if line.startswith("{")]
    assert any("3 finished before, 1 to run" in e.get("message", "") for e in events), r3.stdout[-2000:]
    rows3 = _rows(out / "cohort.csv")
    assert all(rows3[k]["reused"] == "True" for k in (("p1", "pre"), ("p1", "post"), ("p2", "1")))
    report = json.loads((out / "cohort.json").read_text())
    assert report["ok"] == 3 and report["failed"] == 1 and report["pairs"][0]["subject"] == "p1"
    pairs = _rows_list(out / "pairs.csv")
    assert pairs[0]["before"] == "pre" and pairs[0]["after"] == "post"
    assert abs(float(pairs[0]["change_nipple_to_nipple_input"])) < 1e-6     # the same scan twice: no change


def _rows_list(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_bad_manifest_rows_are_reported_before_anything_runs(cohort, tmp_path, cli):
    bad = _manifest(tmp_path / "bad.csv", [
        {"subject": "a", "visit": "1", "input": str(cohort.parent / "scans" / "anny_torso.ply"), "landmarks": "",
         "nipple_to_nipple_mm": "abc"},
        {"subject": "b", "visit": "1", "input": "missing.mp4", "landmarks": "x.txt", "nipple_to_nipple_mm": ""},
        {"subject": "c/..", "visit": "1", "input": str(cohort.parent / "p3.mp4"), "landmarks": "",
         "nipple_to_nipple_mm": ""},
        {"subject": "d", "visit": "1", "input": str(cohort.parent / "scans" / "anny_torso.ply"), "landmarks": "",
         "nipple_to_nipple_mm": "", "iterations": "zero"},
    ])
    r = cli(MOD, "batch", bad, "--output_dir", tmp_path / "o", "--progress", "none")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for needle in ("4 bad row(s)", "row 2", "'abc' is not a number", "missing.mp4", "must be letters",
                   "'zero' is not a valid int"):
        assert needle in r.stderr, (needle, r.stderr)
    assert not (tmp_path / "o" / "cohort.csv").exists()
    (tmp_path / "h.csv").write_text("subject,input\nx,y\n")
    r = cli(MOD, "batch", tmp_path / "h.csv", "--output_dir", tmp_path / "o", "--progress", "none")
    assert r.returncode == 2 and "lacks visit, landmarks, nipple_to_nipple_mm" in r.stderr


def test_options_round_trip_through_the_command_line():
    """One place for defaults: options -> flags -> parsed options is the identity, defaults produce no flags."""
    from BreastShapeModelLib.options import ScanOptions, to_args, with_overrides
    from BreastVideoReconstructionLib.cli import build_parser, video_options
    from BreastVideoReconstructionLib.options import VideoOptions
    assert to_args(VideoOptions()) == []
    opts = VideoOptions()
    opts.frames.num_frames, opts.sfm.shared_camera, opts.align.pruning = 12, False, "mean"
    opts.fit.nipple_to_nipple_dist, opts.colour.colorize, opts.model.device, opts.strict = 190.5, True, "cpu", True
    flags = to_args(opts)
    assert "--no-shared_camera" in flags and "--num_frames" in flags
    parsed = video_options(build_parser().parse_args(["run", "v.mp4", "--landmarks", "l.txt", *flags]))
    assert parsed == opts
    over = with_overrides(VideoOptions(), {"num_frames": "12", "shared_camera": "no", "pruning": "mean", "seed": ""})
    assert over.frames.num_frames == 12 and over.sfm.shared_camera is False and over.align.pruning == "mean"
    from BreastShapeModelLib.errors import UserError
    with pytest.raises(UserError, match="unknown option"):
        with_overrides(ScanOptions(), {"num_frames": "3"})
    with pytest.raises(UserError, match="must be one of"):
        with_overrides(VideoOptions(), {"pruning": "sometimes"})


def test_run_scan_api_resumes_and_refuses_to_overwrite_its_input(tmp_path):
    from BreastShapeModelLib.api import run_scan
    from BreastShapeModelLib.errors import UserError
    from BreastShapeModelLib.options import ScanOptions
    opts = ScanOptions(iterations=60, voxel_resolution=48)
    a = run_scan(DATA / "anny_torso.ply", tmp_path / "o", DATA / "landmarks" / "anny_torso.txt", opts)
    assert not a.skipped and a.workspace.reconstruction.is_file() and a.report["residuals"]["mean_mm"] < 8
    assert set(a.report["measurements"]) >= {"nipple_to_nipple", "sternal_notch_to_left_nipple"}
    stamp = a.workspace.reconstruction.stat().st_mtime_ns
    b = run_scan(DATA / "anny_torso.ply", tmp_path / "o", DATA / "landmarks" / "anny_torso.txt", opts)
    assert b.skipped and b.report["residuals"] == a.report["residuals"]
    assert a.workspace.reconstruction.stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="would overwrite the input"):
        run_scan(a.workspace.reconstruction, tmp_path / "o", None, opts)


def test_worker_plan_shares_the_cores():
    from BreastVideoReconstructionLib.batch import plan_workers
    assert plan_workers(2, 10) == (2, 1)
    assert plan_workers(16, 10) == (10, 1)
    assert plan_workers(16, 3) == (3, 5)
    assert plan_workers(16, 40, memory_gb=8.0) == (5, 3)          # memory caps the workers, threads fill the cores
    assert plan_workers(2, 10, workers=1) == (1, 2)
    assert plan_workers(8, 10, threads=2) == (4, 2)
