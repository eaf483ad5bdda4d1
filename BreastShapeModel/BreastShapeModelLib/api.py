"""Python API of the scan fit: `run_scan(input, output_dir, landmarks, ScanOptions())`, also the `reconstruct`
command's body and what the batch runner calls for scans.

    from BreastShapeModelLib.api import run_scan
    from BreastShapeModelLib.options import ScanOptions
    result = run_scan("scan.ply", "out/", landmarks="scan_landmarks.mrk.json",
                      options=ScanOptions(nipple_to_nipple_dist=196.0))
    result.report["residuals"]["mean_mm"], result.files

Re-running with the same input, landmarks, options and model reuses the finished result (`result.skipped`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path


from .errors import UserError
from .fileio import atomic_write_text
from .options import AUTO_LATENT_WEIGHT, ModelOptions, ScanOptions, as_dict
from .progress import Progress
from .self_check import SELF_CHECK_FAILED
from .workspace import Workspace, file_key, stamp_of

SCAN_SPACE_MB = 30           # a fit's outputs (mesh, anchors, report), generously



@dataclass
class RunResult:
    """What a run produced: its folder, its report (as written) and whether it was reused from a previous run."""
    workspace: Workspace
    report: dict
    skipped: bool = False
    files: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """False when the result failed its self-check (the surface may be wrong)."""
        return bool((self.report.get("self_check") or {}).get("passed", True))


def model_key(model) -> str:
    """A model's identity in step stamps: its file (path, size, time), so a replaced checkpoint redoes the steps."""
    if isinstance(model, ModelOptions):
        from .shape_model import BUNDLED_MODEL
        files = [f for f in (model.ckpt or BUNDLED_MODEL, model.config, model.anchors) if f is not None]
        return "|".join(str(file_key(f)) if Path(f).is_file() else str(f) for f in files)
    src = Path(str(model.source))
    return file_key(src) if src.is_file() else str(model.source)


class LazyModel:
    """A model loaded on first use: a run whose steps are all finished never loads torch weights. Its `key` (for
    step stamps) is fixed at construction, so it is the same before and after loading."""

    def __init__(self, model=None):
        self._options = ModelOptions() if model is None else (model if isinstance(model, ModelOptions) else None)
        self._model = None if self._options is not None else model
        self.key = model_key(self._options if self._options is not None else model)

    def get(self):
        if self._model is None:
            self._model = self._options.load()
        return self._model


def check_output_not_input(output_dir: Path, *inputs) -> None:
    """Refuse an output folder whose result files would overwrite an input."""
    targets = {(Path(output_dir) / n).resolve() for n in (Workspace.RECONSTRUCTION, Workspace.FIT_REPORT,
                                                          Workspace.REPORT, Workspace.CODE, Workspace.SUPPORT)}
    for p in inputs:
        if p is not None and Path(p).resolve() in targets:
            raise UserError(f"the output folder {output_dir} would overwrite the input {p}; choose another folder")


def find_torso(model, points, where: str, progress: Progress | None = None):
    """The landmark-free alignment of a scan (auto_align on the model's mean surface); 'no torso found' when
    nothing in the input matches the model's torso."""
    import trimesh
    from .auto_align import MAX_COST, auto_align
    mean_pts, _ = trimesh.sample.sample_surface(model.mesh(model.mean_code, 96), 5000, seed=0)
    found = auto_align(points, mean_pts)
    cost_mm = found.cost * model.mm_per_unit
    if found.cost > MAX_COST:
        raise UserError(f"{where}: no torso found (the model's mean torso matches it no closer than "
                        f"{cost_mm:.0f} mm; a torso scan gives 6-8 mm); give --landmarks if it is a torso")
    if progress:
        progress.log(f"no landmarks: torso found by its shape ({cost_mm:.1f} mm from the mean torso, next "
                     f"orientation {found.runner_up_cost * model.mm_per_unit:.1f} mm)")
    return found


SETTLED_RATIO = 1.2          # an ambiguous orientation is settled when the other's fit leaves this x the residual


