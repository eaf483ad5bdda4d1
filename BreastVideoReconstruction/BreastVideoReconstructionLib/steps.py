"""The video pipeline's steps, each `(workspace, options, ...) -> report`, resumable: a step whose stamp (hash of
its inputs, options and upstream stamps) is current returns its recorded report with `skipped: True`.

Data flows one way: video -> frames -> cameras + points -> landmarks -> aligned cloud -> shape code -> mesh.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import trimesh

from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.fileio import atomic_path, atomic_write_text
from BreastShapeModelLib.landmarks import LANDMARK_NAMES
from BreastShapeModelLib.options import as_dict
from BreastShapeModelLib.progress import Progress
from BreastShapeModelLib.workspace import file_key, stamp_of

from . import scene_io as P
from .cameras import read_cameras_json, read_points_ply, write_points_ply
from .options import AlignOptions, ColourOptions, FrameOptions, SfmOptions, VideoFitOptions
from .workspace import VideoWorkspace as W


def _reuse(ws: W, step: str, key: str, force: bool) -> dict | None:
    if not force and ws.is_done(step, key):
        return {"skipped": True, **ws.step_report(step)}
    return None


def _cloud_upstream(ws: W, use_dense: bool) -> tuple[bool, list]:
    """Whether the dense cloud is used, and the stamps of the steps the cloud comes from."""
    with_dense = use_dense and ws.has_step("dense")
    return with_dense, [ws.step_key("sfm")] + ([ws.step_key("dense")] if with_dense else [])


def frames(ws: W, video: Path, opts: FrameOptions, progress: Progress, include=(), force: bool = False) -> dict:
    """Sharpness-aware frame selection -> images/, frames.json."""
    from .frames import extract_frames, read_frames_json
    if not Path(video).is_file():
        raise UserError(f"video not found: {video}")
    base = {"video": file_key(video), "n": opts.num_frames, "uniform": opts.uniform, "thr": opts.sharpness_threshold,
            "max": opts.max_frame_size}

    def key_of(selected) -> str:
        """The stamp names the frames actually selected: a selection made again to include the landmarks' video
        frame is another selection, so SfM and everything after it run again on the new images."""
        return stamp_of("frames", {**base, "frames": sorted(int(i) for i in selected)})
    try:
        have = [f["source_frame"] for f in read_frames_json(ws.root)["frames"]]
    except (UserError, KeyError, TypeError):
        have = None
    if have is not None and set(include) <= set(have) and (done := _reuse(ws, "frames", key_of(have), force)):
        return done                     # the same options, and the landmarks' frame is among them already
    rec = extract_frames(Path(video), ws.root, opts.num_frames, opts.uniform, opts.sharpness_threshold,
                         tuple(include), opts.max_frame_size, progress)
    key = key_of(f["source_frame"] for f in rec["frames"])
    rep = {"frames": len(rec["frames"]), "video": rec["video"], "threshold": rec["threshold"],
           "below_threshold": sum(f["below_threshold"] for f in rec["frames"])}
    ws.mark_done("frames", key, [W.FRAMES, W.IMAGES], rep)
    return rep


def sfm(ws: W, opts: SfmOptions, progress: Progress, force: bool = False) -> dict:
    """Structure from motion (pycolmap, VGGSfM, or an imported model) -> cameras.json, points.ply."""
    from . import sfm as S
    opts.check()
    upstream = ws.step_key("frames")
    fields = ("backend", "camera_type", "shared_camera", "max_image_size", "max_features", "sift_peak_threshold",
              "matching", "overlap", "ba_global_ratio", "query_method", "query_frame_num",
              "max_query_pts", "num_ba_iterations", "dense_depth")
    key = stamp_of("sfm", {"up": upstream, **{k: getattr(opts, k) for k in fields},
                           "colmap": file_key(opts.import_colmap), "vggsfm": file_key(opts.import_vggsfm)})
    if (done := _reuse(ws, "sfm", key, force)) is not None:
        return done
    n = len(list(ws.images.glob("*.png")))
    if opts.import_colmap is not None:
        result = S.import_colmap(opts.import_colmap, ws.images)
    elif opts.import_vggsfm is not None:
        result = S.import_vggsfm(opts.import_vggsfm, ws.images)
    elif opts.backend == "vggsfm":
        result = S.run_vggsfm(ws.root, opts.vggsfm_python, opts.vggsfm_dir, opts.query_method, opts.query_frame_num,
                              opts.max_query_pts, opts.num_ba_iterations, opts.dense_depth, opts.camera_type,
                              opts.shared_camera)
    else:
        # COLMAP's SQLite database aborts the whole process when the disk fills: refuse before, with room for
        # every frame's features (keypoints + 128-byte descriptors), their matches and the models
        ws.check_space(20 + n * opts.max_features * 400 / 2 ** 20, f"SfM on {n} frames")
        result = S.run_colmap(ws.images, ws / W.SFM_DIR,
                              S.ColmapOptions(opts.camera_type, opts.shared_camera, opts.max_image_size,
                                              opts.max_features, opts.sift_peak_threshold, opts.matching,
                                              opts.overlap, opts.sfm_threads, ba_global_ratio=opts.ba_global_ratio),
                              progress)
    rep = S.write_outputs(ws.root, result, n)
    if not rep["valid"]:
        progress.warn("SfM result looks wrong: " + "; ".join(rep["problems"]))
    ws.mark_done("sfm", key, [W.CAMERAS, W.POINTS, W.SFM_REPORT], rep)
    return rep


def dense(ws: W, progress: Progress, force: bool = False) -> dict:
    """Rectified two-view stereo between neighbouring frames -> points_dense.ply."""
    from .dense import densify
    key = stamp_of("dense", {"up": ws.step_key("sfm")})
    if (done := _reuse(ws, "dense", key, force)) is not None:
        return done
    scene = P.load_scene(ws.root, dense=False)
    with progress.stage("densify", total=max(1, len(scene.cameras) - 1), unit="pair") as update:
        cloud, rep = densify(scene, ws.images, on_pair=lambda k, n: update(k))
    write_points_ply(ws / W.POINTS_DENSE, cloud.points, cloud.colors)
    ws.mark_done("dense", key, [W.POINTS_DENSE], rep)
    return rep


def align(ws: W, landmarks: Path, opts: AlignOptions, model, progress: Progress, use_dense: bool = True,
          force: bool = False) -> dict:
    """Landmarks to 3D, weighted by their evidence; similarity to the model; prune -> aligned_pt_pruned.ply.
    `model`: a `LazyModel` (loaded only when the step runs)."""
    import cv2
    from BreastShapeModelLib.landmark_checks import check_landmarks
    from .align import LOO_TOLERANCE, align_and_prune, landmark_evidence, landmarks_to_3d, robust_landmark_weights
    from .landmarks2d import check_inside, overlay, read_landmarks_2d, save_rgb
    lm = read_landmarks_2d(landmarks)
    with_dense, up = _cloud_upstream(ws, use_dense)
    threshold = opts.threshold()
    key = stamp_of("align", {"up": up, "lm": file_key(landmarks), "frame": opts.landmark_frame, "thr": threshold,
                             "pruning": opts.pruning,
                             "refine": opts.refine_landmarks, "robust": opts.robust_landmarks, "model": model.key,
                             "debug": opts.debug})
    if (done := _reuse(ws, "align", key, force)) is not None:
        return done
    net = model.get()
    scene = P.load_scene(ws.root, dense=with_dense)
    ref = P.frame_index(ws.root, scene, lm, opts.landmark_frame)
    cam = scene.cameras[ref]
    pixels = P.landmark_pixels_in_frame(ws.root, lm)
    check_inside(type(lm)(pixels, lm.image, lm.video_frame, lm.source), cam.width, cam.height)
    with progress.stage("align", total=3, unit="step") as update:
        lms3, methods, info = landmarks_to_3d(scene, ws.images, ref, pixels, opts.refine_landmarks)
        update(1, "landmarks in 3D")
        evidence, why = landmark_evidence(methods, info["per_landmark"])
        weights, loo = robust_landmark_weights(lms3, net.average_anchors, evidence) if opts.robust_landmarks \
            else (np.ones(6), {})
        check_landmarks(lms3, scene.points, f"{landmarks} (in 3D, on frame {cam.name})", trusted=weights >= 0.5,
                        viewpoint=np.mean([c.center for c in scene.cameras], axis=0))
        res = align_and_prune(net, scene, lms3, threshold, weights)
        update(2, "aligned and pruned")
        write_points_ply(ws / W.LANDMARKS_3D, lms3)
        write_points_ply(ws / W.ALIGNED_LANDMARKS, res.aligned_landmarks)
        write_points_ply(ws / W.ALIGNED_CLOUD, res.aligned_points, res.aligned_colors)
        if opts.debug:
            pts, cols = res.debug["aligned_all"]
            write_points_ply(ws / W.DEBUG_ALIGNED_ALL, pts, cols)
            write_points_ply(ws / W.DEBUG_RAY_LANDMARKS, np.asarray(info["ray_points"]))
        img = cv2.imread(str(ws.images / cam.name))[:, :, ::-1]
        reproj = cam.project(lms3)[0]
        save_rgb(ws / W.OVERLAY, overlay(img, pixels, extra=reproj))
        update(3)
    loo_mm = np.asarray(loo.get("loo_residual", [0.0] * 6)) * net.mm_per_unit
    doubtful = []
    for i in np.flatnonzero(weights < 0.5):
        inconsistent = loo_mm[i] > LOO_TOLERANCE[i] * net.mm_per_unit
        reason = (f"{loo_mm[i]:.0f} mm from where the other five put it" if inconsistent else "weak evidence") + \
            f"; found by {why[i]}"
        doubtful.append({"landmark": LANDMARK_NAMES[i], "weight": round(float(weights[i]), 3),
                         "inconsistent": bool(inconsistent), "reason": reason,
                         "leave_one_out_mm": round(float(loo_mm[i]), 1)})
        progress.warn(f"landmark '{LANDMARK_NAMES[i]}' " + ("left out" if weights[i] == 0 else
                                                             f"down-weighted to {weights[i]:.2f}") + f": {reason}")
    rep = {"landmark_frame": cam.name, "pruning_mode": opts.pruning, "methods": methods, "landmarks": info["per_landmark"], **res.counts,
           "landmark_weights": weights.round(4).tolist(), "landmark_evidence": why, "down_weighted": doubtful, **loo,
           "sfm_to_model": res.to_model.matrix().tolist(),
           "reprojection_px": np.linalg.norm(reproj - pixels, axis=1).round(3).tolist()}
    atomic_write_text(ws / W.ALIGN_REPORT, json.dumps(rep, indent=1))
    ws.mark_done("align", key, [W.ALIGNED_CLOUD, W.ALIGNED_LANDMARKS, W.LANDMARKS_3D, W.ALIGN_REPORT, W.OVERLAY], rep)
    return rep


def find_torso(ws: W, opts: AlignOptions, model, progress: Progress, use_dense: bool = True,
               force: bool = False) -> dict:
    """No landmark file: the torso found in the cloud from the camera arc and the mean torso (propose.py), the
    cloud moved into the model's frame and pruned -> the files of `align`, with `"auto": true` in its report (the
    fit then runs without landmarks and writes the landmarks it found)."""
    from .align import mean_surface_distance
    from .propose import find_torso_in_scene
    with_dense, up = _cloud_upstream(ws, use_dense)
    threshold = opts.threshold()
    key = stamp_of("align", {"up": up, "auto": True, "thr": threshold, "pruning": opts.pruning, "model": model.key,
                             "frame": opts.landmark_frame})
    if (done := _reuse(ws, "align", key, force)) is not None:
        return done
    net = model.get()
    scene = P.load_scene(ws.root, dense=with_dense)
    ref = P.frame_index(ws.root, scene, None, opts.landmark_frame)
    with progress.stage("find the torso", total=2, unit="step") as update:
        match = find_torso_in_scene(scene, net, progress)
        update(1, "torso found")
        S = match.to_model
        pts = S.apply(scene.points)
        keep = match.inside & (mean_surface_distance(net, pts) <= threshold)
        if keep.sum() < 100:
            raise UserError(f"no torso found: only {int(keep.sum())} SfM points lie on the matched torso")
        expected = net.average_anchors                      # where the mean torso has its landmarks (model frame)
        write_points_ply(ws / W.LANDMARKS_3D, S.inverse().apply(expected))
        write_points_ply(ws / W.ALIGNED_LANDMARKS, expected)
        write_points_ply(ws / W.ALIGNED_CLOUD, pts[keep], scene.colors[keep])
        update(2)
    rep = {"auto": True, "landmark_frame": scene.cameras[ref].name, "pruning_mode": opts.pruning,
           "methods": ["found automatically"] * 6, "torso_match": match.report(),
           "input_points": int(len(pts)), "kept_points": int(keep.sum()), "pruned_points": int((~keep).sum()),
           "pruning_dist_threshold": threshold, "landmark_weights": [0.0] * 6, "down_weighted": [],
           "sfm_to_model": S.matrix().tolist()}
    atomic_write_text(ws / W.ALIGN_REPORT, json.dumps(rep, indent=1))
    ws.mark_done("align", key, [W.ALIGNED_CLOUD, W.ALIGNED_LANDMARKS, W.LANDMARKS_3D, W.ALIGN_REPORT], rep)
    return rep


def _mm_per_sfm(align_rep: dict, rec) -> float:
    """Millimetres per SfM unit by a fit: alignment, the fit's own map into model space, the model's scale."""
    S = np.asarray(align_rep["sfm_to_model"])
    return float(np.cbrt(abs(np.linalg.det(S[:3, :3])))) * rec.to_model.scale * rec.scale_mm_per_unit


def _find_nipples(ws: W, align_rep: dict, rec, progress: Progress) -> list:
    """The nipples on the skin (nipples.py) near a fit's nipple anchors, in the SfM frame."""
    from .nipples import find_nipples
    S = np.asarray(align_rep["sfm_to_model"])
    aligned = rec.to_model.inverse().apply(rec.anchors / rec.scale_mm_per_unit) if rec.output_frame == "metric" \
        else rec.anchors                         # the fit's input frame: the aligned cloud's
    anchors_sfm = (aligned - S[:3, 3]) @ np.linalg.inv(S[:3, :3]).T
    mm_per_sfm = _mm_per_sfm(align_rep, rec)
    pts, colors = read_points_ply(ws / W.POINTS)
    with progress.stage("find the nipples", total=1, unit="step") as update:
        found = find_nipples(anchors_sfm, pts, colors, read_cameras_json(ws / W.CAMERAS), ws.images, mm_per_sfm)
        update(1, ", ".join(f"{side}: {'found in ' + str(n.views) + ' frames' if n.found else 'not found'}"
                            for side, n in zip(("left", "right"), found)))
    return found


