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
from BreastShapeModelLib.mrml_io import add_point_scalar, load_markups_node, load_model_node, show_scalar
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

    def command(self, python: str | None = None) -> list[str]:
        for what, path in (("video", self.video), ("landmark file", self.landmarks)):
            if not path or not Path(path).is_file():
                raise UserError(f"{what} not found: {path or '(none chosen)'}")
        if not self.output_dir:
            raise UserError("choose an output folder")
        self.options.check()
        check_model_files(self.options.model)
        args = ["run", str(self.video), "--landmarks", str(self.landmarks), "--output_dir", str(self.output_dir),
                "--progress", "json", *to_args(self.options)]
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
        report = self.output_dir / W.REPORT
        if not report.is_file():
            raise UserError(f"the pipeline wrote no report ({self.job.error_message()})")
        self.report = json.loads(report.read_text(encoding="utf-8"))
        coloured = self.output_dir / W.COLORED
        if self.request.options.colour.colorize and coloured.is_file():
            model = load_model_node(scene, coloured, name)
            model.GetDisplayNode().SetScalarVisibility(True)
        else:
            model = load_model_node(scene, self.output_dir / W.RECONSTRUCTION, name)
            support = self.output_dir / W.SUPPORT
            if support.is_file():
                import numpy as np
                add_point_scalar(model, "support", np.load(support))
                show_scalar(model, "support")
        anchors = load_markups_node(scene, self.output_dir / (W.ANCHORS + ".mrk.json"), name + "_anchors")
        return [model, anchors]

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


VIDEO_PACKAGES = {"cv2": "opencv-python-headless", "pycolmap": "pycolmap", "av": "av", "vtk": "vtk"}


def missing_video_packages() -> list[str]:
    """pip names of what the video pipeline needs beyond BreastShapeModelLib's packages."""
    import importlib.util
    return [pip for module, pip in VIDEO_PACKAGES.items() if importlib.util.find_spec(module) is None]
