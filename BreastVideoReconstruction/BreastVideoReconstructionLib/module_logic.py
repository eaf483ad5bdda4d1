"""What the BreastVideoReconstruction Slicer module does, without Qt: build the `run` command, run it as a child
process with JSON progress (the shared job runner), load the result into a MRML scene.

The output folder is the user's: a cancelled or failed run keeps its finished steps, and running again resumes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.jobs import Job, child_env, module_command
from BreastShapeModelLib.module_logic import check_model_files
from BreastShapeModelLib.mrml_io import attach_fit_quality, load_markups_node, load_model_node, points_node, show_scalar
from BreastShapeModelLib.options import to_args

from .options import VideoOptions
from .workspace import VideoWorkspace as W


@dataclass
class VideoRequest:
    """One `run` of the pipeline: video, landmark file, output folder and the options a user sets."""

    video: str
    landmarks: str
    output_dir: str
    options: VideoOptions = field(default_factory=VideoOptions)
    force: bool = False
    until: str | None = None              # "frames"/"sfm": prepare the frames to place the landmarks on
    auto: bool = False                    # no landmark file: find the torso and the landmarks (landmarks_proposed)

    def command(self, python: str | None = None) -> list[str]:
        needed = (("video", self.video),) if self.until or self.auto else \
            (("video", self.video), ("landmark file", self.landmarks))
        for what, path in needed:
            if not path or not Path(path).is_file():
                raise UserError(f"{what} not found: {path or '(none chosen)'}")
        if not self.output_dir:
            raise UserError("choose an output folder")
        self.options.check()
        check_model_files(self.options.model)
        args = ["run", str(self.video), "--output_dir", str(self.output_dir), "--progress", "json",
                *to_args(self.options)]
        args += ["--until", self.until] if self.until else [] if self.auto else ["--landmarks", str(self.landmarks)]
        if self.force:
            args.append("--force")
        return module_command("BreastVideoReconstructionLib", *args, python=python)


class VideoJob:
    """A running pipeline; `load_results` after it succeeded, `cleanup` cancels it (finished steps are kept)."""

    def __init__(self, request: VideoRequest, python: str | None = None):
        self.request = request
        self.output_dir = Path(request.output_dir)
        self.job = Job(request.command(python), env=child_env())
        self.report: dict = {}

    def start(self) -> "VideoJob":
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.job.start()
        return self

    def load_results(self, scene, name: str = "BreastSurface") -> list:
        """The metric surface (coloured from the video when it was coloured, else by support) and its anchors."""
        self.report, nodes = load_result(scene, self.output_dir, self.request.options.colour.colorize, name)
        if not self.report:
            raise UserError(f"the pipeline wrote no report ({self.job.error_message()})")
        return nodes

    def summary(self) -> str:
        """One paragraph for the module's log: time, scale and the measurements."""
        r = self.report
        m = r.get("measurements") or {}
        units = m.get("units", "mm")
        lines = [f"Reconstructed in {r.get('total_seconds', 0):.0f} s ({', '.join(r.get('skipped') or []) or 'no'} "
                 f"steps reused); scale from {r.get('scale_source')}; residual mean "
                 f"{(r.get('residuals') or {}).get('mean_mm', float('nan')):.2f} mm."]
        if not r.get("sfm_valid", True):
            lines.append("Warning, the camera reconstruction looks wrong: " + "; ".join(r.get("sfm_problems") or []))
        check = r.get("self_check") or {}
        if check and not check.get("passed", True):
            lines.append("WARNING, SELF-CHECK FAILED, the surface may be wrong: " + "; ".join(check.get("problems") or []))
        for d in r.get("down_weighted") or []:
            lines.append(f"Landmark '{d['landmark']}' down-weighted to {d['weight']}: {d['reason']}")
        lines += [f"{k.replace('_', ' ')}: {v:.1f} {units}" for k, v in m.items() if k != "units"]
        return "\n".join(lines)

    def cleanup(self) -> None:
        if self.job.running:
            self.job.cancel()


def load_result(scene, out_dir: str | Path, coloured: bool = True, name: str = "BreastSurface") -> tuple[dict, list]:
    """A finished run's report and nodes: the surface upright in RAS (video colours when `coloured` and present,
    else the support map) and its anchors; ({}, []) when the run has no report yet."""
    out = Path(out_dir)
    if not (out / W.REPORT).is_file():
        return {}, []
    report = json.loads((out / W.REPORT).read_text(encoding="utf-8"))
    if coloured and (out / W.COLORED).is_file():
        model = load_model_node(scene, out / W.COLORED, name)
        attach_fit_quality(model, out)
        model.GetDisplayNode().SetScalarVisibility(True)
    else:
        model = load_model_node(scene, out / W.RECONSTRUCTION, name)
        attach_fit_quality(model, out)
        show_scalar(model, "support")
    anchors = load_markups_node(scene, out / (W.ANCHORS + ".mrk.json"), name + "_anchors")
    return report, [model, anchors]


def load_result_landmarks(scene, out_dir: str | Path, name: str = "BreastSurface"):
    """The landmarks seen in the video, in the result's frame (what `measure` uses first), or None."""
    from BreastShapeModelLib.workspace import Workspace
    path = Path(out_dir) / (Workspace.LANDMARKS + ".mrk.json")
    return load_markups_node(scene, path, name + "_landmarks") if path.is_file() else None


def load_steps(scene, out_dir: str | Path, name: str = "BreastSurface") -> dict:
    """Every step's result as nodes in the result's frame, so a user sees where a run went wrong: the camera path
    (polyline), the sparse SfM points, the aligned and pruned cloud and the landmarks seen in the video."""
    import numpy as np
    from .cameras import read_cameras_json, read_points_ply
    out = Path(out_dir)
    try:
        fit = json.loads((out / W.FIT_REPORT).read_text(encoding="utf-8"))
        align = json.loads((out / W.ALIGN_REPORT).read_text(encoding="utf-8"))
        out_from_sfm = np.asarray(fit["output_from_sfm"], float)
        out_from_aligned = out_from_sfm @ np.linalg.inv(np.asarray(align["sfm_to_model"], float))
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{out}: the run has not finished its fit, nothing to show yet ({exc})") from None

    def move(points, m):
        return np.asarray(points, float) @ m[:3, :3].T + m[:3, 3]

    nodes = {}
    cams = read_cameras_json(out / W.CAMERAS)
    centres = move(np.stack([c.center for c in sorted(cams, key=lambda c: c.name)]), out_from_sfm)
    nodes["cameras"] = points_node(scene, centres, name + "_cameras", lines=True, color=(1.0, 0.85, 0.1))
    pts, cols = read_points_ply(out / W.POINTS)
    nodes["sparse"] = points_node(scene, move(pts, out_from_sfm), name + "_sparse", colors=cols, point_size=2)
    pts, cols = read_points_ply(out / W.ALIGNED_CLOUD)
    nodes["aligned"] = points_node(scene, move(pts, out_from_aligned), name + "_aligned_cloud", colors=cols,
                                   color=(0.2, 0.8, 0.3), point_size=2)
    landmarks = out / (W.LANDMARKS + ".mrk.json")
    if landmarks.is_file():
        nodes["landmarks"] = load_markups_node(scene, landmarks, name + "_video_landmarks")
    return nodes


def missing_video_packages() -> list[str]:
    """pip requirements of the video pipeline (the model's included) that the interpreter lacks (torch apart)."""
    from BreastShapeModelLib.dependencies import missing
    return missing("video")