def _refine_guessed_nipples(ws: W, align_rep: dict, rec, lms: np.ndarray, weights: np.ndarray,
                            progress: Progress) -> tuple[np.ndarray, np.ndarray, list]:
    """Clicked nipples whose depth is a guess (no multi-view track, so a single ray or the photo-consistency sweep
    placed them: on an oblique frame a ray grazing the breast puts one centimetres off, and the scale with it) are
    searched on the skin as in landmark-free runs (nipples.py, from the fitted anchors). When the nipple found lies
    within `CLICK_RAY_MM` of the clicked ray, the point of that ray nearest to it replaces the guess at full weight:
    the click says where on the frame, the frames agreeing on the nipple say how deep.
    -> landmarks and weights (aligned frame), one report row per guessed nipple."""
    from .align import EVIDENCE
    from .nipples import depth_on_ray
    from .options import CLICK_RAY_MM
    methods = align_rep.get("methods", [])
    guessed = [k for k in (2, 3) if k < len(methods) and methods[k] in ("ray", "sweep")]
    if not guessed:
        return lms, weights, []
    S = np.asarray(align_rep["sfm_to_model"])
    found = _find_nipples(ws, align_rep, rec, progress)
    cam = next(c for c in read_cameras_json(ws / W.CAMERAS) if c.name == align_rep["landmark_frame"])
    mm_per_sfm = _mm_per_sfm(align_rep, rec)
    lms, weights, rows = lms.copy(), np.asarray(weights, float).copy(), []
    for k in guessed:
        n = found[k - 2]
        clicked = (lms[k] - S[:3, 3]) @ np.linalg.inv(S[:3, :3]).T
        point, gap, moved = depth_on_ray(cam.center, clicked, n.point, mm_per_sfm, CLICK_RAY_MM)
        used = n.found and point is not None
        if used:
            lms[k], weights[k] = point @ S[:3, :3].T + S[:3, 3], EVIDENCE["track"]
        rows.append({"landmark": LANDMARK_NAMES[k], "clicked_depth_from": methods[k], "found": n.found,
                     "frames_agreeing": n.views, "from_clicked_ray_mm": round(gap, 1),
                     "depth_change_mm": round(moved, 1), "used": used})
        progress.log(f"{LANDMARK_NAMES[k]}: its depth on the clicked frame was a guess ({methods[k]}); " + (
            f"found on the skin in {n.views} frames, {gap:.1f} mm from the clicked ray: its depth is taken from there "
            f"({moved:+.1f} mm along the ray)" if used else "not found on the skin" if not n.found else
            f"the one found on the skin lies {gap:.1f} mm from the clicked ray: the click's guess is kept"))
    return lms, weights, rows


