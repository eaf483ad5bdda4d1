"""The video pipeline's steps over one output folder, resumable: each step records a stamp (hash of its inputs and
options) in `.steps/`, written only after all of its outputs, so a re-run skips finished steps and an
interrupted step starts again. Data flows one way: video -> frames -> cameras + points -> landmarks -> aligned
cloud -> shape code -> mesh -> measurements.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import trimesh

from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.fileio import atomic_path, atomic_write_text
from BreastShapeModelLib.landmarks import LANDMARK_NAMES, write_anchor_files

from .cameras import Scene, read_cameras_json, read_points_ply, write_points_ply
from .landmarks2d import Landmarks2D

STEPS = ("frames", "sfm", "dense", "landmarks", "align", "fit", "colorize")


# ----------------------------------------------------------------------------------------------- stamps
def file_key(path: Path | None) -> str | None:
    """Identity of an input file: path, size and modification time (cheap, changes when the file does)."""
    if path is None:
        return None
    p = Path(path)
    st = p.stat()
    return f"{p.resolve()}:{st.st_size}:{int(st.st_mtime_ns)}"


def stamp_of(step: str, inputs: dict) -> str:
    return hashlib.sha256(json.dumps({"step": step, **inputs}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_done(out_dir: Path, step: str, key: str) -> bool:
    path = Path(out_dir) / ".steps" / f"{step}.json"
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return rec.get("key") == key and all((Path(out_dir) / f).exists() for f in rec.get("outputs", []))


def mark_done(out_dir: Path, step: str, key: str, outputs: list[str], report: dict) -> None:
    atomic_write_text(Path(out_dir) / ".steps" / f"{step}.json",
                      json.dumps({"key": key, "outputs": outputs, "report": report}, indent=1, default=str))


def step_report(out_dir: Path, step: str) -> dict:
    try:
        return json.loads((Path(out_dir) / ".steps" / f"{step}.json").read_text(encoding="utf-8"))["report"]
    except (OSError, ValueError, KeyError):
        return {}


def step_key(out_dir: Path, step: str) -> str:
    try:
        return json.loads((Path(out_dir) / ".steps" / f"{step}.json").read_text(encoding="utf-8"))["key"]
    except (OSError, ValueError, KeyError):
        raise UserError(f"{out_dir}: the {step} step has not been run yet") from None


# ----------------------------------------------------------------------------------------------- scene i/o
def load_scene(out_dir: Path, dense: bool = True) -> Scene:
    out_dir = Path(out_dir)
    cams = read_cameras_json(out_dir / "cameras.json")
    cloud = out_dir / "points_dense.ply" if dense and (out_dir / "points_dense.ply").exists() else out_dir / "points.ply"
    pts, cols = read_points_ply(cloud)
    depth = {}
    dz = out_dir / "sfm" / "depth.npz"
    if dz.exists():
        with np.load(dz) as z:
            depth = {k: z[k] for k in z.files}
    return Scene(cams, pts, cols, None, depth)


def frame_index(out_dir: Path, scene: Scene, lm: Landmarks2D | None, landmark_frame: str | int | None) -> int:
    """Camera index of the landmark frame: from the landmark file, --landmark_frame, or the frontal camera."""
    from .frames import read_frames_json
    from .landmarks2d import frontal_camera
    name = None
    if landmark_frame is not None:
        name = f"{int(landmark_frame):03d}.png" if str(landmark_frame).isdigit() else str(landmark_frame)
    elif lm is not None and lm.image is not None:
        name = lm.image
    elif lm is not None and lm.video_frame is not None:
        frames = read_frames_json(out_dir)["frames"]
        match = [f["image"] for f in frames if f["source_frame"] == lm.video_frame]
        if not match:
            raise UserError(f"{lm.source}: video frame {lm.video_frame} is not among the extracted frames; re-run "
                            f"extract-frames with these landmarks (run does it), or give --landmark_frame")
        name = match[0]
    if name is None:
        return frontal_camera(scene.cameras)
    for i, c in enumerate(scene.cameras):
        if c.name == name:
            return i
    raise UserError(f"the landmark frame {name} was not registered by SfM (registered: "
                    f"{', '.join(scene.names[:5])}...); pick landmarks on another frame (--landmark_frame)")


def landmark_pixels_in_frame(out_dir: Path, lm: Landmarks2D) -> np.ndarray:
    """Landmarks placed on the full-size video frame, scaled to the extracted image size."""
    from .frames import read_frames_json
    if lm.video_frame is None:
        return lm.points
    scale = float(read_frames_json(out_dir).get("scale", 1.0))
    return (lm.points + 0.5) * scale - 0.5


# ----------------------------------------------------------------------------------------------- fit + colour
METHOD_PRUNING = 0.2            # the method's rule: points within 0.2 model units of the mean surface


def fit(out_dir: Path, model, settings, resolution: int, metrical: bool, nipple_mm: float | None,
        progress=None, meshing: str = "narrow_band", refine=None) -> dict:
    """Fit the model to the aligned cloud; writes reconstruction.ply, anchors, code, fit_report.json.

    With `refine` (fit-driven pruning), the loosely pruned cloud is fitted, pruned again from the fitted surface
    and refitted. Every result is self-checked; when the check fails, the method's mean-surface pruning is tried
    as well and the better-checked result kept, with a loud warning if none passes."""
    from BreastShapeModelLib.reconstruct import reconstruct
    from .align import mean_surface_distance
    out_dir = Path(out_dir)
    pts, _ = read_points_ply(out_dir / "aligned_pt_pruned.ply")
    lms, _ = read_points_ply(out_dir / "aligned_landmarks_3d.ply")
    align = json.loads((out_dir / "align_report.json").read_text(encoding="utf-8"))
    weights = np.asarray(align.get("landmark_weights", [1.0] * 6), float)
    t0 = time.perf_counter()
    attempts = [("fit-driven pruning" if refine else "as aligned", pts, refine)]
    if refine:
        near_mean = mean_surface_distance(model, pts) <= METHOD_PRUNING
        if near_mean.sum() >= 100:
            attempts.append(("the method's mean-surface pruning", pts[near_mean], None))
    tried = []
    for k, (name, cloud, ref) in enumerate(attempts):
        total = settings.iterations + (ref.rounds * ref.iterations if ref else 0)
        label = "fit" if k == 0 else "refit"
        if progress:
            with progress.stage(label, total=total, unit="it") as update:
                rec = reconstruct(model, cloud, lms, settings, resolution, metrical, nipple_mm,
                                  lambda it, loss: (it % 10 == 0) and update(it, f"loss {loss:.5f}"), meshing=meshing,
                                  landmark_weights=weights, refine=ref)
        else:
            rec = reconstruct(model, cloud, lms, settings, resolution, metrical, nipple_mm, meshing=meshing,
                              landmark_weights=weights, refine=ref)
        tried.append((name, rec))
        if rec.self_check["passed"]:
            break
        if progress and k + 1 < len(attempts):
            progress.log(f"self-check failed with {name} ({'; '.join(rec.self_check['problems'])}); trying "
                         f"{attempts[k + 1][0]}")
    name, rec = min(tried, key=lambda t: (len(t[1].self_check["problems"]), -t[1].self_check["metrics"]["coverage"]))
    if not rec.self_check["passed"]:
        rec.warnings.append("SELF-CHECK FAILED, the surface may be wrong: " + "; ".join(rec.self_check["problems"]))
    mesh = rec.mesh
    mesh.vertex_attributes["support"] = rec.support.astype(np.float32)
    with atomic_path(out_dir / "reconstruction.ply") as tmp:
        mesh.export(tmp, file_type="ply")
    units = "mm" if rec.output_frame == "metric" else "model"
    write_anchor_files(rec.anchors, out_dir / "reconstruction_anchors", units=units)
    with atomic_path(out_dir / "reconstruction_code.npy") as tmp:
        np.save(tmp, rec.code.astype(np.float32))
    with atomic_path(out_dir / "reconstruction_support.npy") as tmp:     # per vertex: distance to the cloud (mm)
        np.save(tmp, rec.support.astype(np.float32))
    align = json.loads((out_dir / "align_report.json").read_text(encoding="utf-8"))
    sfm_to_model = np.asarray(align["sfm_to_model"])
    # output frame <- SfM frame: (metric scale or identity) * reconstruct's model map * the alignment
    out_from_model = np.diag([rec.scale_mm_per_unit] * 3 + [1.0]) if metrical else np.linalg.inv(rec.to_model.matrix())
    out_from_aligned = out_from_model @ rec.to_model.matrix()
    out_from_sfm = out_from_aligned @ sfm_to_model
    landmarks_out = lms @ out_from_aligned[:3, :3].T + out_from_aligned[:3, 3]
    report = {"output_frame": rec.output_frame, "units": units, "scale_mm_per_unit": rec.scale_mm_per_unit,
              "scale_source": rec.scale_source, "scale_check": rec.scale_check, "warnings": rec.warnings,
              "self_check": rec.self_check, "pruning": name,
              "attempts": [{"pruning": n, "passed": r.self_check["passed"], "problems": r.self_check["problems"]}
                           for n, r in tried],
              "fit_seconds": round(rec.fit_seconds, 2),
              "total_seconds": round(time.perf_counter() - t0, 2), "residuals": rec.residuals,
              "support_mean": float(rec.support.mean()), "settings": vars(settings), "voxel_resolution": resolution,
              "vertices": len(mesh.vertices), "watertight": bool(mesh.is_watertight),
              "anchors": rec.anchors.round(4).tolist(), "output_from_sfm": out_from_sfm.tolist(),
              "loss": [round(v, 7) for v in rec.loss[::10]],
              # distances between the landmarks seen in the video (in the output frame), and between the model's
              # fitted anchors (where the model puts them: differs by its anchor error, a few mm)
              "measurements": measurements(landmarks_out, units),
              "model_anchor_measurements": measurements(rec.anchors, units)}
    atomic_write_text(out_dir / "fit_report.json", json.dumps(report, indent=1))
    return report


def measurements(anchors: np.ndarray, units: str) -> dict:
    """Straight-line distances between landmarks on the fitted surface."""
    a = np.asarray(anchors)
    d = lambda i, j: round(float(np.linalg.norm(a[i] - a[j])), 2)      # noqa: E731
    return {"units": units, "nipple_to_nipple": d(2, 3), "sternal_notch_to_left_nipple": d(0, 2),
            "sternal_notch_to_right_nipple": d(0, 3), "sternal_notch_to_belly_button": d(0, 1),
            "coracoid_to_coracoid": d(4, 5)}


def colorize_step(out_dir: Path, remove_invisible: bool, progress=None) -> dict:
    from .colorize import colorize
    out_dir = Path(out_dir)
    mesh = trimesh.load(out_dir / "reconstruction.ply", process=False)
    rep = json.loads((out_dir / "fit_report.json").read_text(encoding="utf-8"))
    sfm_from_out = np.linalg.inv(np.asarray(rep["output_from_sfm"]))
    m_sfm = mesh.copy()
    m_sfm.apply_transform(sfm_from_out)
    cams = read_cameras_json(out_dir / "cameras.json")
    if progress:
        with progress.stage("colorize", total=len(cams)) as update:
            rgb, seen = colorize(m_sfm, cams, out_dir / "images", lambda k, n: update(k))
    else:
        rgb, seen = colorize(m_sfm, cams, out_dir / "images")
    faces = mesh.faces
    keep_v = np.ones(len(mesh.vertices), bool)
    if remove_invisible:
        faces = faces[(seen[faces] > 0).all(1)]
        keep_v = np.zeros(len(mesh.vertices), bool)
        keep_v[faces.ravel()] = True
    remap = -np.ones(len(mesh.vertices), int)
    remap[keep_v] = np.arange(keep_v.sum())
    out = trimesh.Trimesh(mesh.vertices[keep_v], remap[faces], process=False,
                          vertex_colors=np.concatenate([rgb[keep_v], np.full((keep_v.sum(), 1), 255, np.uint8)], 1))
    out.vertex_attributes["views"] = seen[keep_v].astype(np.float32)
    with atomic_path(out_dir / "reconstruction_colored.ply") as tmp:
        out.export(tmp, file_type="ply")
    return {"vertices": int(len(out.vertices)), "seen_fraction": float((seen > 0).mean()),
            "removed_invisible": bool(remove_invisible), "mean_views": float(seen[seen > 0].mean()) if (seen > 0).any() else 0.0}


# ----------------------------------------------------------------------------------------------- overview
def overview(out_dir: Path) -> Path:
    """One picture: the landmark frame with its landmarks, the aligned cloud, and the result (front and side)."""
    import cv2
    from BreastShapeModelLib.render import mesh_views, sheet, view_image
    out_dir = Path(out_dir)
    tiles, labels = [], []
    ov = cv2.imread(str(out_dir / "landmarks_overlay.png"))
    size = 360
    if ov is not None:
        s = size / max(ov.shape[:2])
        ov = cv2.resize(ov, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)[:, :, ::-1]
        canvas = np.full((size, size, 3), 255, np.uint8)
        canvas[:ov.shape[0], :ov.shape[1]] = ov
        tiles.append(canvas)
        labels.append("landmarks")
    cloud = out_dir / "aligned_pt_pruned.ply"
    if cloud.exists():
        pts, _ = read_points_ply(cloud)
        tiles.append(view_image(pts, None, "front", size))
        labels.append(f"aligned cloud ({len(pts)} pts)")
    rec = out_dir / "reconstruction.ply"
    if rec.exists():
        mesh = trimesh.load(rec, process=False)
        tiles += mesh_views(mesh, ("front", "side"), size)
        labels += ["result front", "result side"]
    path = out_dir / "overview.png"
    img = sheet([np.asarray(t)[..., :3] if np.asarray(t).ndim == 3 else np.asarray(t) for t in tiles], len(tiles), labels)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def clean_step_outputs(out_dir: Path, step: str) -> None:
    """Remove a step's stamp (and those after it) so they run again."""
    for s in STEPS[STEPS.index(step):]:
        p = Path(out_dir) / ".steps" / f"{s}.json"
        if p.exists():
            p.unlink()


def copy_landmark_file(src: Path, out_dir: Path) -> Path:
    dst = Path(out_dir) / ("input_landmarks" + "".join(Path(src).suffixes[-2:] if src.name.endswith(".mrk.json") else Path(src).suffix))
    if Path(src).resolve() != dst.resolve():
        shutil.copyfile(src, dst)
    return dst


__all__ = ["STEPS", "LANDMARK_NAMES", "stamp_of", "is_done", "mark_done", "load_scene", "fit", "colorize_step",
           "overview", "write_points_ply"]
