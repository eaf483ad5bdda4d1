"""Command line of the video pipeline: `python -m BreastVideoReconstructionLib <command> ...`.

Steps, each its own command and all together as `run`: extract-frames -> sfm (-> densify) -> pick-landmarks ->
align -> fit -> colorize. Every step writes into one output folder and records what it did, so `run` skips
finished steps for the same inputs and options. User errors print one line and exit with status 2; Ctrl-C exits
with 130 and keeps every finished output.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from BreastShapeModelLib.cli import _model_options, dispatch
from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.fileio import atomic_write_text
from BreastShapeModelLib.progress import MODES, Progress  # noqa: F401  (Progress: the type steps take)

from . import __version__
from . import pipeline as P


# ----------------------------------------------------------------------------------------------- options
def _progress_option(p):
    p.add_argument("--progress", choices=MODES, default="bar",
                   help="bar (terminal), json (one JSON event per line on stdout, for Slicer) or none")


def _frame_options(p):
    g = p.add_argument_group("frames")
    g.add_argument("--num_frames", type=int, default=30, help="frames to extract (30)")
    g.add_argument("--uniform", action="store_true", help="evenly spaced frames instead of sharpness-aware selection")
    g.add_argument("--sharpness_threshold", type=float, default=None,
                   help="variance-of-Laplacian threshold (default: 75th percentile of 100 evenly spaced frames)")
    g.add_argument("--max_frame_size", type=int, default=None, help="scale extracted frames to this long side (px)")


def _sfm_options(p):
    g = p.add_argument_group("structure from motion")
    g.add_argument("--backend", choices=("colmap", "vggsfm"), default="colmap", help="SfM backend (colmap: pycolmap)")
    g.add_argument("--camera_type", default="SIMPLE_RADIAL",
                   help="SIMPLE_RADIAL (default), RADIAL, SIMPLE_PINHOLE or PINHOLE")
    g.add_argument("--shared_camera", action=argparse.BooleanOptionalAction, default=True,
                   help="one camera shared by all frames (default) or one per frame")
    g.add_argument("--max_image_size", type=int, default=1600, help="SIFT on frames scaled to this long side (1600)")
    g.add_argument("--max_features", type=int, default=8192, help="SIFT features per frame (8192)")
    g.add_argument("--sift_peak_threshold", type=float, default=0.002,
                   help="SIFT peak threshold (0.002; COLMAP's 0.0067 finds too few features on skin)")
    g.add_argument("--matching", choices=("auto", "sequential", "exhaustive"), default="auto",
                   help="auto: exhaustive up to 40 frames, else sequential with overlap")
    g.add_argument("--overlap", type=int, default=10, help="sequential matching: neighbours per frame (10)")
    g.add_argument("--import_colmap", type=Path, default=None, help="use a COLMAP model computed elsewhere")
    g.add_argument("--import_vggsfm", type=Path, default=None, help="use VGGSfM predictions.pt computed elsewhere")
    g.add_argument("--vggsfm_python", type=Path, default=None, help="interpreter of your VGGSfM environment")
    g.add_argument("--vggsfm_dir", type=Path, default=None, help="your VGGSfM checkout (with demo.py)")
    g.add_argument("--query_method", default="aliked", help="VGGSfM: sp, sift, aliked or combinations (aliked)")
    g.add_argument("--query_frame_num", type=int, default=3, help="VGGSfM: query frames (3)")
    g.add_argument("--max_query_pts", type=int, default=4096, help="VGGSfM: query points per frame (4096)")
    g.add_argument("--num_ba_iterations", type=int, default=3, help="VGGSfM: bundle-adjustment rounds (3)")
    g.add_argument("--dense_depth", action="store_true", help="VGGSfM: also predict dense depth maps")
    g.add_argument("--dense", action=argparse.BooleanOptionalAction, default=False,
                   help="triangulate dense optical flow between neighbouring frames for more points (off: on "
                        "skin it adds points but not accuracy; see the README)")


def _align_options(p):
    g = p.add_argument_group("landmarks and alignment")
    g.add_argument("--landmark_frame", default=None, help="frame of the landmarks (e.g. 015); default: the file "
                                                          "name, else the most frontal frame")
    g.add_argument("--pruning", choices=("fit", "mean"), default="fit",
                   help="fit (default): prune loosely from the mean surface, fit, prune again from the fitted "
                        "surface and refit, so breasts far from the mean keep their points; mean: the method's "
                        "rule, points within --pruning_dist_threshold of the model's mean surface")
    g.add_argument("--pruning_dist_threshold", type=float, default=None,
                   help="drop points farther than this from the model's mean surface (model units; default 0.35 "
                        "with --pruning fit, 0.2, the method's value, with --pruning mean)")
    g.add_argument("--robust_landmarks", action=argparse.BooleanOptionalAction, default=True,
                   help="weight the landmarks by their evidence (tracked and triangulated, swept, single ray) "
                        "and down-weight one that disagrees with the other five (default on)")
    g.add_argument("--refine_landmarks", action=argparse.BooleanOptionalAction, default=True,
                   help="track landmarks into neighbouring frames and triangulate (fallback: ray casting)")
    g.add_argument("--debug", action="store_true", help="also write the intermediate clouds")


def _fit_options(p):
    g = p.add_argument_group("fit")
    g.add_argument("--latent_weight", type=float, default=None,
                   help="pull towards the mean shape (default: 0.1, the method's video setting, for official "
                        "checkpoints; 0.02 for our checkpoints, whose codes are larger: 0.1 flattens large breasts)")
    g.add_argument("--anchor_weight", type=float, default=0.1, help="landmark term (0.1, video)")
    g.add_argument("--metrical", action=argparse.BooleanOptionalAction, default=True,
                   help="output in millimetres (default), or --no-metrical for model units")
    g.add_argument("--nipple_to_nipple_dist", type=float, default=None, help="measured nipple distance (mm): "
                                                                              "exact metric scale")
    g.add_argument("--refit_threshold", type=float, default=0.04,
                   help="--pruning fit: keep points within this of the first fitted surface for the refit "
                        "(model units, 0.04 = about 12 mm)")
    g.add_argument("--iterations", type=int, default=1000, help="fit iterations (1000)")
    g.add_argument("--points_per_iteration", type=int, default=1000, help="points per iteration (1000)")
    g.add_argument("--voxel_resolution", type=int, default=256, help="marching-cubes grid (256)")
    g.add_argument("--seed", type=int, default=0, help="random seed of the fit (0)")


def _colour_options(p):
    g = p.add_argument_group("colour")
    g.add_argument("--colorize", action="store_true", help="colour the mesh from the frames")
    g.add_argument("--remove_invisible", action="store_true", help="cut away what no camera saw (implies --colorize)")


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

    p = sub.add_parser("densify", help="dense optical-flow triangulation -> points_dense.ply")
    p.add_argument("out_dir", type=Path)
    _progress_option(p)
    p.set_defaults(func=cmd_densify)

    p = sub.add_parser("pick-landmarks", help="click the six landmarks on a frame (interactive)")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--landmark_frame", default=None, help="frame to pick on (default: the most frontal)")
    p.add_argument("--format", choices=("txt", "csv", "json"), default="txt", help="landmark file format (txt)")
    p.set_defaults(func=cmd_pick)

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
    p.add_argument("--remove_invisible", action="store_true", help="cut away what no camera saw")
    _progress_option(p)
    p.set_defaults(func=cmd_colorize)

    p = sub.add_parser("run", help="everything: video -> metric mesh, report.json, overview.png (resumable)")
    p.add_argument("video", type=Path)
    p.add_argument("--output_dir", type=Path, default=None, help="default: <video name>_breast next to the video")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--landmarks", type=Path, default=None, help="landmark file (see align)")
    src.add_argument("--pick", action="store_true", help="pick the landmarks in a window on the frontal frame")
    p.add_argument("--force", action="store_true", help="redo every step")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 3 when the result fails its self-check (default: a loud warning in the "
                        "terminal and report.json, exit 0)")
    _frame_options(p)
    _sfm_options(p)
    _align_options(p)
    _fit_options(p)
    _colour_options(p)
    _model_options(p)
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
    return parser


# ----------------------------------------------------------------------------------------------- steps
def _load_model(args):
    from BreastShapeModelLib.shape_model import ShapeModel
    return ShapeModel.load(args.ckpt, args.config, args.anchors, args.device)


def _frames(args, out: Path, progress: Progress, include=()) -> dict:
    from .frames import extract_frames
    if not args.video.is_file():
        raise UserError(f"video not found: {args.video}")
    key = P.stamp_of("frames", {"video": P.file_key(args.video), "n": args.num_frames, "uniform": args.uniform,
                                "thr": args.sharpness_threshold, "include": list(include),
                                "max": args.max_frame_size})
    if not getattr(args, "force", False) and P.is_done(out, "frames", key):
        return {"skipped": True, **P.step_report(out, "frames")}
    rec = extract_frames(args.video, out, args.num_frames, args.uniform, args.sharpness_threshold, tuple(include),
                         args.max_frame_size, progress)
    rep = {"frames": len(rec["frames"]), "video": rec["video"], "threshold": rec["threshold"],
           "below_threshold": sum(f["below_threshold"] for f in rec["frames"])}
    P.mark_done(out, "frames", key, ["frames.json", "images/000.png"], rep)
    return rep


def _sfm(args, out: Path, progress: Progress) -> dict:
    from . import sfm as S
    upstream = P.step_key(out, "frames")
    opts = {k: getattr(args, k) for k in ("backend", "camera_type", "shared_camera", "max_image_size", "max_features",
                                          "sift_peak_threshold", "matching", "overlap", "query_method",
                                          "query_frame_num", "max_query_pts", "num_ba_iterations", "dense_depth")}
    key = P.stamp_of("sfm", {"up": upstream, **opts, "colmap": P.file_key(args.import_colmap),
                             "vggsfm": P.file_key(args.import_vggsfm)})
    if not getattr(args, "force", False) and P.is_done(out, "sfm", key):
        return {"skipped": True, **P.step_report(out, "sfm")}
    images = out / "images"
    n = len(list(images.glob("*.png")))
    if args.import_colmap is not None:
        result = S.import_colmap(args.import_colmap, images)
    elif args.import_vggsfm is not None:
        result = S.import_vggsfm(args.import_vggsfm, images)
    elif args.backend == "vggsfm":
        result = S.run_vggsfm(out, args.vggsfm_python, args.vggsfm_dir, args.query_method, args.query_frame_num,
                              args.max_query_pts, args.num_ba_iterations, args.dense_depth, args.camera_type,
                              args.shared_camera)
    else:
        result = S.run_colmap(images, out / "sfm", S.SfmOptions(args.camera_type, args.shared_camera,
                                                                args.max_image_size, args.max_features,
                                                                args.sift_peak_threshold, args.matching, args.overlap),
                              progress)
    rep = S.write_outputs(out, result, n)
    if not rep["valid"]:
        msg = "SfM result looks wrong: " + "; ".join(rep["problems"])
        progress.warn(msg)
    P.mark_done(out, "sfm", key, ["cameras.json", "points.ply", "sfm_report.json"], rep)
    return rep


def _dense(args, out: Path, progress: Progress) -> dict:
    from .dense import densify
    key = P.stamp_of("dense", {"up": P.step_key(out, "sfm")})
    if not getattr(args, "force", False) and P.is_done(out, "dense", key):
        return {"skipped": True, **P.step_report(out, "dense")}
    scene = P.load_scene(out, dense=False)
    with progress.stage("densify", total=max(1, len(scene.cameras) - 1)) as update:
        dense, rep = densify(scene, out / "images", on_pair=lambda k, n: update(k))
    P.write_points_ply(out / "points_dense.ply", dense.points, dense.colors)
    P.mark_done(out, "dense", key, ["points_dense.ply"], rep)
    return rep


def _align(args, out: Path, progress: Progress, lm_path: Path, model) -> dict:
    from .align import LOO_TOLERANCE, align_and_prune, landmark_evidence, landmarks_to_3d, robust_landmark_weights
    from .landmarks2d import check_inside, overlay, read_landmarks_2d, save_rgb
    import cv2
    lm = read_landmarks_2d(lm_path)
    up = [P.step_key(out, "sfm")] + ([P.step_key(out, "dense")] if (out / ".steps" / "dense.json").exists()
                                     and getattr(args, "dense", True) else [])
    threshold = pruning_threshold(args)
    key = P.stamp_of("align", {"up": up, "lm": P.file_key(lm_path), "frame": args.landmark_frame,
                               "thr": threshold, "refine": args.refine_landmarks, "robust": args.robust_landmarks,
                               "model": model_key(model), "debug": args.debug})
    if not getattr(args, "force", False) and P.is_done(out, "align", key):
        return {"skipped": True, **P.step_report(out, "align")}
    scene = P.load_scene(out, dense=getattr(args, "dense", True))
    ref = P.frame_index(out, scene, lm, args.landmark_frame)
    cam = scene.cameras[ref]
    pixels = P.landmark_pixels_in_frame(out, lm)
    check_inside(type(lm)(pixels, lm.image, lm.video_frame, lm.source), cam.width, cam.height)
    with progress.stage("align", total=3) as update:
        lms3, methods, info = landmarks_to_3d(scene, out / "images", ref, pixels, args.refine_landmarks)
        update(1, "landmarks in 3D")
        evidence, why = landmark_evidence(methods, info["per_landmark"])
        weights, loo = robust_landmark_weights(lms3, model.average_anchors, evidence) if args.robust_landmarks \
            else (np.ones(6), {})
        res = align_and_prune(model, scene, lms3, threshold, weights)
        update(2, "aligned and pruned")
        P.write_points_ply(out / "landmarks_3d.ply", lms3)
        P.write_points_ply(out / "aligned_landmarks_3d.ply", res.aligned_landmarks)
        P.write_points_ply(out / "aligned_pt_pruned.ply", res.aligned_points, res.aligned_colors)
        if args.debug:
            pts, cols = res.debug["aligned_all"]
            P.write_points_ply(out / "debug_aligned_all.ply", pts, cols)
            P.write_points_ply(out / "debug_ray_landmarks.ply", np.asarray(info["ray_points"]))
        img = cv2.imread(str(out / "images" / cam.name))[:, :, ::-1]
        reproj = cam.project(lms3)[0]
        save_rgb(out / "landmarks_overlay.png", overlay(img, pixels, extra=reproj))
        update(3)
    from BreastShapeModelLib.landmarks import LANDMARK_NAMES
    loo_mm = np.asarray(loo.get("loo_residual", [0.0] * 6)) * model.mm_per_unit
    doubtful = []
    for i in np.flatnonzero(weights < 0.5):
        inconsistent = loo_mm[i] > LOO_TOLERANCE[i] * model.mm_per_unit
        reason = (f"{loo_mm[i]:.0f} mm from where the other five put it" if inconsistent else "weak evidence") + \
            f"; found by {why[i]}"
        doubtful.append({"landmark": LANDMARK_NAMES[i], "weight": round(float(weights[i]), 3),
                         "inconsistent": bool(inconsistent), "reason": reason,
                         "leave_one_out_mm": round(float(loo_mm[i]), 1)})
        progress.warn(f"landmark '{LANDMARK_NAMES[i]}' down-weighted to {weights[i]:.2f}: {reason}")
    rep = {"landmark_frame": cam.name, "methods": methods, "landmarks": info["per_landmark"], **res.counts,
           "landmark_weights": weights.round(4).tolist(), "landmark_evidence": why, "down_weighted": doubtful,
           **loo,
           "sfm_to_model": res.to_model.matrix().tolist(), "reprojection_px": np.linalg.norm(reproj - pixels, axis=1).round(3).tolist()}
    atomic_write_text(out / "align_report.json", json.dumps(rep, indent=1))
    P.mark_done(out, "align", key, ["aligned_pt_pruned.ply", "aligned_landmarks_3d.ply", "landmarks_3d.ply",
                                    "align_report.json", "landmarks_overlay.png"], rep)
    return rep


def model_key(model) -> str:
    """The model's identity in step stamps: its file (path, size, time), so a replaced checkpoint redoes the steps."""
    src = Path(str(model.source))
    return P.file_key(src) if src.is_file() else str(model.source)


