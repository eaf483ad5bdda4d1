"""Structure from Motion on the selected frames: pycolmap (default), VGGSfM in its own environment, or imports.

Every backend ends in the same `Scene` (cameras in the OpenCV convention + coloured points) and the same files:
`sfm/sparse/` (COLMAP model), `cameras.json`, `points.ply`, `sfm_report.json`. The result is checked, because a
wrong reconstruction can look fine (all frames registered, low reprojection error): the camera path must be a
smooth arc, the field of view plausible for a phone, the reprojection error low.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.fileio import atomic_write_text

from .cameras import Camera, Scene, write_cameras_json, write_points_ply
from .options import SfmOptions
from .workspace import VideoWorkspace as W

CAMERA_TYPES = ("SIMPLE_RADIAL", "RADIAL", "SIMPLE_PINHOLE", "PINHOLE")
MIN_REGISTERED_FRACTION = 0.6
EXHAUSTIVE_MAX_FRAMES = 15             # "auto" matching: every pair up to this many frames, else sequential
VGGSFM_HELP = (
    "VGGSfM runs in its own Python environment (it needs CUDA, its hub weights and pycolmap 3.10, which conflict "
    "with ours). Set it up once:\n"
    "  git clone https://github.com/facebookresearch/vggsfm && cd vggsfm && bash install.sh   (creates a conda env)\n"
    "  download its checkpoint once while online (the first demo.py run does it)\n"
    "then pass --vggsfm_python /path/to/that/env/bin/python --vggsfm_dir /path/to/vggsfm, or run it yourself and "
    "bring its output in with --import_colmap <scene>/sparse or --import_vggsfm <predictions.pt>.")


@dataclass
class ColmapOptions:
    """What `run_colmap` needs; the defaults are the command line's (`SfmOptions`)."""
    camera_type: str = SfmOptions.camera_type
    shared_camera: bool = SfmOptions.shared_camera
    max_image_size: int = SfmOptions.max_image_size
    max_features: int = SfmOptions.max_features
    peak_threshold: float = SfmOptions.sift_peak_threshold
    matching: str = SfmOptions.matching
    overlap: int = SfmOptions.overlap
    threads: int = SfmOptions.sfm_threads
    seed: int = 0
    ba_global_ratio: float = SfmOptions.ba_global_ratio


@dataclass
class SfmResult:
    scene: Scene
    report: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- conversion
def camera_from_colmap(cam, image_name: str, cam_from_world) -> Camera:
    """OpenCV camera from a pycolmap camera and pose (COLMAP puts pixel centres at +0.5: shift to integers)."""
    model = cam.model_name if hasattr(cam, "model_name") else str(cam.model).split(".")[-1]
    p = np.asarray(cam.params, float)
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy = p[1], p[2]
        dist = [p[3] if len(p) > 3 else 0.0, p[4] if len(p) > 4 else 0.0]
    elif model in ("PINHOLE", "OPENCV", "FULL_OPENCV"):
        fx, fy, cx, cy = p[:4]
        dist = [p[4], p[5]] if len(p) > 5 else [0.0, 0.0]
    else:
        raise UserError(f"unsupported COLMAP camera model {model} (use one of {', '.join(CAMERA_TYPES)})")
    K = np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]])
    m = np.asarray(cam_from_world.matrix(), float)
    return Camera(image_name, K, m[:, :3], m[:, 3], int(cam.width), int(cam.height), np.array(dist, float))


def scene_from_colmap(rec) -> Scene:
    images = sorted((im for im in rec.images.values() if im.has_pose), key=lambda im: im.name)
    cams = [camera_from_colmap(rec.cameras[im.camera_id], im.name, im.cam_from_world()) for im in images]
    pts = rec.points3D
    xyz = np.array([p.xyz for p in pts.values()], float).reshape(-1, 3)
    rgb = np.array([p.color for p in pts.values()], np.uint8).reshape(-1, 3)
    err = np.array([p.error for p in pts.values()], float)
    return Scene(cams, xyz, rgb, err)


