"""Fault matrix: what a careless user or a failing machine does to the command line, and what comes out.

    python bench/fault_matrix.py [--work runs/fault_matrix] [--video]

Each case runs the real commands as a user would and is judged **clean** when it ends with the documented exit
code (0 with a loud warning where the input is usable but the result doubtful, 2 for a user error, 143 for a
cancel), at most one `error:` line and no traceback on stderr, no temporary file left in the output folder, and
earlier complete results byte-identical where there were some. Disk-full cases use a small tmpfs and are
skipped where this process may not mount one (not root). `--video` adds the cases that need a video run (a few
minutes).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "BreastShapeModel" / "Testing" / "Python" / "data"
SCAN, SCAN_LM = DATA / "anny_torso.ply", DATA / "landmarks" / "anny_torso.txt"
VIDEO = ROOT / "BreastVideoReconstruction" / "Resources" / "SampleData" / "SyntheticTorsoVideo.mp4"
VIDEO_LM = VIDEO.with_name("SyntheticTorsoVideo_landmarks.json")
FAST = ["--iterations", "40", "--voxel_resolution", "48", "--device", "cpu", "--progress", "none"]
TEMP_PREFIXES = (".staging-", ".images-", ".sparse-", ".reconstruction-", ".fit_report-")


@dataclass
class Outcome:
    case: str
    expected: str
    rc: int
    clean: bool
    seconds: float
    said: str


def lib(module: str, *args) -> list[str]:
    return [sys.executable, "-m", module, *map(str, args)]


def digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"} if folder.is_dir() else {}


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.startswith(TEMP_PREFIXES)] if folder.is_dir() else []


@contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of `size` at `path` (root only); yields False where it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    ok = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                              capture_output=True).returncode == 0
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", str(path)], capture_output=True)


def judge(case: str, args: list[str], expected_rc: tuple[int, ...], out: Path | None, needle: str = "",
          before: dict | None = None, timeout: float = 600, **popen) -> Outcome:
    t = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **popen)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("\x1b[")]   # VTK's log
    errors = [ln for ln in lines if ln.startswith("error:")]
    said = (errors or [ln for ln in lines if ln.startswith("warning:")] or lines or [""])[0][:150]
    clean = (r.returncode in expected_rc and "Traceback" not in r.stderr and len(errors) <= 1
             and (needle.lower() in r.stderr.lower()) and not (out is not None and leftovers(out)))
    if before is not None and out is not None:
        after = {k: v for k, v in digest(out).items() if k in before}
        clean = clean and after == before
    return Outcome(case, "/".join(map(str, expected_rc)) + (f' "{needle}"' if needle else ""), r.returncode, clean,
                   round(time.perf_counter() - t, 1), said)


def scan_cases(work: Path) -> list[Outcome]:
    from BreastShapeModelLib.landmarks import read_landmarks, write_landmarks
    lm = read_landmarks(SCAN_LM)
    out = []
    bad = {"landmarks 2 m away": (lm + [0, 0, 2000.0], "far from the cloud"),
           "landmarks in metres, cloud in mm": (lm / 1000.0, "different units"),
           "nipple rows swapped": (lm[[0, 1, 3, 2, 4, 5]], "nipple landmarks are swapped"),
           "left/right rows swapped": (lm[[0, 1, 3, 2, 5, 4]], "left and right landmarks are swapped")}
    for name, (points, needle) in bad.items():
        path = write_landmarks(points, work / f"{name.split()[0]}_{len(out)}.csv")
        target = work / f"scan_{len(out)}"
        out.append(judge(name, lib("BreastShapeModelLib", "reconstruct", SCAN, "--landmarks", path, "--output_dir",
                                   target, *FAST), (2,), target, needle))
    rng = np.random.default_rng(0)
    plane = np.c_[rng.uniform([-250, -300], [250, 250], (20000, 2)), np.full(20000, lm[:, 2].mean())]
    np.save(work / "plane.npy", plane)
    flat = lm.copy()
    flat[:, 2] = plane[0, 2]
    write_landmarks(flat, work / "plane.csv")
    out.append(judge("a flat plane as the scan", lib("BreastShapeModelLib", "reconstruct", work / "plane.npy",
                                                     "--landmarks", work / "plane.csv", "--output_dir",
                                                     work / "plane", "--iterations", "200", "--voxel_resolution",
                                                     "64", "--progress", "none"), (0,), work / "plane",
                     "SELF-CHECK FAILED"))
    good = work / "good"
    subprocess.run(lib("BreastShapeModelLib", "reconstruct", SCAN, "--landmarks", SCAN_LM, "--output_dir", good,
                       *FAST), capture_output=True, check=True)
    before = digest(good)
    out.append(judge("input is the output folder's reconstruction.ply",
                     lib("BreastShapeModelLib", "reconstruct", good / "reconstruction.ply", "--landmarks", SCAN_LM,
                         "--output_dir", good, *FAST), (2,), good, "", before))
    (work / "a_file").write_text("x")
    out.append(judge("output folder is a file", lib("BreastShapeModelLib", "reconstruct", SCAN, "--landmarks",
                                                    SCAN_LM, "--output_dir", work / "a_file", *FAST), (2,), None,
                     "is a file"))
    out.append(judge("--max_points -1", lib("BreastShapeModelLib", "reconstruct", SCAN, "--landmarks", SCAN_LM,
                                            "--output_dir", work / "mp", "--max_points", "-1", *FAST), (2,),
                     work / "mp", "max_points"))
    (work / "bad.vtk").write_text("garbage\n")
    out.append(judge("garbage .vtk", lib("BreastShapeModelLib", "reconstruct", work / "bad.vtk", "--landmarks",
                                         SCAN_LM, "--output_dir", work / "vtk", *FAST), (2,), work / "vtk", "VTK"))
    # two runs on one folder: the second is refused while the first holds the lock
    first = subprocess.Popen(lib("BreastShapeModelLib", "reconstruct", SCAN, "--landmarks", SCAN_LM, "--output_dir",
                                 work / "busy", "--iterations", "400", "--voxel_resolution", "64", "--progress",
                                 "none"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if (work / "busy" / ".lock").exists():
            break
        time.sleep(0.1)
    out.append(judge("second run on a busy folder", lib("BreastShapeModelLib", "reconstruct", SCAN, "--landmarks",
                                                        SCAN_LM, "--output_dir", work / "busy", *FAST), (2,),
                     None, "in use by process"))
    # Cancel (SIGTERM, what Slicer sends) part-way, then resume
    time.sleep(3)
    t = time.perf_counter()
    first.send_signal(signal.SIGTERM)
    rc = first.wait(60)
    out.append(Outcome("SIGTERM during reconstruct", "143", rc, rc == 143 and not leftovers(work / "busy"),
                       round(time.perf_counter() - t, 1), "cancelled"))
    out.append(judge("resume after the cancel", lib("BreastShapeModelLib", "reconstruct", SCAN, "--landmarks",
                                                    SCAN_LM, "--output_dir", work / "busy", *FAST), (0,),
                     work / "busy"))
    return out


def model_cases(work: Path) -> list[Outcome]:
    import torch
    from BreastShapeModelLib import BUNDLED_MODEL
    data = torch.load(BUNDLED_MODEL, weights_only=True)
    name = next(k for k, v in data["model_state_dict"].items() if v.is_floating_point() and v.ndim >= 2)
    data["model_state_dict"][name] = data["model_state_dict"][name].clone().fill_(float("nan"))
    torch.save(data, work / "nan.pth")
    np.save(work / "zeros.npy", np.zeros((6, 3)))
    out = [judge("weights with NaN", lib("BreastShapeModelLib", "mean", "--ckpt", work / "nan.pth", "--output_dir",
                                         work / "nan", "--progress", "none"), (2,), work / "nan", "NaN"),
           judge("all-zero average anchors", lib("BreastShapeModelLib", "mean", "--anchors", work / "zeros.npy",
                                                  "--output_dir", work / "zeros", "--progress", "none"), (2,),
                 work / "zeros", "degenerate"),
           judge("--voxel_resolution 2048", lib("BreastShapeModelLib", "sample", "1", "--voxel_resolution", "2048",
                                                "--output_dir", work / "big", "--progress", "none"), (2,),
                 work / "big", "voxel_resolution")]
    t = time.perf_counter()
    info = subprocess.Popen(lib("BreastShapeModelLib", "info"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    head = subprocess.Popen(["head", "-1"], stdin=info.stdout, stdout=subprocess.DEVNULL)
    info.stdout.close()                                        # `info | head -1`: the reader leaves after a line
    head.wait()
    err = info.stderr.read()
    rc = info.wait()
    out.append(Outcome("info | head -1 (reader leaves)", "0", rc,
                       rc == 0 and "Traceback" not in err and "BrokenPipe" not in err, round(time.perf_counter() - t, 1),
                       err.strip()[:100]))
    return out


def disk_cases(work: Path) -> list[Outcome]:
    out = []
    disk = work / "small_disk"
    with small_disk(disk, "1200k") as ok:
        if not ok:
            return [Outcome("disk full (tmpfs)", "-", -1, False, 0, "skipped: cannot mount a tmpfs (needs root)")]
        target = disk / "shapes"
        subprocess.run(lib("BreastShapeModelLib", "sample", "1", "--seed", "1", "--voxel_resolution", "64",
                           "--output_dir", target, "--progress", "none"), capture_output=True, check=True)
        before = digest(target)
        out.append(judge("sample 4 onto a nearly full disk", lib("BreastShapeModelLib", "sample", "4", "--seed", "2",
                                                                 "--voxel_resolution", "96", "--output_dir", target,
                                                                 "--progress", "none"), (2,), target, "", before))
        out.append(judge("reconstruct onto a full disk", lib("BreastShapeModelLib", "reconstruct", SCAN,
                                                             "--landmarks", SCAN_LM, "--output_dir", disk / "fit",
                                                             *FAST), (2,), disk / "fit", "MB free"))
    with small_disk(disk, "3m") as ok:
        out.append(judge("frames onto a 3 MB disk", lib("BreastVideoReconstructionLib", "extract-frames", VIDEO,
                                                        disk / "frames", "--num_frames", "24", "--progress", "none"),
                         (2,), disk / "frames", "frame images"))
    with small_disk(disk, "12m") as ok:
        subprocess.run(lib("BreastVideoReconstructionLib", "extract-frames", VIDEO, disk / "v", "--num_frames", "24",
                           "--progress", "none"), capture_output=True, check=True)
        before = digest(disk / "v")
        out.append(judge("SfM onto a nearly full disk", lib("BreastVideoReconstructionLib", "sfm", disk / "v",
                                                            "--progress", "none"), (2,), disk / "v", "MB free",
                         before))
        out.append(judge("run onto a nearly full disk", lib("BreastVideoReconstructionLib", "run", VIDEO,
                                                            "--landmarks", VIDEO_LM, "--output_dir", disk / "run",
                                                            "--progress", "none"), (2,), disk / "run", "MB free"))
    return out


def video_input_cases(work: Path) -> list[Outcome]:
    import cv2
    cv2.imwrite(str(work / "photo.png"), np.full((120, 160, 3), 128, np.uint8))
    shutil.copyfile(work / "photo.png", work / "photo.mp4")
    (work / "trunc.mp4").write_bytes(VIDEO.read_bytes()[:5000])
    return [judge("a PNG renamed .mp4", lib("BreastVideoReconstructionLib", "extract-frames", work / "photo.mp4",
                                            work / "png", "--progress", "none"), (2,), work / "png", "1 frame"),
            judge("a truncated .mp4", lib("BreastVideoReconstructionLib", "extract-frames", work / "trunc.mp4",
                                          work / "trunc", "--progress", "none"), (2,), work / "trunc", "cannot read")]


def video_run_cases(work: Path) -> list[Outcome]:
    run = work / "video_run"
    fast = ["--num_frames", "24", "--iterations", "300", "--voxel_resolution", "128", "--progress", "none"]
    subprocess.run(lib("BreastVideoReconstructionLib", "run", VIDEO, "--landmarks", VIDEO_LM, "--output_dir", run,
                       *fast), capture_output=True, check=True)
    before = digest(run)
    doc = json.loads(VIDEO_LM.read_text())
    doc["points"] = [doc["points"][i] for i in (0, 1, 3, 2, 5, 4)]
    (work / "swapped.json").write_text(json.dumps(doc))
    out = [judge("left/right swapped on the video frame", lib("BreastVideoReconstructionLib", "run", VIDEO,
                                                               "--landmarks", work / "swapped.json", "--output_dir",
                                                               run, *fast), (2,), run, "swapped", before)]
    proc = subprocess.Popen(lib("BreastVideoReconstructionLib", "run", VIDEO, "--landmarks", VIDEO_LM, "--output_dir",
                                work / "cancel", *fast), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(25)                                             # inside SfM on this machine
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(120)
    err = proc.stderr.read()
    out.append(Outcome("SIGTERM during a video run", "143", rc,
                       rc == 143 and "Traceback" not in err and not leftovers(work / "cancel"), 0, err.strip()[:100]))
    out.append(judge("resume the cancelled video run", lib("BreastVideoReconstructionLib", "run", VIDEO,
                                                           "--landmarks", VIDEO_LM, "--output_dir", work / "cancel",
                                                           *fast), (0,), work / "cancel"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "fault_matrix")
    ap.add_argument("--video", action="store_true", help="also the cases that need a video run (minutes)")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    outcomes = scan_cases(args.work) + model_cases(args.work) + video_input_cases(args.work) + disk_cases(args.work)
    if args.video:
        outcomes += video_run_cases(args.work)
    width = max(len(o.case) for o in outcomes)
    print(f"{'case':<{width}}  expected                          rc  clean  seconds  what it said")
    for o in outcomes:
        print(f"{o.case:<{width}}  {o.expected:<32} {o.rc:>3}  {'yes' if o.clean else 'NO':<5}  {o.seconds:>7}  "
              f"{o.said}")
    judged = [o for o in outcomes if o.rc != -1]
    print(f"\nclean: {sum(o.clean for o in judged)} of {len(judged)} cases"
          + (f" ({len(outcomes) - len(judged)} skipped)" if len(judged) < len(outcomes) else ""))


if __name__ == "__main__":
    main()