OFFICIAL_VIDEO_LATENT_WEIGHT = 0.1      # the method's video setting, for the official model
OURS_VIDEO_LATENT_WEIGHT = 0.02         # calibrated on synthetic videos (bench/video_pipeline.py) for our models


def video_latent_weight(model) -> float:
    """Default latent weight for video fits: our checkpoints carry provenance, official ones do not."""
    return OURS_VIDEO_LATENT_WEIGHT if model.provenance else OFFICIAL_VIDEO_LATENT_WEIGHT


def pruning_threshold(args) -> float:
    """Mean-surface pruning threshold: loose before fit-driven pruning, the method's 0.2 otherwise."""
    if args.pruning_dist_threshold is not None:
        if args.pruning_dist_threshold <= 0:
            raise UserError(f"--pruning_dist_threshold must be positive, got {args.pruning_dist_threshold}")
        return args.pruning_dist_threshold
    return 0.35 if args.pruning == "fit" else P.METHOD_PRUNING


def _fit(args, out: Path, progress: Progress, model) -> dict:
    from BreastShapeModelLib.fitting import FitSettings
    from BreastShapeModelLib.reconstruct import RefineSettings
    if args.iterations < 1 or args.points_per_iteration < 1:
        raise UserError("--iterations and --points_per_iteration must be at least 1")
    if args.latent_weight is not None and args.latent_weight < 0:
        raise UserError(f"--latent_weight must not be negative, got {args.latent_weight}")
    if args.nipple_to_nipple_dist is not None and not 50 <= args.nipple_to_nipple_dist <= 500:
        raise UserError(f"--nipple_to_nipple_dist is in mm and must be within 50-500, got {args.nipple_to_nipple_dist}")
    if not 8 <= args.voxel_resolution <= 1024:
        raise UserError(f"--voxel_resolution must be between 8 and 1024, got {args.voxel_resolution}")
    metrical = args.metrical or args.nipple_to_nipple_dist is not None
    settings = FitSettings(iterations=args.iterations, points_per_iteration=args.points_per_iteration,
                           latent_weight=video_latent_weight(model) if args.latent_weight is None else args.latent_weight, anchor_weight=max(args.anchor_weight, 0.0), seed=args.seed)
    if args.refit_threshold <= 0:
        raise UserError(f"--refit_threshold must be positive, got {args.refit_threshold}")
    refine = RefineSettings(threshold=args.refit_threshold) if getattr(args, "pruning", "fit") == "fit" else None
    key = P.stamp_of("fit", {"up": P.step_key(out, "align"), "s": vars(settings), "m": metrical,
                             "n2n": args.nipple_to_nipple_dist, "res": args.voxel_resolution,
                             "refine": vars(refine) if refine else None,
                             "model": model_key(model)})
    if not getattr(args, "force", False) and P.is_done(out, "fit", key):
        return {"skipped": True, **P.step_report(out, "fit")}
    rep = P.fit(out, model, settings, args.voxel_resolution, metrical, args.nipple_to_nipple_dist, progress,
                refine=refine)
    for w in rep.get("warnings", []):
        progress.warn(w)
    rep_small = {k: v for k, v in rep.items() if k not in ("loss", "output_from_sfm")}
    P.mark_done(out, "fit", key, ["reconstruction.ply", "fit_report.json"], rep_small)
    return rep_small


