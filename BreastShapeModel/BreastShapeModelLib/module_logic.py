"""What the BreastShapeModel Slicer module does, without Qt: build job commands, run them, load results.

The module's Logic class delegates here so pytest exercises the same code against slicer-core's MRML.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .jobs import Job, child_env, module_command
from .mrml_io import load_markups_node, load_model_node


@dataclass
class ModelChoice:
    """Which shape model to use: the bundled one (all None) or a checkpoint with optional config/anchors."""

    checkpoint: str | None = None
    config: str | None = None
    anchors: str | None = None

    def cli_args(self) -> list[str]:
        args = []
        for flag, value in (("--ckpt", self.checkpoint), ("--config", self.config), ("--anchors", self.anchors)):
            if value:
                if not Path(value).is_file():
                    raise UserError(f"{flag.lstrip('-')} file not found: {value}")
                args += [flag, str(value)]
        return args


@dataclass
class SampleRequest:
    """A `sample` (or `mean`, with `mean=True`) job."""

    model: ModelChoice
    num_samples: int = 1
    seed: int | None = None
    resolution: int = 256
    metrical: bool = True
    mean: bool = False
    device: str = "auto"

    def command(self, output_dir: str | Path, python: str | None = None) -> list[str]:
        args = ["mean"] if self.mean else ["sample", str(self.num_samples)]
        if self.seed is not None and not self.mean:
            args += ["--seed", str(self.seed)]
        args += ["--output_dir", str(output_dir), "--voxel_resolution", str(self.resolution),
                 "--device", self.device, "--progress", "json", *self.model.cli_args()]
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