def _single_rays_onto_skin(ws: W, align_rep: dict, rec, landmarks: np.ndarray, out_from_sfm: np.ndarray,
                           refined: list, progress: Progress) -> tuple[np.ndarray, list]:
    """Clicked landmarks that only a single ray placed (no track, no photo-consistency: among the cloud points
    nearest to the ray, the one nearest to the camera) and that float more than `OFF_SKIN_MM` in front of the
    fitted skin (a stray point between camera and body) take the ray's first hit on the skin: what the camera saw
    at the click is the first skin on its ray (bench seed 14: a coracoid 62 mm off, 9 mm after). A guess *behind*
    the first hit is kept: there the skin in front may be the model's fill-in (Anny seed 22: a right guess 2 mm off,
    the first hit 35 mm in front of it). Not when the ray grazes the skin (`GRAZING_DEG`), and never for landmarks
    tracked or placed by the sweep. -> landmarks (output frame), one report row per landmark floating in front."""
    from .align import first_hit
    from .options import GRAZING_DEG, OFF_SKIN_MM
    methods = align_rep.get("methods", [])
    done = {r["landmark"] for r in refined if r["used"]}
    single = [k for k, m in enumerate(methods) if m == "ray" and LANDMARK_NAMES[k] not in done]
    if not single:
        return landmarks, []
    cam = next(c for c in read_cameras_json(ws / W.CAMERAS) if c.name == align_rep["landmark_frame"])
    centre = out_from_sfm[:3, :3] @ cam.center + out_from_sfm[:3, 3]
    mm = 1.0 if rec.output_frame == "metric" else rec.to_model.scale * rec.scale_mm_per_unit   # per output unit
    out, rows = landmarks.copy(), []
    for k in single:
        hit, angle = first_hit(rec.mesh, centre, landmarks[k])
        if hit is None:
            continue
        ahead = float(np.linalg.norm(hit - centre) - np.linalg.norm(landmarks[k] - centre)) * mm
        if ahead <= OFF_SKIN_MM:                       # on the skin, or behind it: kept
            continue
        used = angle <= GRAZING_DEG
        if used:
            out[k] = hit
        rows.append({"landmark": LANDMARK_NAMES[k], "in_front_of_skin_mm": round(ahead, 1),
                     "ray_angle_deg": round(angle, 1), "used": used})
        progress.log(f"{LANDMARK_NAMES[k]}: placed by a single ray {ahead:.1f} mm in front of the fitted skin; " +
                     ("moved along its ray onto the skin" if used else
                      f"kept (the ray grazes the skin, {angle:.0f} deg)"))
    return out, rows