def _colorize(args, out: Path, progress: Progress) -> dict:
    key = P.stamp_of("colorize", {"up": P.step_key(out, "fit"), "rm": args.remove_invisible})
    if not getattr(args, "force", False) and P.is_done(out, "colorize", key):
        return {"skipped": True, **P.step_report(out, "colorize")}
    rep = P.colorize_step(out, args.remove_invisible, progress)
    P.mark_done(out, "colorize", key, ["reconstruction_colored.ply"], rep)
    return rep


def cmd_extract_frames(args, progress):
    rep = _frames(args, args.out_dir, progress)
    progress.log(f"{rep['frames']} frames written to {args.out_dir / 'images'}")
    progress.result(files=[str(args.out_dir / "frames.json")])
    return 0


def cmd_sfm(args, progress):
    args.force = True
    rep = _sfm(args, args.out_dir, progress)
    progress.log(f"SfM: {rep['registered']} frames registered, {rep['points']} points, reprojection error "
                 f"{rep.get('mean_reprojection_error_px', float('nan')):.2f} px")
    if args.dense:
        _dense(args, args.out_dir, progress)
    progress.result(files=[str(args.out_dir / f) for f in ("cameras.json", "points.ply", "sfm_report.json")])
    return 0


def cmd_densify(args, progress):
    args.force = True
    rep = _dense(args, args.out_dir, progress)
    progress.log(f"{rep['points']} dense points from {rep['pairs']} frame pairs in {rep['seconds']} s")
    return 0