def _pycolmap():
    """pycolmap, imported so that Cancel keeps working: its logging library takes SIGTERM over on import (a
    native stack dump and exit -15 instead of a clean stop); the handler that was there is put back."""
    import signal
    import threading
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    import pycolmap
    if threading.current_thread() is threading.main_thread():
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
    return pycolmap


def read_colmap(path: Path):
    pycolmap = _pycolmap()
    path = Path(path)
    if (path / "0").is_dir() and not (path / "cameras.bin").exists() and not (path / "cameras.txt").exists():
        path = path / "0"
    if not ((path / "cameras.bin").exists() or (path / "cameras.txt").exists()):
        raise UserError(f"{path}: not a COLMAP model folder (expected cameras/images/points3D .bin or .txt)")
    try:
        return pycolmap.Reconstruction(str(path))
    except Exception as exc:
        raise UserError(f"{path}: cannot read the COLMAP model ({exc})") from None


# ----------------------------------------------------------------------------------------------- pycolmap
def run_colmap(image_dir: Path, work_dir: Path, options: ColmapOptions, progress=None) -> SfmResult:
    """SIFT, video-suited matching, incremental mapping; the largest model is kept."""
    pycolmap = _pycolmap()
    pycolmap.logging.minloglevel = 2            # COLMAP's INFO lines would drown the progress bars
    if options.camera_type not in CAMERA_TYPES:
        raise UserError(f"--camera_type must be one of {', '.join(CAMERA_TYPES)}, got {options.camera_type}")
    names = sorted(p.name for p in Path(image_dir).glob("*.png"))
    if len(names) < 3:
        raise UserError(f"{image_dir}: need at least 3 frames for SfM, found {len(names)} (run extract-frames)")
    threads = options.threads if options.threads > 0 else (os.cpu_count() or 1)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    db = work_dir / "database.db"
    if db.exists():
        db.unlink()
    times = {}
    stage = _stage(progress)
    t = time.perf_counter()
    with stage("sfm: features", total=1.0):
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = options.camera_type
        ext = pycolmap.FeatureExtractionOptions()
        ext.max_image_size = options.max_image_size
        ext.num_threads = threads
        ext.sift.max_num_features = options.max_features
        ext.sift.peak_threshold = options.peak_threshold
        pycolmap.extract_features(db, image_dir, image_names=names,
                                  camera_mode=pycolmap.CameraMode.SINGLE if options.shared_camera
                                  else pycolmap.CameraMode.PER_IMAGE,
                                  reader_options=reader, extraction_options=ext, device=pycolmap.Device.cpu)
    times["features"] = time.perf_counter() - t
    t = time.perf_counter()
    matching = options.matching if options.matching != "auto" else \
        ("exhaustive" if len(names) <= EXHAUSTIVE_MAX_FRAMES else "sequential")
    with stage(f"sfm: matching ({matching})", total=1.0):
        mopt = pycolmap.FeatureMatchingOptions()
        mopt.num_threads = threads
        if matching == "exhaustive":
            pycolmap.match_exhaustive(db, matching_options=mopt, device=pycolmap.Device.cpu)
        else:
            pair = pycolmap.SequentialPairingOptions()
            pair.overlap = options.overlap
            pair.quadratic_overlap = True
            pycolmap.match_sequential(db, matching_options=mopt, pairing_options=pair, device=pycolmap.Device.cpu)
    times["matching"] = time.perf_counter() - t
    t = time.perf_counter()
    sparse = work_dir / "sparse"
    tmp_sparse = Path(tempfile.mkdtemp(prefix=".sparse-", dir=work_dir))
    try:
        with stage("sfm: mapping", total=len(names)) as update:
            mapper = pycolmap.IncrementalPipelineOptions()
            mapper.num_threads = threads
            mapper.random_seed = options.seed
            mapper.ba_global_frames_ratio = mapper.ba_global_points_ratio = options.ba_global_ratio
            counter = {"n": 0}

            def next_image():
                counter["n"] += 1
                update(min(counter["n"], len(names)), f"{counter['n']} images")
            # quiet while mapping: its one error ("Failed to create any sparse model") is said below, in one line
            pycolmap.logging.minloglevel = 3
            try:
                models = pycolmap.incremental_mapping(db, image_dir, tmp_sparse, mapper,
                                                      next_image_callback=next_image)
            finally:
                pycolmap.logging.minloglevel = 2
        times["mapping"] = time.perf_counter() - t
        if not models:
            raise UserError(f"SfM could not register any frames of {image_dir}: too little texture or overlap. "
                            f"Move slower around the patient, use more light, keep the torso filling the frame")
        sizes = {k: m.num_reg_images() for k, m in models.items()}
        best = max(sizes, key=sizes.get)
        rec = models[best]
        if sizes[best] < MIN_REGISTERED_FRACTION * len(names):
            extra = f" in {len(models)} disconnected models ({sorted(sizes.values(), reverse=True)})" \
                if len(models) > 1 else ""
            raise UserError(f"SfM registered only {sizes[best]} of {len(names)} frames{extra}. Move slower and "
                            f"more steadily, use more light, avoid motion blur, keep the torso in view")
        out = sparse / "0"
        if sparse.exists():
            shutil.rmtree(sparse)
        out.mkdir(parents=True)
        rec.write(out)
    finally:
        shutil.rmtree(tmp_sparse, ignore_errors=True)
    scene = scene_from_colmap(rec)
    report = {"backend": "colmap", "matching": matching, "frames": len(names), "registered": rec.num_reg_images(),
              "models": len(models), "model_sizes": sorted(sizes.values(), reverse=True),
              "points": rec.num_points3D(), "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()),
              "mean_track_length": float(rec.compute_mean_track_length()),
              "seconds": {k: round(v, 2) for k, v in times.items()}, "threads": threads,
              "camera_type": options.camera_type, "shared_camera": options.shared_camera}
    return SfmResult(scene, report)