def fit_found_torso(fit, found, progress: Progress | None = None):
    """Fit from the orientation the landmark-free alignment found (`fit(to_model)` -> Reconstruction); when another
    orientation matched the mean torso almost as well, fit from it too and keep the one whose fitted surface lies
    closer to the scan (bench/auto_landmarks.py: the one ambiguous torso's wrong pose cost +1.8 mm). ->
    (reconstruction, still ambiguous, what was tried)."""
    rec = fit(found.to_model)
    if not found.ambiguous or len(found.candidates) < 2:
        return rec, found.ambiguous, []
    if progress:
        progress.log("another orientation matches the mean torso almost as well: fitting from it too")
    other = fit(found.candidates[1][1])
    tried = [{"alignment_cost": round(float(c), 5), "residual_mean": round(r.residuals["mean"], 4)}
             for (c, _), r in zip(found.candidates[:2], (rec, other))]
    low, high = sorted((rec.residuals["mean"], other.residuals["mean"]))
    best = rec if rec.residuals["mean"] <= other.residuals["mean"] else other
    return best, high < SETTLED_RATIO * low, tried


def run_scan(input: str | Path, output_dir: str | Path, landmarks: str | Path | None = None,
             options: ScanOptions | None = None, model=None, progress: Progress | None = None,
             force: bool = False) -> RunResult:
    """Fit the model to a scan or point cloud (with six landmarks) and write reconstruction.ply, its anchors,
    code, support and fit_report.json into `output_dir`. `model`: a loaded ShapeModel, ModelOptions or None
    (the bundled model)."""
    from .cloud_io import read_cloud
    from .landmarks import read_landmarks
    from .reconstruct import reconstruct_with_progress
    from .results import fit_report, landmark_distances, support_colors, write_reconstruction
    opts = options or ScanOptions()
    opts.check()
    input = Path(input)
    landmarks = Path(landmarks) if landmarks is not None else None
    if not input.is_file():
        raise UserError(f"input not found: {input}")
    if landmarks is not None and not landmarks.is_file():
        raise UserError(f"landmark file not found: {landmarks}")
    check_output_not_input(output_dir, input, landmarks)
    ws = Workspace(output_dir)
    with ws.lock():
        ws.check_space(SCAN_SPACE_MB, "a fit")
        lazy = model if isinstance(model, LazyModel) else LazyModel(model)
        key = stamp_of("reconstruct", {"input": file_key(input), "landmarks": file_key(landmarks),
                                       "options": as_dict(opts), "model": lazy.key})
        if not force and ws.is_done("reconstruct", key):
            return RunResult(ws, json.loads(ws.fit_report.read_text(encoding="utf-8")), skipped=True)
        points, kind = read_cloud(input, opts.max_points, opts.seed)
        lms = read_landmarks(landmarks) if landmarks is not None else None
        if lms is not None:
            from .landmark_checks import check_landmarks
            check_landmarks(lms, points, str(landmarks))
        net = lazy.get()
        ws.create()
        metrical = opts.metrical or opts.nipple_to_nipple_dist is not None
        auto = lms is None and opts.orientation == "auto"
        latent = opts.latent_weight
        if auto and latent == ScanOptions().latent_weight:          # the default, not a user's choice
            latent = AUTO_LATENT_WEIGHT
        settings = opts.settings(latent, with_landmarks=lms is not None)
        t0 = time.perf_counter()
        found = find_torso(net, points, str(input), progress) if auto else None

        def fit(to_model=None):
            return reconstruct_with_progress(progress, "fit", opts.iterations, net, points, lms, settings,
                                             opts.voxel_resolution, metrical, opts.nipple_to_nipple_dist,
                                             chunk_size=opts.chunk_size, meshing=opts.meshing, to_model=to_model)
        ambiguous, tried = False, []
        if found is not None:
            rec, ambiguous, tried = fit_found_torso(fit, found, progress)
        else:
            rec = fit()
        if ambiguous:
            rec.warnings.append("the torso's orientation was found without landmarks but another orientation fits "
                                "almost as well: check the result, or give --landmarks")
        if not rec.self_check["passed"]:
            rec.warnings.append(SELF_CHECK_FAILED + "; ".join(rec.self_check["problems"]))
        units = "mm" if rec.output_frame == "metric" else "input"
        report = {"input": str(input), "input_kind": kind, "input_points": int(len(points)),
                  "landmarks": str(landmarks) if landmarks else
                  ("found automatically: the fitted anchors, made symmetric" if found else None),
                  "model": net.describe(),
                  **({"auto_alignment": {**found.report(net.mm_per_unit), "ambiguous": ambiguous,
                                         **({"orientations_fitted": tried} if tried else {})}} if found else {}),
                  **fit_report(rec, units, opts.voxel_resolution), "settings": vars(settings), "options": as_dict(opts),
                  "input_to_model": rec.to_model.matrix().tolist(),
                  "support_colors": "green: an input point within 2 local sample spacings (observed); red: "
                                    "beyond twice that (filled in by the model)",
                  "total_seconds": round(time.perf_counter() - t0, 3),
                  "model_anchor_measurements": landmark_distances(rec.anchors, units)}
        lms_out = None
        if lms is not None:           # the given landmarks' distances, in the output frame
            lms_out = rec.scale_mm_per_unit * rec.to_model.apply(lms) if rec.output_frame == "metric" else lms
            report["measurements"] = landmark_distances(lms_out, units)
        found_file = []
        if found is not None:         # the landmarks found, back in the input's frame: a --landmarks file for it
            from .found_landmarks import scan_landmarks_found, symmetric_landmarks
            from .landmarks import write_landmarks
            found_out, report["symmetry_plane"] = symmetric_landmarks(rec.mesh, rec.anchors,
                                                                      rec.support <= rec.observed)
            in_input = rec.to_model.inverse().apply(found_out / rec.scale_mm_per_unit) \
                if rec.output_frame == "metric" else found_out
            lms_out = found_out                     # measured like given landmarks, and written beside the surface
            report["measurements"] = landmark_distances(lms_out, units)
            report["landmarks_found"] = {"file": Workspace.FOUND_LANDMARKS, "frame": "input",
                                         **scan_landmarks_found(in_input, points,
                                                                rec.scale_mm_per_unit * rec.to_model.scale,
                                                                ambiguous)}
            found_file = [write_landmarks(in_input, ws / Workspace.FOUND_LANDMARKS,
                                          units="mm" if rec.output_frame == "metric" else "input")]
            if progress and report["landmarks_found"]["unsure"]:
                progress.warn("landmarks found without clicks may be off: " +
                              "; ".join(report["landmarks_found"]["unsure"]))
        files = write_reconstruction(ws, rec, units, report, support_colors(rec.support, rec.observed), lms_out)
        files += found_file
        if opts.measure:
            from .measure.run import measure_result
            report["clinical"] = measure_result(ws, progress)
            atomic_write_text(ws.fit_report, json.dumps(report, indent=1, default=str))
        ws.mark_done("reconstruct", key, [Workspace.RECONSTRUCTION, Workspace.FIT_REPORT], {})
        if progress:
            for w in rec.warnings:
                progress.warn(w)
        return RunResult(ws, report, files=files)


