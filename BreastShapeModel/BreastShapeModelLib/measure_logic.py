"""The *Measure* and *Compare* sections of the Slicer modules, without Qt: export the chosen nodes, run `measure`
or `compare` in a child process (progress, cancel), load the results as MRML nodes.

Measure gives the footprints as editable closed curves (re-measuring passes the edited curves back), the chest wall
and each breast's counted tissue as models, the tape distances as curve (along the skin) and line (straight)
markups, and a table with every value and its interval. Compare gives the AFTER surface registered onto BEFORE,
coloured by the signed distance with a legend, and the changes as a table. Every file travels in the "lps" frame
Slicer writes, so results overlay their input whatever frame it came in."""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError
from .jobs import Job, child_env, module_command
from .landmarks import markups_json, write_landmarks
from .mrml_io import (export_fit_quality, from_ras, load_model_node, markups_from_points, markups_positions,
                      save_model_node, show_signed_scalar, table_node)

SIDES = ("left", "right")
FRAME = "lps"                         # what Slicer's storage nodes write and read
VOLUME_COLORS = {"left": (0.95, 0.55, 0.45), "right": (0.45, 0.65, 0.95)}
WALL_COLOR = (0.6, 0.6, 0.6)


def _export_landmarks(node, path: Path) -> str:
    from .module_logic import landmarks_from_markups
    return str(write_landmarks(landmarks_from_markups(node, FRAME), path))


def _export_curve(node, path: Path) -> str:
    pts, _ = markups_positions(node)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) < 3:
        raise UserError(f"footprint '{node.GetName()}': a closed curve needs at least 3 placed points")
    path.write_text(markups_json(from_ras(pts, FRAME), "ClosedCurve", name=node.GetName()), encoding="utf-8")
    return str(path)


