"""What the BreastShapeModel Slicer module does, without Qt: build job commands, run them, load results.

The module's Logic class delegates here so pytest exercises the same code against slicer-core's MRML.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .jobs import Job, child_env, module_command
from .landmarks import LANDMARK_NAMES, validate_points, write_landmarks
from .options import MeshOptions, ModelOptions, ScanOptions, to_args
from .workspace import Workspace
from .mrml_io import (FRAME_ATTRIBUTE, attach_fit_quality, from_ras, load_markups_node, load_model_node,
                      markups_positions, new_landmark_node, save_model_node, show_scalar)


def check_model_files(model: ModelOptions) -> None:
    """A clear message before a job starts when a chosen model file does not exist."""
    for flag, value in (("ckpt", model.ckpt), ("config", model.config), ("anchors", model.anchors)):
        if value and not Path(value).is_file():
            raise UserError(f"{flag} file not found: {value}")


def model_args(model: ModelOptions) -> list[str]:
    """The model's command-line flags, its files checked."""
    check_model_files(model)
    return to_args(model)


ModelChoice = ModelOptions        # the name the modules used: which model (default: the bundled one), on which device


@dataclass
class SampleRequest:
    """A `sample` (or `mean`, with `mean=True`) job."""

    model: ModelOptions = field(default_factory=ModelOptions)
    num_samples: int = 1
    seed: int | None = None
    resolution: int = MeshOptions.voxel_resolution
    metrical: bool = True
    mean: bool = False

    def command(self, output_dir: str | Path, python: str | None = None) -> list[str]:
        args = ["mean"] if self.mean else ["sample", str(self.num_samples)]
        if self.seed is not None and not self.mean:
            args += ["--seed", str(self.seed)]
        args += ["--output_dir", str(output_dir), "--voxel_resolution", str(self.resolution),
                 "--progress", "json", *model_args(self.model)]
        if self.metrical:
            args.append("--metrical")
        return module_command("BreastShapeModelLib", *args, python=python)


class ShapeJob:
    """A running sample/mean job with its own temporary output folder, removed by `cleanup()`."""

    def __init__(self, request: SampleRequest, python: str | None = None):
        self.request = request
        self.output_dir = Path(tempfile.mkdtemp(prefix="BreastShapeModel-"))
        self.job = Job(request.command(self.output_dir, python), env=child_env())

    def start(self) -> "ShapeJob":
        self.job.start()
        return self

    def load_results(self, scene) -> list:
        """Model and markups nodes for every shape the job wrote (call after it succeeded)."""
        info_files = sorted(self.output_dir.glob("*_info.json"))
        if not info_files:
            raise UserError(f"the job wrote no results ({self.job.error_message()})")
        info = json.loads(info_files[0].read_text(encoding="utf-8"))
        nodes = []
        for shape in info["shapes"]:
            stem = self.output_dir / shape["name"]
            nodes.append(load_model_node(scene, stem.with_name(stem.name + ".ply"), shape["name"]))
            nodes.append(load_markups_node(scene, stem.with_name(stem.name + "_anchors.mrk.json"),
                                           shape["name"] + "_anchors"))
        return nodes

    def cleanup(self) -> None:
        if self.job.running:
            self.job.cancel()
        shutil.rmtree(self.output_dir, ignore_errors=True)


def place_landmarks_node(scene, name: str = "Landmarks"):
    """The markups node the "Place landmarks" button creates: six named, undefined points in the fixed order."""
    return new_landmark_node(scene, LANDMARK_NAMES, name)