def _write_proposal(ws: W, align_rep: dict, anchors_sfm: np.ndarray, mm_per_model_unit: float, nipples,
                    progress: Progress) -> dict:
    """The landmarks a landmark-free fit found, on the landmark frame: landmarks_proposed.json and .png."""
    import cv2
    from .landmarks2d import overlay, save_rgb
    from .propose import proposal
    cams = read_cameras_json(ws / W.CAMERAS)
    cam = next(c for c in cams if c.name == align_rep["landmark_frame"])
    pts, _ = read_points_ply(ws / W.POINTS)
    S = np.asarray(align_rep["sfm_to_model"])
    mm_per_sfm = float(np.cbrt(abs(np.linalg.det(S[:3, :3])))) * mm_per_model_unit
    prop = proposal(cam, anchors_sfm, pts, mm_per_sfm, align_rep.get("torso_match", {}).get("drift_deg", 0.0),
                    nipples)
    atomic_write_text(ws / W.PROPOSED, json.dumps(prop, indent=1))
    img = cv2.imread(str(ws.images / cam.name))
    if img is not None:
        save_rgb(ws / W.PROPOSED_OVERLAY, overlay(img[:, :, ::-1], np.asarray(prop["points"])))
    for why in prop["unsure"]:
        progress.warn(f"landmark found without clicks may be off: {why}")
    return prop