class _TempJob:
    """A child-process job with its own temporary folder (inputs exported there first), removed by cleanup()."""

    def __init__(self, prefix: str):
        self.output_dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.result_dir = self.output_dir / "result"
        self.job: Job | None = None

    def start(self):
        self.job.start()
        return self

    def cleanup(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
        shutil.rmtree(self.output_dir, ignore_errors=True)

    @contextlib.contextmanager
    def _exporting(self):
        """Remove the temporary folder when exporting the inputs fails (a missing node, unplaced landmarks)."""
        try:
            yield
        except BaseException:
            self.cleanup()
            raise

    def _report(self, name: str) -> dict:
        path = self.result_dir / name
        if not path.is_file():
            raise UserError(f"no results were written ({self.job.error_message()})")
        return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class MeasureResult:
    """The nodes one measurement created; `footprints` are the curves to edit and re-measure with."""

    report: dict
    footprints: dict = field(default_factory=dict)
    models: list = field(default_factory=list)
    lines: list = field(default_factory=list)
    table: object = None

    def nodes(self) -> list:
        return [*self.footprints.values(), *self.models, *self.lines, *([self.table] if self.table else [])]

    def remove(self, scene, keep_footprints: bool = True) -> None:
        """Remove the nodes before re-measuring (the footprints stay: they are what the user edits)."""
        for node in self.nodes():
            if keep_footprints and node in self.footprints.values():
                continue
            if node.GetScene() is scene:
                scene.RemoveNode(node)


class MeasureJob(_TempJob):
    """`measure` on a surface model node with its landmarks; `footprint_nodes` {side: closed-curve node} replace
    the automatic footprints (the curves a previous measurement made, after the user edited them); `chest_wall`
    one of options.CHEST_WALL_CHOICES (default: the command's). A fitted node's support map and residual
    (mrml_io.attach_fit_quality) go with the surface."""

    def __init__(self, surface_node, landmarks_node, footprint_nodes: dict | None = None, python: str | None = None,
                 chest_wall: str | None = None):
        super().__init__("BreastShapeMeasure-")
        with self._exporting():
            if surface_node is None:
                raise UserError("choose the surface model to measure")
            if landmarks_node is None:
                raise UserError("choose the six landmarks of the surface (a markups point list)")
            surface = save_model_node(surface_node, self.output_dir / "surface.ply")
            export_fit_quality(surface_node, surface)
            args = ["measure", str(surface), "--landmarks",
                    _export_landmarks(landmarks_node, self.output_dir / "surface_landmarks.mrk.json"),
                    "--output_dir", str(self.result_dir), "--progress", "json"]
            if chest_wall:                               # else the command's default (options.CHEST_WALL_CHOICES)
                args += ["--chest_wall", chest_wall]
            self.footprint_nodes = {k: v for k, v in (footprint_nodes or {}).items() if v is not None}
            for side, node in self.footprint_nodes.items():
                edited = _export_curve(node, self.output_dir / f"edited_footprint_{side}.mrk.json")
                args += [f"--footprint_{side}", edited]
            self.name = surface_node.GetName()
            self.job = Job(module_command("BreastShapeModelLib", *args, python=python), env=child_env())

    def load_results(self, scene, name: str | None = None) -> MeasureResult:
        from .landmarks import read_curve
        from .measure.report import BREAST, CHEST_WALL, DISTANCE_LINES, FOOTPRINT, MEASUREMENTS_JSON
        report = self._report(MEASUREMENTS_JSON)
        name = name or self.name
        out = MeasureResult(report)
        for side in SIDES:
            if side in self.footprint_nodes:                # the user's curve stays the footprint
                out.footprints[side] = self.footprint_nodes[side]
                continue
            path = self.result_dir / (FOOTPRINT.format(side=side) + ".mrk.json")
            if path.is_file():
                out.footprints[side] = markups_from_points(scene, read_curve(path), f"{name} {side} footprint",
                                                           color=VOLUME_COLORS[side])
        if (self.result_dir / CHEST_WALL).is_file():
            out.models.append(load_model_node(scene, self.result_dir / CHEST_WALL, f"{name} chest wall",
                                              color=WALL_COLOR, frame=FRAME))
        for side in SIDES:
            path = self.result_dir / BREAST.format(side=side)
            if path.is_file():
                v = report["breast_volume_ml"][side]
                node = load_model_node(scene, path, f"{name} {side} breast {v['value']:.0f} ml",
                                       color=VOLUME_COLORS[side], frame=FRAME)
                node.GetDisplayNode().SetOpacity(0.5)
                out.models.append(node)
        paths = json.loads((self.result_dir / DISTANCE_LINES).read_text(encoding="utf-8"))
        for key, d in report["distances_mm"].items():
            line = np.asarray(paths.get(key, []), float).reshape(-1, 3)
            if len(line) < 2:
                continue
            along = line[np.unique(np.linspace(0, len(line) - 1, min(len(line), 40)).round().astype(int))]
            out.lines.append(markups_from_points(scene, along, f"{key} {d['surface']:.0f} mm along the skin",
                                                 "vtkMRMLMarkupsCurveNode", linear=True))
            out.lines.append(markups_from_points(scene, line[[0, -1]], f"{key} {d['straight']:.0f} mm straight",
                                                 "vtkMRMLMarkupsLineNode"))
        rows = measurement_rows(report)
        out.table = table_node(scene, rows, f"{name} measurements")
        return out


def measurement_rows(report: dict) -> list[dict]:
    """One row per value, with its interval and units: what the Table node and the CSV show."""
    rows = []
    for side, v in report["breast_volume_ml"].items():
        rows.append({"measure": f"{side} breast volume", "value": v["value"], "low": v["interval"][0],
                     "high": v["interval"][1], "units": "ml"})
    for key, d in report["distances_mm"].items():
        label = key.replace("_", " ")
        if d.get("surface") is not None:
            rows.append({"measure": f"{label} (along the skin)", "value": d["surface"], "low": d["interval"][0],
                         "high": d["interval"][1], "units": "mm"})
        straight = d.get("interval_straight", d["interval"])
        rows.append({"measure": f"{label} (straight)", "value": d["straight"], "low": straight[0],
                     "high": straight[1], "units": "mm"})
    for key, s in report.get("symmetry", {}).items():
        rows.append({"measure": key.replace("_", " "), "value": s["value"], "low": s["interval"][0],
                     "high": s["interval"][1], "units": s["units"]})
    rows.append({"measure": f"chest wall: {report['chest_wall_method']}", "value": None, "low": None, "high": None,
                 "units": ""})
    return rows


class CompareJob(_TempJob):
    """`compare` of two surface model nodes of one person (BEFORE's landmarks required, AFTER's optional)."""

    def __init__(self, before_node, after_node, before_landmarks, after_landmarks=None, python: str | None = None):
        super().__init__("BreastShapeCompare-")
        with self._exporting():
            if before_node is None or after_node is None:
                raise UserError("choose both surfaces: before and after")
            if before_node is after_node:
                raise UserError("before and after are the same model; choose the two visits' surfaces")
            if before_landmarks is None:
                raise UserError("choose the landmarks of the BEFORE surface (a markups point list)")
            before = save_model_node(before_node, self.output_dir / "before.ply")
            after = save_model_node(after_node, self.output_dir / "after.ply")
            args = ["compare", str(before), str(after), "--before_landmarks",
                    _export_landmarks(before_landmarks, self.output_dir / "before_landmarks.mrk.json")]
            if after_landmarks is not None:
                args += ["--after_landmarks",
                         _export_landmarks(after_landmarks, self.output_dir / "after_landmarks.mrk.json")]
            args += ["--output_dir", str(self.result_dir), "--progress", "json"]
            self.name = after_node.GetName()
            self.job = Job(module_command("BreastShapeModelLib", *args, python=python), env=child_env())

    def load_results(self, scene, name: str | None = None) -> tuple[dict, list]:
        """(comparison.json, [AFTER registered and coloured by the signed distance, the changes table])."""
        import trimesh
        from .measure.report import AFTER_WITH_DISTANCE, COMPARISON_JSON
        from .measure.surface_io import vertex_property
        from .mrml_io import add_point_scalar
        report = self._report(COMPARISON_JSON)
        path = self.result_dir / AFTER_WITH_DISTANCE
        distance = vertex_property(trimesh.load(path, process=False), "signed_distance")
        model = load_model_node(scene, path, name or f"{self.name} change", frame=FRAME)
        add_point_scalar(model, "signed_distance", distance)
        limit = max(2.0, float(np.percentile(np.abs(distance), 99)))
        show_signed_scalar(model, "signed_distance", limit, "after - before (mm): red gained, blue lost")
        rows = [{"change": f"{side} breast volume", "value": v, "units": "ml"}
                for side, v in report["volume_change_ml"].items()]
        rows += [{"change": k.replace("_", " "), "value": v, "units": "mm"}
                 for k, v in report.get("distance_changes_mm", {}).items()]
        rows.append({"change": "registration residual (unchanged regions, median)",
                     "value": report["registration_residual_mm"], "units": "mm"})
        return report, [model, table_node(scene, rows, f"{self.name} changes")]
