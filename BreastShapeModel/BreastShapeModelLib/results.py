"""Writing a fitted reconstruction: the one place for its files and the report fields every fit shares."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .fileio import atomic_path, atomic_write_text
from .landmarks import write_anchor_files
from .mesh_io import write_shape
from .workspace import Workspace


def support_colors(support: np.ndarray, observed) -> np.ndarray:
    """RGBA uint8 per vertex from its distance to the nearest input point: green up to `observed` (scalar or per
    vertex: the input covers it), through yellow, to red at twice that and beyond (the model filled it in)."""
    t = np.clip(support / np.maximum(observed, 1e-12) - 1.0, 0, 1)
    rgb = np.stack([np.clip(2 * t, 0, 1), np.clip(2 * (1 - t), 0, 1), np.full_like(t, 0.2)], axis=1)
    return np.concatenate([(rgb * 255).astype(np.uint8), np.full((len(t), 1), 255, np.uint8)], axis=1)


LANDMARK_DISTANCES = {"nipple_to_nipple": (2, 3), "sternal_notch_to_left_nipple": (0, 2),
                      "sternal_notch_to_right_nipple": (0, 3), "sternal_notch_to_belly_button": (0, 1),
                      "coracoid_to_coracoid": (4, 5)}


def landmark_distances(points: np.ndarray, units: str) -> dict:
    """Straight-line distances between the six landmarks (sternal notch, navel, nipples, coracoids)."""
    a = np.asarray(points)
    return {"units": units, **{name: round(float(np.linalg.norm(a[i] - a[j])), 2)
                               for name, (i, j) in LANDMARK_DISTANCES.items()}}


def fit_report(rec, units: str, resolution: int) -> dict:
    """What every fit reports: frame, scale and its check, self-check, residuals, timings, mesh, anchors."""
    return {"output_frame": rec.output_frame, "units": units, "scale_mm_per_unit": rec.scale_mm_per_unit,
            "scale_source": rec.scale_source, "scale_check": rec.scale_check, "warnings": rec.warnings,
            "self_check": rec.self_check, "fit_seconds": round(rec.fit_seconds, 3), "residuals": rec.residuals,
            "support": {"mean": float(rec.support.mean()), "p95": float(np.percentile(rec.support, 95)),
                        "meaning": "distance from each surface vertex to the nearest input point",
                        "observed_fraction": round(float(np.mean(rec.support <= rec.observed)), 4)
                        if rec.observed is not None else None},
            "voxel_resolution": resolution, "vertices": len(rec.mesh.vertices), "faces": len(rec.mesh.faces),
            "watertight": bool(rec.mesh.is_watertight), "anchors": rec.anchors.round(6).tolist(),
            "loss": [round(v, 7) for v in rec.loss[::10]]}


def write_reconstruction(ws: Workspace, rec, units: str, report: dict, colors: np.ndarray | None = None,
                         landmarks: np.ndarray | None = None) -> list[Path]:
    """reconstruction.ply (with a per-vertex `support` property), its anchors (.mrk.json, .csv), the input
    `landmarks` in the output frame, code, support array and fit_report.json (`report`), each written atomically;
    returns the paths."""
    mesh = rec.mesh.copy()
    if colors is not None:
        mesh.visual.vertex_colors = colors
    mesh.vertex_attributes["support"] = rec.support.astype(np.float32)
    paths = write_shape(mesh, rec.anchors, ws.root / Path(Workspace.RECONSTRUCTION).stem, rec.code, units=units)
    if landmarks is not None:
        paths += write_anchor_files(landmarks, ws / Workspace.LANDMARKS, units=units)
    with atomic_path(ws / Workspace.SUPPORT) as tmp:         # per vertex, for readers that drop PLY extras
        np.save(tmp, rec.support.astype(np.float32))
    atomic_write_text(ws.fit_report, json.dumps(report, indent=1, default=str))
    return paths + [ws / Workspace.SUPPORT, ws.fit_report]