def fit(ws: W, opts: VideoFitOptions, model, progress: Progress, force: bool = False) -> dict:
    """Fit the model to the aligned cloud -> reconstruction.ply (+ anchors, code, support), fit_report.json.

    With fit-driven pruning, the loosely pruned cloud is fitted, pruned again from the fitted surface and refitted.
    Every result is self-checked; when the check fails, the method's mean-surface pruning is tried as well and the
    better-checked result kept, with a loud warning if none passes."""
    from BreastShapeModelLib.reconstruct import RefineSettings, reconstruct_with_progress
    from BreastShapeModelLib.self_check import SELF_CHECK_FAILED
    from BreastShapeModelLib.results import fit_report, landmark_distances, write_reconstruction
    from .align import mean_surface_distance
    from .options import METHOD_PRUNING_THRESHOLD
    opts.check()
    metrical = opts.metrical or opts.nipple_to_nipple_dist is not None
    refine = RefineSettings(threshold=opts.refit_threshold)
    key = stamp_of("fit", {"up": ws.step_key("align"), "o": as_dict(opts), "m": metrical, "model": model.key})
    if (done := _reuse(ws, "fit", key, force)) is not None:
        return done
    net = model.get()
    settings = opts.settings(opts.latent_weight_for(net))
    use_refine = ws.step_report("align").get("pruning_mode", "fit") == "fit"
    pts, _ = read_points_ply(ws / W.ALIGNED_CLOUD)
    lms, _ = read_points_ply(ws / W.ALIGNED_LANDMARKS)
    align_rep = json.loads((ws / W.ALIGN_REPORT).read_text(encoding="utf-8"))
    weights = np.asarray(align_rep.get("landmark_weights", [1.0] * 6), float)
    auto = bool(align_rep.get("auto"))           # no landmarks: the cloud is in the model's frame already
    if auto:
        from BreastShapeModelLib.alignment import Similarity
        lms, weights, extra = None, None, {"to_model": Similarity.identity()}
    else:
        extra = {}
    t0 = time.perf_counter()
    attempts = [("fit-driven pruning" if use_refine else "as aligned", pts, refine if use_refine else None)]
    if use_refine:
        near_mean = mean_surface_distance(net, pts) <= METHOD_PRUNING_THRESHOLD
        if near_mean.sum() >= 100:
            attempts.append(("the method's mean-surface pruning", pts[near_mean], None))

    def fit_attempts(lms, weights, label=""):
        """The attempts in turn until one passes the self-check -> (pruning name, best result, all tried)."""
        tried = []
        for k, (name, cloud, ref) in enumerate(attempts):
            total = settings.iterations + (ref.rounds * ref.iterations if ref else 0)
            rec = reconstruct_with_progress(progress, label + ("fit" if k == 0 else "refit"), total, net, cloud, lms,
                                            settings, opts.voxel_resolution, metrical, opts.nipple_to_nipple_dist,
                                            chunk_size=opts.chunk_size, meshing=opts.meshing,
                                            landmark_weights=weights, refine=ref, **extra)
            tried.append((name, rec))
            if rec.self_check["passed"]:
                break
            if k + 1 < len(attempts):
                progress.log(f"self-check failed with {name} ({'; '.join(rec.self_check['problems'])}); trying "
                             f"{attempts[k + 1][0]}")
        best = min(tried, key=lambda t: (len(t[1].self_check["problems"]),
                                          -t[1].self_check["metrics"]["coverage"]))
        return best[0], best[1], tried

    name, rec, tried = fit_attempts(lms, weights)
    nipples, refined = None, []
    if not auto and opts.nipple_depth_from_frames:       # clicked nipples placed by a guess: depth from the frames
        lms, weights, refined = _refine_guessed_nipples(ws, align_rep, rec, lms, weights, progress)
        if any(r["used"] for r in refined):
            name, rec, tried = fit_attempts(lms, weights, "nipples from the frames: ")
    if auto:                                     # the nipples on the skin, then the fit again with them as anchors
        nipples = _find_nipples(ws, align_rep, rec, progress)
        if all(n.found for n in nipples):
            S = np.asarray(align_rep["sfm_to_model"])
            lms = rec.anchors / rec.scale_mm_per_unit if metrical else rec.anchors.copy()
            lms[2:4] = np.stack([n.point for n in nipples]) @ S[:3, :3].T + S[:3, 3]
            weights = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
            name, rec, tried = fit_attempts(lms, weights, "nipples found: ")
    if not rec.self_check["passed"]:
        rec.warnings.append(SELF_CHECK_FAILED + "; ".join(rec.self_check["problems"]))
    units = "mm" if rec.output_frame == "metric" else "model"
    sfm_to_model = np.asarray(align_rep["sfm_to_model"])
    # output frame <- SfM frame: (metric scale or identity) * reconstruct's model map * the alignment
    out_from_model = np.diag([rec.scale_mm_per_unit] * 3 + [1.0]) if metrical else np.linalg.inv(rec.to_model.matrix())
    out_from_aligned = out_from_model @ rec.to_model.matrix()
    onto_skin = []
    if auto:                                     # the fitted anchors, with the nipples found on the skin
        from BreastShapeModelLib.found_landmarks import symmetric_landmarks
        landmarks_out = rec.anchors.copy()
        if lms is not None:
            landmarks_out[2:4] = lms[2:4] @ out_from_aligned[:3, :3].T + out_from_aligned[:3, 3]
        landmarks_out, symmetry = symmetric_landmarks(rec.mesh, landmarks_out, rec.support <= rec.observed)
    else:
        landmarks_out = lms @ out_from_aligned[:3, :3].T + out_from_aligned[:3, 3]
        landmarks_out, onto_skin = _single_rays_onto_skin(ws, align_rep, rec, landmarks_out,
                                                          out_from_aligned @ sfm_to_model, refined, progress)
    report = {**fit_report(rec, units, opts.voxel_resolution), "pruning": name,
              "attempts": [{"pruning": n, "passed": r.self_check["passed"], "problems": r.self_check["problems"]}
                           for n, r in tried],
              "total_seconds": round(time.perf_counter() - t0, 2), "support_mean": float(rec.support.mean()),
              "settings": vars(settings), "options": as_dict(opts),
              "output_from_sfm": (out_from_aligned @ sfm_to_model).tolist(),
              # distances between the landmarks seen in the video (in the output frame), and between the model's
              # fitted anchors (where the model puts them: differs by its anchor error, a few mm)
              "measurements": landmark_distances(landmarks_out, units),
              "model_anchor_measurements": landmark_distances(rec.anchors, units)}
    if refined:
        report["nipples_refined"] = refined
    if onto_skin:
        report["landmarks_onto_skin"] = onto_skin
    if auto:
        out_from_sfm = np.asarray(report["output_from_sfm"])
        found_sfm = (landmarks_out - out_from_sfm[:3, 3]) @ np.linalg.inv(out_from_sfm[:3, :3]).T
        prop = _write_proposal(ws, align_rep, found_sfm, rec.scale_mm_per_unit, nipples, progress)
        seen = lms is not None
        report["landmarks"] = "found automatically: " + ("the nipples on the skin, the others the fitted anchors"
                                                         if seen else "the fitted anchors") + \
            " made symmetric about the body's plane of symmetry"
        report["symmetry_plane"] = symmetry
        report["nipples_found"] = [n.report() for n in nipples]
        if metrical:
            report["scale_source"] = "nipple_to_nipple (nipples found on the frames)" if seen else \
                "nipple_to_nipple (fitted anchors)"
            report["warnings"] = list(report.get("warnings", [])) + [
                "no landmarks: the metric scale comes from " + (
                    "the nipples found on the frames (bench/auto_landmarks_video.py: -0.6..+1.5 % on eleven synthetic "
                    "videos; an areola not centred on its nipple moves the nipple found)" if seen else
                    "the model's fitted nipples (the nipples were not found on the frames), which can be several "
                    "percent off (bench/auto_landmarks_video.py: 1-11 %)") +
                "; check landmarks_proposed.png and re-run with --landmarks (the proposed file, dragged where "
                "needed) before measuring"]
        report["proposed_landmarks"] = {k: prop[k] for k in ("image", "confidence", "unsure", "confident")}
    write_reconstruction(ws, rec, units, report, landmarks=landmarks_out)
    for w in report["warnings"]:
        progress.warn(w)
    small = {k: v for k, v in report.items() if k not in ("loss", "output_from_sfm")}
    ws.mark_done("fit", key, [W.RECONSTRUCTION, W.FIT_REPORT], small)
    return small