def _stage(progress):
    from contextlib import nullcontext
    if progress is None:
        return lambda *a, **k: nullcontext(lambda *x, **y: None)
    return progress.stage


# ----------------------------------------------------------------------------------------------- imports
def import_colmap(path: Path, image_dir: Path) -> SfmResult:
    rec = read_colmap(path)
    scene = scene_from_colmap(rec)
    _check_names(scene, image_dir, path)
    return SfmResult(scene, {"backend": "import_colmap", "source": str(path), "registered": len(scene.cameras),
                             "points": len(scene.points),
                             "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error())})


def import_vggsfm(path: Path, image_dir: Path) -> SfmResult:
    """VGGSfM predictions (.pt): points3D [N,3], extrinsics_opencv [F,3,4], intrinsics_opencv [F,3,3],
    optional points3D_rgb / points_rgb, image names (`image_names`/`img_names`) and `depth_dict`."""
    import torch
    path = Path(path)
    if not path.is_file():
        raise UserError(f"VGGSfM predictions not found: {path}")
    try:
        pred = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: cannot read the VGGSfM predictions ({exc.__class__.__name__}: {exc})") from None
    missing = [k for k in ("points3D", "extrinsics_opencv", "intrinsics_opencv") if k not in pred]
    if missing:
        raise UserError(f"{path}: missing keys {missing} (expected points3D, extrinsics_opencv, intrinsics_opencv)")
    arr = lambda v: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, float)   # noqa: E731
    ext, intr, pts = arr(pred["extrinsics_opencv"]), arr(pred["intrinsics_opencv"]), arr(pred["points3D"])
    if ext.ndim != 3 or ext.shape[1:] != (3, 4) or intr.shape != (len(ext), 3, 3) or pts.ndim != 2 or pts.shape[1] != 3:
        raise UserError(f"{path}: unexpected shapes extrinsics {ext.shape}, intrinsics {intr.shape}, points {pts.shape}")
    names = list(pred.get("image_names", pred.get("img_names", []))) or sorted(p.name for p in Path(image_dir).glob("*.png"))
    if len(names) != len(ext):
        raise UserError(f"{path}: {len(ext)} cameras but {len(names)} frames in {image_dir}")
    import cv2
    cams = []
    for name, E, K in zip(names, ext, intr):
        img = cv2.imread(str(Path(image_dir) / name))
        h, w = img.shape[:2] if img is not None else (int(round(2 * K[1, 2] + 1)), int(round(2 * K[0, 2] + 1)))
        cams.append(Camera(name, K, E[:, :3], E[:, 3], w, h))
    rgb = pred.get("points3D_rgb", pred.get("points_rgb"))
    rgb = np.zeros((len(pts), 3), np.uint8) if rgb is None else arr(rgb)
    if rgb.max() <= 1.0:
        rgb = rgb * 255
    depth = {k: arr(v) for k, v in dict(pred.get("depth_dict", {}) or {}).items()}
    scene = Scene(cams, pts, rgb.astype(np.uint8), None, depth)
    return SfmResult(scene, {"backend": "import_vggsfm", "source": str(path), "registered": len(cams),
                             "points": len(pts), "depth_maps": len(depth)})


def _check_names(scene: Scene, image_dir: Path, source: Path) -> None:
    have = {p.name for p in Path(image_dir).glob("*.png")}
    unknown = [n for n in scene.names if n not in have]
    if unknown:
        raise UserError(f"{source}: images {unknown[:3]} are not frames in {image_dir} (the model must be computed "
                        f"on the extracted frames)")


def run_vggsfm(out_dir: Path, python: Path | None, vggsfm_dir: Path | None, query_method: str = "aliked",
               query_frame_num: int = 3, max_query_pts: int = 4096, num_ba_iterations: int = 3,
               dense_depth: bool = False, camera_type: str = "SIMPLE_RADIAL", shared_camera: bool = True) -> SfmResult:
    """Run VGGSfM's demo.py in the user's own environment as a child process, then import its COLMAP output."""
    if python is None or vggsfm_dir is None:
        raise UserError("--backend vggsfm needs --vggsfm_python and --vggsfm_dir.\n" + VGGSFM_HELP)
    python, vggsfm_dir = Path(python), Path(vggsfm_dir)
    if not python.is_file():
        raise UserError(f"--vggsfm_python {python}: not an interpreter.\n" + VGGSFM_HELP)
    if not (vggsfm_dir / "demo.py").is_file():
        raise UserError(f"--vggsfm_dir {vggsfm_dir}: no demo.py there.\n" + VGGSFM_HELP)
    out_dir = Path(out_dir)
    scene_dir = out_dir / W.SFM_DIR / "vggsfm"
    if scene_dir.exists():
        shutil.rmtree(scene_dir)
    scene_dir.mkdir(parents=True)
    shutil.copytree(out_dir / W.IMAGES, scene_dir / "images")
    args = [str(python), "demo.py", f"SCENE_DIR={scene_dir}", f"query_method={query_method}",
            f"query_frame_num={query_frame_num}", f"max_query_pts={max_query_pts}",
            f"robust_refine={num_ba_iterations}", f"camera_type={camera_type}",
            f"shared_camera={shared_camera}", f"dense_depth={dense_depth}"]
    t = time.perf_counter()
    proc = subprocess.run(args, cwd=vggsfm_dir, capture_output=True, text=True)   # list args: no shell
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise UserError(f"VGGSfM failed (exit {proc.returncode}):\n{tail}\n" + VGGSFM_HELP)
    result = import_colmap(scene_dir / "sparse", out_dir / W.IMAGES)
    depth_dir = scene_dir / "depths"
    if depth_dir.is_dir():
        import cv2
        for f in depth_dir.glob("*.exr"):
            d = cv2.imread(str(f), cv2.IMREAD_ANYDEPTH)
            if d is not None:
                result.scene.depth[f.stem + ".png"] = d.astype(np.float32)
    result.report.update({"backend": "vggsfm", "seconds": {"vggsfm": round(time.perf_counter() - t, 2)}})
    return result


# ----------------------------------------------------------------------------------------------- checks
def validate(scene: Scene, num_frames: int, reprojection_error: float | None) -> list[str]:
    """Reasons to distrust an SfM result that may look fine; empty when it passes."""
    problems = []
    cams = scene.cameras
    if len(cams) < max(3, MIN_REGISTERED_FRACTION * num_frames):
        problems.append(f"only {len(cams)} of {num_frames} frames registered")
    fov = [np.degrees(2 * np.arctan(max(c.width, c.height) / 2 / c.K[0, 0])) for c in cams]
    if fov and not 35 <= np.median(fov) <= 110:
        problems.append(f"implausible field of view {np.median(fov):.0f} deg across the long side (phones: 55-85); "
                        f"the focal length is probably wrong")
    if reprojection_error is not None and reprojection_error > 2.0:
        problems.append(f"mean reprojection error {reprojection_error:.2f} px (expected under 2)")
    k1 = [abs(c.dist[0]) for c in cams]
    if k1 and max(k1) > 0.5:
        problems.append(f"strong radial distortion k1={max(k1):.2f}: the calibration is probably wrong")
    if len(cams) >= 4:
        centers = np.stack([c.center for c in cams])
        steps = np.linalg.norm(np.diff(centers, axis=0), axis=1)
        med = np.median(steps)
        if med <= 0 or steps.max() > 6 * med:
            problems.append(f"the camera path jumps (largest step {steps.max() / max(med, 1e-12):.1f}x the median): "
                            f"some frames are placed wrongly")
        fwd = np.stack([c.forward for c in cams])
        turn = np.degrees(np.arccos(np.clip((fwd[1:] * fwd[:-1]).sum(1), -1, 1)))
        if turn.max() > 35:
            problems.append(f"the viewing direction turns {turn.max():.0f} deg between neighbouring frames")
        # a smooth arc around the subject: cameras look towards a common centre in front of them
        centre = orbit_centre(cams)
        depth = np.array([(c.R @ centre + c.t)[2] for c in cams])
        if (depth <= 0).mean() > 0.1:
            problems.append("the cameras do not look at a common subject (not an arc around the patient)")
    return problems


def orbit_centre(cams: list[Camera]) -> np.ndarray:
    """Least-squares point nearest to every camera's optical axis (what the video circles)."""
    A, b = np.zeros((3, 3)), np.zeros(3)
    for c in cams:
        d = c.forward
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ c.center
    return np.linalg.lstsq(A, b, rcond=None)[0]


def write_outputs(out_dir: Path, result: SfmResult, num_frames: int) -> dict:
    """cameras.json, points.ply, sfm_report.json (with the validation)."""
    out_dir = Path(out_dir)
    scene = result.scene
    problems = validate(scene, num_frames, result.report.get("mean_reprojection_error_px"))
    report = {**result.report, "valid": not problems, "problems": problems,
              "fov_deg": float(np.median([np.degrees(2 * np.arctan(max(c.width, c.height) / 2 / c.K[0, 0]))
                                          for c in scene.cameras]))}
    write_cameras_json(scene.cameras, out_dir / W.CAMERAS, {"backend": report.get("backend")})
    write_points_ply(out_dir / W.POINTS, scene.points, scene.colors)
    if scene.depth:
        np.savez_compressed(out_dir / W.DEPTH, **{k: v for k, v in scene.depth.items()})
    atomic_write_text(out_dir / W.SFM_REPORT, json.dumps(report, indent=1))
    return report