def landmarks_from_markups(node, frame: str | None = None) -> "np.ndarray":
    """Six points in file coordinates of `frame` (default: the frame the node was loaded in, else "lps") from a
    markups node (RAS in Slicer), reordered by label; a clear error if incomplete."""
    import numpy as np
    frame = frame or node.GetAttribute(FRAME_ATTRIBUTE) or "lps"
    pts, labels = markups_positions(node)
    missing = [labels[i] or str(i + 1) for i in range(len(pts)) if not np.isfinite(pts[i]).all()]
    if missing:
        raise UserError(f"landmarks '{node.GetName()}': place {', '.join(missing)} first")
    if len(pts) != len(LANDMARK_NAMES):
        raise UserError(f"landmarks '{node.GetName()}': expected {len(LANDMARK_NAMES)} points "
                        f"({', '.join(LANDMARK_NAMES)}), got {len(pts)}")
    from .landmarks import _match_labels
    return validate_points(_match_labels(labels, from_ras(pts, frame), node.GetName()), node.GetName())


@dataclass
class FitRequest:
    """A `reconstruct` job: input file (or a model node exported to one), landmarks, options."""

    model: ModelOptions = field(default_factory=ModelOptions)
    input_path: str = ""
    landmarks_path: str | None = None
    options: ScanOptions = field(default_factory=ScanOptions)

    def command(self, output_dir: str | Path, python: str | None = None) -> list[str]:
        self.options.check()
        args = ["reconstruct", str(self.input_path), "--output_dir", str(output_dir), "--progress", "json",
                *to_args(self.options), *model_args(self.model)]
        if self.landmarks_path:
            args += ["--landmarks", str(self.landmarks_path)]
        return module_command("BreastShapeModelLib", *args, python=python)


class FitJob:
    """A running fit with its own temporary folder: the input node and markups are written there first."""

    def __init__(self, request: FitRequest, python: str | None = None, input_node=None, landmarks_node=None):
        self.output_dir = Path(tempfile.mkdtemp(prefix="BreastShapeFit-"))
        if input_node is not None:
            request.input_path = str(save_model_node(input_node, self.output_dir / "input.ply"))
        if landmarks_node is not None:
            # the scan is written as Slicer writes ("lps"): its landmarks must be in the same frame
            request.landmarks_path = str(write_landmarks(landmarks_from_markups(landmarks_node, "lps"),
                                                         self.output_dir / "input_landmarks.mrk.json"))
        self.request = request
        self.job = Job(request.command(self.output_dir / "result", python), env=child_env())

    def start(self) -> "FitJob":
        self.job.start()
        return self

    def load_results(self, scene, name: str = "Reconstruction") -> list:
        """The fitted surface (coloured by `support`: distance to the nearest input point) and its anchors; after
        a fit without landmarks also the landmarks found, as six named points on the scan (`proposed`, each with
        its confidence; `unsure`: the reasons to check them), which a second fit takes as its landmarks."""
        result = self.output_dir / "result"
        if not (result / Workspace.FIT_REPORT).is_file():
            raise UserError(f"the fit wrote no results ({self.job.error_message()})")
        self.report = json.loads((result / Workspace.FIT_REPORT).read_text(encoding="utf-8"))
        # a fit in the input's frame overlays the scan as Slicer wrote it; a metric fit is in the model frame
        frame = "lps" if self.report.get("output_frame") == "input" else "model"
        model = load_model_node(scene, result / Workspace.RECONSTRUCTION, name, frame=frame)
        attach_fit_quality(model, result)
        show_scalar(model, "support")
        anchors = load_markups_node(scene, result / (Workspace.ANCHORS + ".mrk.json"), name + "_anchors", frame=frame)
        self.proposed = self.unsure = None
        found = self.report.get("landmarks_found")
        if found:                     # no landmarks given: those found, on the scan as shown, ready to drag
            from .found_landmarks import mark_confidence
            self.proposed = load_markups_node(scene, result / found["file"], "ProposedLandmarks", frame="lps")
            mark_confidence(self.proposed, found["confidence"])
            self.unsure = list(found["unsure"])
            return [model, anchors, self.proposed]
        return [model, anchors]

    def cleanup(self) -> None:
        if self.job.running:
            self.job.cancel()
        shutil.rmtree(self.output_dir, ignore_errors=True)


def missing_packages() -> list[str]:
    """pip requirements the model's Lib needs but the interpreter lacks (torch is handled apart)."""
    from .dependencies import missing
    return missing("model")
