"""Command line of the video pipeline: `python -m BreastVideoReconstructionLib <command> ...`, a thin translation
of arguments into the options of `options.py` and calls of `steps` / `api` (the Python API).

Steps, each its own command and all together as `run`: extract-frames -> sfm (-> densify) -> pick-landmarks ->
align -> fit -> colorize; `batch` runs a cohort on Dask. Every step writes into one output folder and records what
it did, so `run` skips finished steps for the same inputs and options. User errors print one line and exit with
status 2; Ctrl-C exits with 130 and keeps every finished output.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from BreastShapeModelLib.cli import dispatch
from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.options import ModelOptions, add_options, from_args
from BreastShapeModelLib.progress import MODES

from . import __version__
from . import steps
from .options import (AlignOptions, ColourOptions, FrameOptions, SfmOptions, VideoFitOptions, VideoOptions)
from .workspace import UNTIL_STEPS, VideoWorkspace as W


# ----------------------------------------------------------------------------------------------- options
def _progress_option(p):
    p.add_argument("--progress", choices=MODES, default="bar",
                   help="bar (terminal), json (one JSON event per line on stdout, for Slicer) or none")


def _frame_options(p):
    add_options(p, FrameOptions, "frames")


def _sfm_options(p):
    add_options(p, SfmOptions, "structure from motion")


def _align_options(p, skip=()):
    add_options(p, AlignOptions, "landmarks and alignment", skip=skip)


def _fit_options(p):
    add_options(p, VideoFitOptions, "fit")


def _colour_options(p):
    add_options(p, ColourOptions, "colour")


def _model_options(p):
    add_options(p, ModelOptions, "model")


def add_video_options(p):
    """Every option of `run` (also the defaults of `batch`)."""
    add_options(p, VideoOptions, "result")
    _frame_options(p)
    _sfm_options(p)
    _align_options(p)
    _fit_options(p)
    _colour_options(p)
    _model_options(p)


def video_options(args) -> VideoOptions:
    """The options a parsed `run` (or `batch`) command line holds."""
    return VideoOptions(from_args(FrameOptions, args), from_args(SfmOptions, args), from_args(AlignOptions, args),
                        from_args(VideoFitOptions, args), from_args(ColourOptions, args),
                        from_args(ModelOptions, args), measure=getattr(args, "measure", False),
                        strict=getattr(args, "strict", False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m BreastVideoReconstructionLib",
                                     description="Phone video to metric 3D breast surface: frames, SfM, landmarks, "
                                                 "alignment, liRBSM fit, colour.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True

    p = sub.add_parser("extract-frames", help="sharpness-aware frame selection -> images/, frames.json")
    p.add_argument("video", type=Path)
    p.add_argument("out_dir", type=Path)
    _frame_options(p)
    _progress_option(p)
    p.set_defaults(func=cmd_extract_frames)

    p = sub.add_parser("sfm", help="structure from motion -> cameras.json, points.ply, sfm_report.json")
    p.add_argument("out_dir", type=Path)
    _sfm_options(p)
    _progress_option(p)
    p.set_defaults(func=cmd_sfm)

    p = sub.add_parser("densify", help="rectified two-view stereo between neighbouring frames -> points_dense.ply")
    p.add_argument("out_dir", type=Path)
    _progress_option(p)
    p.set_defaults(func=cmd_densify)

    p = sub.add_parser("pick-landmarks", help="click the six landmarks on a frame (interactive)")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--landmark_frame", default=None, help="frame to pick on (default: the most frontal)")
    p.add_argument("--format", choices=("txt", "csv", "json"), default="txt", help="landmark file format (txt)")
    p.set_defaults(func=cmd_pick)

    p = sub.add_parser("propose-landmarks", help="no clicks: find the torso in the cloud and fit without landmarks "
                                                 "-> landmarks_proposed.json/.png (and the fit's files)")
    p.add_argument("out_dir", type=Path)
    _align_options(p)
    _fit_options(p)
    _model_options(p)
    _progress_option(p)
    p.set_defaults(func=cmd_propose)

    p = sub.add_parser("align", help="back-project landmarks, align to the model, prune -> aligned_pt_pruned.ply")
    p.add_argument("out_dir", type=Path)
    p.add_argument("landmarks", type=Path, help="<frame-id>_landmarks.txt, .csv, .mrk.json or .json")
    _align_options(p)
    _model_options(p)
    _progress_option(p)
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("fit", help="fit the model to the aligned cloud -> reconstruction.ply, fit_report.json")
    p.add_argument("out_dir", type=Path)
    _fit_options(p)
    _model_options(p)
    _progress_option(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("colorize", help="colour the reconstruction from the frames -> reconstruction_colored.ply")
    p.add_argument("out_dir", type=Path)
    add_options(p, ColourOptions, "colour", skip=("colorize",))
    _progress_option(p)
    p.set_defaults(func=cmd_colorize)

    p = sub.add_parser("run", help="everything: video -> metric mesh, report.json, overview.png (resumable)")
    p.add_argument("video", type=Path)
    p.add_argument("--output_dir", type=Path, default=None, help="default: <video name>_breast next to the video")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--landmarks", type=Path, default=None,
                     help="landmark file (see align); without one the torso is found in the cloud and the fit runs "
                          "without landmarks, writing those it found (landmarks_proposed.json/.png)")
    src.add_argument("--pick", action="store_true", help="pick the landmarks in a window on the frontal frame")
    p.add_argument("--force", action="store_true", help="redo every step")
    p.add_argument("--until", choices=UNTIL_STEPS, default=None,
                   help="stop after this step (no landmarks needed): e.g. to place them on a frame in Slicer")
    add_video_options(p)
    _progress_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("synth-video", help="render a synthetic phone video of a generator torso, with ground truth")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torso_index", type=int, default=0, help="which torso of the seed (0)")
    p.add_argument("--source", choices=("generator", "anny"), default="generator",
                   help="anatomy source of the torso: our generator (default) or an Anny body (pip install anny)")
    p.add_argument("--whole_body", action="store_true",
                   help="with --source anny: render the whole body (head, arms, legs), not only the cut torso")
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--portrait", action="store_true", help="portrait (swap width and height)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--duration", type=float, default=6.0, help="seconds (6)")
    p.add_argument("--arc", type=float, default=None, help="half-arc in degrees (default: random 60-75)")
    p.add_argument("--distance", type=float, default=None, help="camera distance in mm (default: random 500-900)")
    p.add_argument("--motion_blur", type=int, default=1, help="sub-frames averaged per frame (1: none)")
    p.add_argument("--codec", choices=("h264", "mp4v"), default="h264")
    p.add_argument("--crf", type=int, default=20, help="H.264 quality (lower: better; 20)")
    p.add_argument("--landmark_noise", type=float, default=0.0, help="pixel noise added to landmarks.json (0)")
    _progress_option(p)
    p.set_defaults(func=cmd_synth_video)

    from .batch import add_parser as add_batch_parser
    add_batch_parser(sub)
    return parser


# ----------------------------------------------------------------------------------------------- commands
def cmd_extract_frames(args, progress):
    with W(args.out_dir).lock():
        rep = steps.frames(W(args.out_dir), args.video, from_args(FrameOptions, args), progress, force=True)
    progress.summary(f"{rep['frames']} frames written to {args.out_dir / W.IMAGES}")
    progress.result(files=[str(args.out_dir / W.FRAMES)])
    return 0


def cmd_sfm(args, progress):
    ws = W(args.out_dir)
    opts = from_args(SfmOptions, args)
    with ws.lock():
        rep = steps.sfm(ws, opts, progress, force=True)
        progress.summary(f"SfM: {rep['registered']} frames registered, {rep['points']} points, reprojection error "
                     f"{rep.get('mean_reprojection_error_px', float('nan')):.2f} px")
        if opts.dense:
            steps.dense(ws, progress, force=True)
    progress.result(files=[str(ws / f) for f in (W.CAMERAS, W.POINTS, W.SFM_REPORT)])
    return 0


def cmd_densify(args, progress):
    with W(args.out_dir).lock():
        rep = steps.dense(W(args.out_dir), progress, force=True)
    progress.summary(f"{rep['points']} dense points from {rep['pairs']} frame pairs in {rep['seconds']} s")
    return 0


def picker(landmark_frame=None, fmt: str = "txt"):
    """An interactive picker on the landmark frame (default: the most frontal): workspace -> written file or None."""
    def pick(ws: W) -> Path | None:
        import cv2
        from . import scene_io
        from .landmarks2d import pick_interactively, write_landmarks_2d
        scene = scene_io.load_scene(ws.root, dense=False)
        name = scene.cameras[scene_io.frame_index(ws.root, scene, None, landmark_frame)].name
        pts = pick_interactively(cv2.imread(str(ws.images / name))[:, :, ::-1])
        return None if pts is None else write_landmarks_2d(pts, ws / f"{Path(name).stem}_landmarks.{fmt}")
    return pick


def cmd_pick(args, progress):
    path = picker(args.landmark_frame, args.format)(W(args.out_dir))
    if path is None:
        print("quit without saving", file=sys.stderr)
        return 1
    print(path)
    return 0


def cmd_propose(args, progress):
    import json
    from BreastShapeModelLib.api import LazyModel
    ws = W(args.out_dir)
    model = LazyModel(from_args(ModelOptions, args))
    with ws.lock():
        steps.find_torso(ws, from_args(AlignOptions, args), model, progress, force=True)
        steps.fit(ws, from_args(VideoFitOptions, args), model, progress, force=True)
    prop = json.loads((ws / W.PROPOSED).read_text(encoding="utf-8"))
    progress.summary(f"landmarks found on {prop['image']}: {ws / W.PROPOSED} (overlay {ws / W.PROPOSED_OVERLAY}); "
                     + ("all confident" if prop["confident"] else f"check: {'; '.join(prop['unsure'])}"))
    progress.result(files=[str(ws / W.PROPOSED), str(ws / W.PROPOSED_OVERLAY), str(ws.reconstruction)])
    return 0


def cmd_align(args, progress):
    from BreastShapeModelLib.api import LazyModel
    with W(args.out_dir).lock():
        rep = steps.align(W(args.out_dir), args.landmarks, from_args(AlignOptions, args),
                          LazyModel(from_args(ModelOptions, args)), progress, force=True)
    progress.summary(f"landmarks on {rep['landmark_frame']} ({', '.join(rep['methods'])}); kept {rep['kept_points']} of "
                 f"{rep['input_points']} points")
    return 0


def cmd_fit(args, progress):
    from BreastShapeModelLib.api import LazyModel
    with W(args.out_dir).lock():
        rep = steps.fit(W(args.out_dir), from_args(VideoFitOptions, args), LazyModel(from_args(ModelOptions, args)),
                        progress, force=True)
    progress.summary(f"fit: residual mean {rep['residuals']['mean_mm']:.2f} mm; nipple-to-nipple "
                 f"{rep['measurements']['nipple_to_nipple']} {rep['units']}")
    return 0


def cmd_colorize(args, progress):
    with W(args.out_dir).lock():
        rep = steps.colorize(W(args.out_dir), from_args(ColourOptions, args), progress, force=True)
    progress.summary(f"coloured {rep['vertices']} vertices; {100 * rep['seen_fraction']:.0f} % seen by a camera")
    return 0


def cmd_run(args, progress):
    from .api import run_video
    landmarks = picker(args.landmark_frame) if args.pick else args.landmarks
    opts = video_options(args)
    result = run_video(args.video, args.output_dir, landmarks, opts, progress=progress, force=args.force,
                       until=args.until)
    rep, ws = result.report, result.workspace
    if args.until:
        progress.summary(f"stopped after {args.until}: {rep['frames']} frames"
                     + (f", {rep['registered']} registered; frontal frame {rep['frontal_frame']}"
                        if args.until == "sfm" else ""))
        progress.result(files=[str(f) for f in result.files], frontal_frame=rep.get("frontal_frame"))
        return 0
    r = rep.get("residuals") or {}
    summary = (f"done in {rep['total_seconds']:.0f} s: {ws.reconstruction} ({rep.get('units')}); residual mean "
               f"{r.get('mean_mm', float('nan')):.2f} mm; scale from {rep.get('scale_source')}")
    progress.summary(summary)
    progress.result(files=[str(f) for f in result.files])
    if not result.passed and opts.strict:
        return 3
    return 0


def cmd_synth_video(args, progress):
    from .synth_video import VideoSettings, synth_video
    s = VideoSettings(seed=args.seed, width=args.width, height=args.height, portrait=args.portrait, fps=args.fps,
                      duration=args.duration, arc_deg=args.arc, distance_mm=args.distance,
                      motion_blur=args.motion_blur, codec=args.codec, crf=args.crf, landmark_noise_px=args.landmark_noise,
                      source=args.source, whole_body=args.whole_body)
    if args.duration * args.fps < 2:
        raise UserError("--duration x --fps must give at least 2 frames")
    with progress.stage("render", total=max(2, int(round(args.duration * args.fps))), unit="frame") as update:
        summary = synth_video(args.output_dir, s, args.torso_index, lambda i, n: update(i))
    progress.summary(f"wrote {summary['video']} ({summary['trajectory']['frames']} frames, arc +-"
                 f"{summary['trajectory']['arc_deg']:.0f} deg at {summary['trajectory']['distance_mm']:.0f} mm) "
                 f"and its ground truth in {args.output_dir / 'truth'}")
    progress.result(files=[summary["video"], str(args.output_dir / "landmarks.json")])
    return 0


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser().parse_args(argv),
                    "interrupted; finished steps are kept and a re-run resumes from them")
