"""Python API of the pipeline: one call per subject, the same one the command line, the Slicer module and the
batch runner make.

    from BreastVideoReconstructionLib.api import run_video, run_scan
    from BreastVideoReconstructionLib.options import VideoOptions
    opts = VideoOptions()
    opts.fit.nipple_to_nipple_dist = 192.0
    result = run_video("torso.mp4", "torso_breast/", landmarks="torso_landmarks.json", options=opts)
    result.report["measurements"], result.passed, result.workspace.reconstruction

Every step resumes: a re-run with the same inputs and options reuses finished steps (`result.skipped` when all
were reused); an interrupted or failed run keeps every finished step.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from BreastShapeModelLib.api import LazyModel, RunResult, check_output_not_input, run_scan
from BreastShapeModelLib.cloud_io import CLOUD_SUFFIXES
from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.fileio import atomic_write_text
from BreastShapeModelLib.progress import Progress
from BreastShapeModelLib.self_check import SELF_CHECK_FAILED

from . import steps
from .options import VideoOptions
from .workspace import UNTIL_STEPS, VideoWorkspace as W

SFM_SPACE_MB, FRAME_SPACE_MB = 60, 3       # SfM database and results; one extracted frame (PNG), generously
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mts", ".3gp")


def default_output_dir(video: Path) -> Path:
    return Path(video).with_name(Path(video).stem + "_breast")


def run_video(video: str | Path, output_dir: str | Path | None = None,
              landmarks: str | Path | Callable[[W], Path | None] | None = None, options: VideoOptions | None = None,
              model=None, progress: Progress | None = None, force: bool = False, until: str | None = None) -> RunResult:
    """Video -> frames -> SfM (-> dense) -> landmarks -> align -> fit (-> colour) -> report.json, overview.png.

    `until` ("frames" or "sfm"): stop after that step (no landmarks needed yet): what the Slicer module runs
    before the user places the landmarks on a frame.
    `landmarks`: a landmark file on a frame of the video, or a function given the workspace after SfM that returns
    one (e.g. an interactive picker; None: cancelled); no landmarks: the torso is found in the cloud and the fit
    runs without them (propose.py), writing the landmarks it found (landmarks_proposed.json/.png). `model`: a loaded ShapeModel, ModelOptions or None (the
    options' model, by default the bundled one)."""
    from .landmarks2d import read_landmarks_2d
    opts = options or VideoOptions()
    opts.check()
    progress = progress or Progress("none")
    video = Path(video)
    t_all = time.perf_counter()
    if not video.is_file():
        raise UserError(f"video not found: {video}")
    if until not in (None, *UNTIL_STEPS):
        raise UserError(f"until: expected one of {', '.join(UNTIL_STEPS)}, got {until!r}")
    ws = W(output_dir if output_dir is not None else default_output_dir(video))
    lm_file = None if callable(landmarks) or landmarks is None else Path(landmarks)
    check_output_not_input(ws.root, video, lm_file)
    lm = read_landmarks_2d(lm_file) if lm_file is not None else None
    with ws.lock():
        ws.check_space(SFM_SPACE_MB + FRAME_SPACE_MB * opts.frames.num_frames, "this run")
        net = model if isinstance(model, LazyModel) else LazyModel(model if model is not None else opts.model)
        reports, times = {}, {}

        def step(name, fn, *args):
            t = time.perf_counter()
            progress.event("step", name=name, status="start")
            rep = fn(*args)
            times[name] = round(time.perf_counter() - t, 2)
            reports[name] = rep
            status = "skipped" if rep.get("skipped") else "done"
            progress.event("step", name=name, status=status, seconds=times[name])
            progress.log(f"{name}: " + ("reused the finished step" if rep.get("skipped") else f"ran in {times[name]:.1f} s"))
            return rep

        include = (lm.video_frame,) if lm is not None and lm.video_frame is not None else ()
        step("frames", steps.frames, ws, video, opts.frames, progress, include, force)
        if until != "frames":
            step("sfm", steps.sfm, ws, opts.sfm, progress, force)
        if until is not None:
            from .frame_volumes import default_frame
            report = {"until": until, "frames": reports["frames"].get("frames"), "step_seconds": times,
                      "registered": reports.get("sfm", {}).get("registered"),
                      "sfm_valid": reports.get("sfm", {}).get("valid"),
                      "sfm_problems": reports.get("sfm", {}).get("problems"), "frontal_frame": default_frame(ws.root)}
            return RunResult(ws, report, skipped=all(r.get("skipped") for r in reports.values()),
                             files=[ws.images, ws / W.FRAMES] + ([ws / W.CAMERAS] if until == "sfm" else []))
        if opts.sfm.dense:
            step("dense", steps.dense, ws, progress, force)
        if lm_file is None and landmarks is not None:
            lm_file = landmarks(ws)
            if lm_file is None:
                raise UserError("landmark picking was cancelled")
        if lm_file is None:
            step("align", steps.find_torso, ws, opts.align, net, progress, opts.sfm.dense, force)
        else:
            step("align", steps.align, ws, lm_file, opts.align, net, progress, opts.sfm.dense, force)
        fit = step("fit", steps.fit, ws, opts.fit, net, progress, force)
        if opts.colour.colorize or opts.colour.remove_invisible:
            step("colorize", steps.colorize, ws, opts.colour, progress, force)
        if opts.measure:
            step("measure", steps.measure, ws, progress, force)
        skipped = all(r.get("skipped") for r in reports.values())
        if not (skipped and (ws / W.OVERVIEW).exists()):
            from .overview import overview
            overview(ws.root, landmarks_found=lm_file is None)
        sfm, align = reports["sfm"], reports["align"]
        report = {
            "video": str(video), "output_dir": str(ws.root), "total_seconds": round(time.perf_counter() - t_all, 2),
            "step_seconds": times, "skipped": [k for k, v in reports.items() if v.get("skipped")],
            "frames": reports["frames"].get("frames"), "registered": sfm.get("registered"), "sfm_points": sfm.get("points"),
            "sfm_valid": sfm.get("valid"), "sfm_problems": sfm.get("problems"),
            "reprojection_error_px": sfm.get("mean_reprojection_error_px"),
            "dense_points": reports.get("dense", {}).get("points"),
            "landmark_frame": align.get("landmark_frame"), "landmark_methods": align.get("methods"),
            "cloud_points_kept": align.get("kept_points"), "residuals": fit.get("residuals"),
            "scale_mm_per_unit": fit.get("scale_mm_per_unit"), "scale_source": fit.get("scale_source"),
            "scale_check": fit.get("scale_check"), "units": fit.get("units"), "measurements": fit.get("measurements"),
            "clinical": {k: v for k, v in reports.get("measure", {}).items() if k != "skipped"},
            "steps": reports, "self_check": fit.get("self_check"), "warnings": fit.get("warnings", []),
            "landmark_weights": align.get("landmark_weights"), "down_weighted": align.get("down_weighted"),
            "landmarks": "found automatically" if align.get("auto") else str(lm_file),
            "torso_match": align.get("torso_match"), "proposed_landmarks": fit.get("proposed_landmarks"),
            "outputs": {"mesh": str(ws.reconstruction), "overview": str(ws / W.OVERVIEW),
                        "colored": str(ws / W.COLORED) if reports.get("colorize") else None},
        }
        atomic_write_text(ws.report, json.dumps(report, indent=1, default=str))
        result = RunResult(ws, report, skipped=skipped, files=[ws.reconstruction, ws.report, ws / W.OVERVIEW])
        if not result.passed and fit.get("skipped"):          # a resumed run repeats the warning the fit gave
            progress.warn(SELF_CHECK_FAILED + "; ".join(result.report["self_check"].get("problems", [])))
        return result


def input_kind(path: str | Path) -> str:
    """'video' or 'scan' from the file name; a user error for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in CLOUD_SUFFIXES:
        return "scan"
    raise UserError(f"{path}: not a video ({', '.join(VIDEO_SUFFIXES)}) nor a scan or point cloud "
                    f"({', '.join(CLOUD_SUFFIXES)})")


__all__ = ["run_video", "run_scan", "RunResult", "VideoOptions", "input_kind", "default_output_dir"]