def run_measure(surface: str | Path, output_dir: str | Path, landmarks: str | Path | None = None,
                progress: Progress | None = None, footprints: dict | None = None,
                chest_wall: str | None = None) -> RunResult:
    """Measure a surface in millimetres (ours, a scanner's, a model saved from Slicer): footprints, volumes against
    the estimated chest wall, tape distances, symmetry, intervals -> measurements.json/.csv/.png/.pdf, footprint
    curves, chest wall. Landmarks: the given file, else the ones beside one of our reconstructions. `footprints`
    {"left"/"right": closed-curve file} replace the automatic footprints (e.g. edited in Slicer); `chest_wall`
    one of options.CHEST_WALL_CHOICES (default: the first, auto)."""
    from .measure.run import measure_file
    out = Workspace(output_dir)
    with out.lock():
        report, files = measure_file(Path(surface), out, Path(landmarks) if landmarks is not None else None,
                                     progress, {k: Path(v) for k, v in (footprints or {}).items() if v},
                                     chest_wall)
    return RunResult(out, report, files=files)


def run_compare(before: str | Path, after: str | Path, output_dir: str | Path, before_landmarks=None,
                after_landmarks=None, progress: Progress | None = None) -> RunResult:
    """Two surfaces of one person: registered on the regions surgery does not change, then the signed distance
    map, the volume change per side and every distance's change -> comparison.json/.png, after_signed_distance.ply."""
    from .measure.compare import compare_surfaces
    from .measure.report import COMPARISON_JSON, write_comparison
    from .measure.surface_io import find_landmarks, read_surface
    before, after = Path(before), Path(after)
    mb, ma = read_surface(before), read_surface(after)
    lb, lb_path = find_landmarks(before, Path(before_landmarks) if before_landmarks else None)
    try:
        la, la_path = find_landmarks(after, Path(after_landmarks) if after_landmarks else None)
    except UserError:
        la, la_path = None, None                         # registered from the surfaces alone
    out = Workspace(output_dir)
    c = compare_surfaces(mb, lb, ma, la)
    with out.lock():
        files = write_comparison(out.root, c, mb, lb, {"before": str(before), "after": str(after),
                                                       "after_landmarks": str(la_path) if la_path else None})
    if progress:
        progress.log(f"registered on the unchanged regions: {c.residual_mm:.2f} mm median residual")
    return RunResult(out, json.loads((out / COMPARISON_JSON).read_text(encoding="utf-8")), files=files)