def colorize(ws: W, opts: ColourOptions, progress: Progress, force: bool = False) -> dict:
    """Colour the reconstruction from the frames -> reconstruction_colored.ply (per-vertex `views`)."""
    from .colorize import colorize as colour_from_frames
    key = stamp_of("colorize", {"up": ws.step_key("fit"), "rm": opts.remove_invisible})
    if (done := _reuse(ws, "colorize", key, force)) is not None:
        return done
    mesh = trimesh.load(ws.reconstruction, process=False)
    rep = json.loads(ws.fit_report.read_text(encoding="utf-8"))
    m_sfm = mesh.copy()
    m_sfm.apply_transform(np.linalg.inv(np.asarray(rep["output_from_sfm"])))
    cams = read_cameras_json(ws / W.CAMERAS)
    with progress.stage("colorize", total=len(cams), unit="frame") as update:
        rgb, seen = colour_from_frames(m_sfm, cams, ws.images, lambda k, n: update(k))
    faces = mesh.faces
    keep_v = np.ones(len(mesh.vertices), bool)
    if opts.remove_invisible:
        faces = faces[(seen[faces] > 0).all(1)]
        keep_v = np.zeros(len(mesh.vertices), bool)
        keep_v[faces.ravel()] = True
    remap = -np.ones(len(mesh.vertices), int)
    remap[keep_v] = np.arange(keep_v.sum())
    out = trimesh.Trimesh(mesh.vertices[keep_v], remap[faces], process=False,
                          vertex_colors=np.concatenate([rgb[keep_v], np.full((keep_v.sum(), 1), 255, np.uint8)], 1))
    out.vertex_attributes["views"] = seen[keep_v].astype(np.float32)
    with atomic_path(ws / W.COLORED) as tmp:
        out.export(tmp, file_type="ply")
    rep = {"vertices": int(len(out.vertices)), "seen_fraction": float((seen > 0).mean()),
           "removed_invisible": bool(opts.remove_invisible),
           "mean_views": float(seen[seen > 0].mean()) if (seen > 0).any() else 0.0}
    ws.mark_done("colorize", key, [W.COLORED], rep)
    return rep


def measure(ws: W, progress: Progress, force: bool = False) -> dict:
    """Clinical measurements of the fitted surface (millimetres) -> measurements.json/.csv/.png/.pdf."""
    from BreastShapeModelLib.measure.run import measure_result
    from BreastShapeModelLib.options import CHEST_WALL_CHOICES
    key = stamp_of("measure", {"up": ws.step_key("fit"), "chest_wall": CHEST_WALL_CHOICES[0]})
    if (done := _reuse(ws, "measure", key, force)) is not None:
        return done
    rep = measure_result(ws, progress)
    ws.mark_done("measure", key, [] if "not_measured" in rep else [W.MEASUREMENTS], rep)
    return rep