def _pick(out: Path, landmark_frame, fmt: str = "txt") -> Path | None:
    """Open the picker on the landmark frame (default: the most frontal); the written file, or None if quit."""
    from .landmarks2d import pick_interactively, write_landmarks_2d
    import cv2
    scene = P.load_scene(out, dense=False)
    name = scene.cameras[P.frame_index(out, scene, None, landmark_frame)].name
    pts = pick_interactively(cv2.imread(str(out / "images" / name))[:, :, ::-1])
    return None if pts is None else write_landmarks_2d(pts, out / f"{Path(name).stem}_landmarks.{fmt}")


def cmd_pick(args, progress):
    path = _pick(args.out_dir, args.landmark_frame, args.format)
    if path is None:
        print("quit without saving", file=sys.stderr)
        return 1
    print(path)
    return 0


def cmd_align(args, progress):
    args.force = True
    rep = _align(args, args.out_dir, progress, args.landmarks, _load_model(args))
    progress.log(f"landmarks on {rep['landmark_frame']} ({', '.join(rep['methods'])}); kept {rep['kept_points']} of "
                 f"{rep['input_points']} points")
    return 0


def cmd_fit(args, progress):
    args.force = True
    rep = _fit(args, args.out_dir, progress, _load_model(args))
    progress.log(f"fit: residual mean {rep['residuals']['mean_mm']:.2f} mm; nipple-to-nipple "
                 f"{rep['measurements']['nipple_to_nipple']} {rep['units']}")
    return 0


def cmd_colorize(args, progress):
    args.force = True
    rep = _colorize(args, args.out_dir, progress)
    progress.log(f"coloured {rep['vertices']} vertices; {100 * rep['seen_fraction']:.0f} % seen by a camera")
    return 0


def cmd_run(args, progress):
    from .landmarks2d import read_landmarks_2d
    t_all = time.perf_counter()
    if not args.video.is_file():
        raise UserError(f"video not found: {args.video}")
    out = args.output_dir or args.video.with_name(args.video.stem + "_breast")
    out.mkdir(parents=True, exist_ok=True)
    lm = read_landmarks_2d(args.landmarks) if args.landmarks is not None else None
    if args.remove_invisible:
        args.colorize = True
    steps, times = {}, {}

    def step(name, fn, *a):
        t = time.perf_counter()
        progress.event("step", name=name, status="start")
        rep = fn(*a)
        times[name] = round(time.perf_counter() - t, 2)
        steps[name] = rep
        progress.event("step", name=name, status="skipped" if rep.get("skipped") else "done", seconds=times[name])
        return rep

    include = (lm.video_frame,) if lm is not None and lm.video_frame is not None else ()
    step("frames", _frames, args, out, progress, include)
    step("sfm", _sfm, args, out, progress)
    if args.dense:
        step("dense", _dense, args, out, progress)
    model = _load_model(args)
    lm_path = args.landmarks
    if lm_path is None:
        if not args.pick:
            raise UserError("give --landmarks FILE (six x,y rows on a frame) or --pick to click them")
        lm_path = _pick(out, args.landmark_frame)
        if lm_path is None:
            raise UserError("landmark picking was cancelled")
    step("align", _align, args, out, progress, lm_path, model)
    fit = step("fit", _fit, args, out, progress, model)
    if args.colorize:
        step("colorize", _colorize, args, out, progress)
    ov = P.overview(out)
    sfm = steps["sfm"]
    report = {
        "video": str(args.video), "output_dir": str(out), "total_seconds": round(time.perf_counter() - t_all, 2),
        "step_seconds": times, "skipped": [k for k, v in steps.items() if v.get("skipped")],
        "frames": steps["frames"].get("frames"), "registered": sfm.get("registered"), "sfm_points": sfm.get("points"),
        "sfm_valid": sfm.get("valid"), "sfm_problems": sfm.get("problems"),
        "reprojection_error_px": sfm.get("mean_reprojection_error_px"),
        "dense_points": steps.get("dense", {}).get("points"),
        "landmark_frame": steps["align"].get("landmark_frame"), "landmark_methods": steps["align"].get("methods"),
        "cloud_points_kept": steps["align"].get("kept_points"), "residuals": fit.get("residuals"),
        "scale_mm_per_unit": fit.get("scale_mm_per_unit"), "scale_source": fit.get("scale_source"),
        "units": fit.get("units"), "measurements": fit.get("measurements"), "steps": steps,
        "self_check": fit.get("self_check"), "warnings": fit.get("warnings", []),
        "landmark_weights": steps["align"].get("landmark_weights"), "down_weighted": steps["align"].get("down_weighted"),
        "outputs": {"mesh": str(out / "reconstruction.ply"), "overview": str(ov),
                    "colored": str(out / "reconstruction_colored.ply") if args.colorize else None},
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=1, default=str))
    r = fit.get("residuals", {})
    progress.log(f"done in {report['total_seconds']:.0f} s: {out / 'reconstruction.ply'} ({fit.get('units')}); "
                 f"residual mean {r.get('mean_mm', float('nan')):.2f} mm; scale from {fit.get('scale_source')}")
    progress.result(files=[str(out / "reconstruction.ply"), str(out / "report.json"), str(ov)])
    check = fit.get("self_check") or {}
    if not check.get("passed", True):
        if fit.get("skipped"):                     # a resumed run repeats the warning the fit gave
            progress.warn("SELF-CHECK FAILED, the surface may be wrong: " + "; ".join(check.get("problems", [])))
        if args.strict:
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
    progress.log(f"wrote {summary['video']} ({summary['trajectory']['frames']} frames, arc +-"
                 f"{summary['trajectory']['arc_deg']:.0f} deg at {summary['trajectory']['distance_mm']:.0f} mm) "
                 f"and its ground truth in {args.output_dir / 'truth'}")
    progress.result(files=[summary["video"], str(args.output_dir / "landmarks.json")])
    return 0


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser().parse_args(argv),
                    "interrupted; finished steps are kept and a re-run resumes from them")
