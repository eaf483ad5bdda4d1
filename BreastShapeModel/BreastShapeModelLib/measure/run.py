"""Measuring a file: read the surface and what lies beside it, measure, write the report. The step the scan and
video runs call on their result (`measure_result`) and the body of `measure` / `api.run_measure`."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from ..progress import Progress
from ..workspace import Workspace


def measure_file(surface: Path, out: Workspace, landmarks: Path | None = None,
                 progress: Progress | None = None, footprints: dict | None = None,
                 chest_wall: str | None = None) -> tuple[dict, list]:
    """(measurements.json as written, the files written). `footprints` {"left"/"right": curve file} replace the
    automatic footprints (a user's edit); `chest_wall` picks the estimator (default: the first of
    CHEST_WALL_CHOICES)."""
    from ..landmarks import read_curve
    from .measurements import measure_surface
    from .report import MEASUREMENTS_JSON, write_measurements
    from .surface_io import find_landmarks, find_residual, find_support, read_surface
    mesh = read_surface(surface)
    lms, lm_path = find_landmarks(surface, landmarks)
    support = find_support(mesh, surface)
    residual = find_residual(surface)
    if progress:
        progress.log(f"measuring {surface.name} ({len(mesh.vertices)} vertices; landmarks from {lm_path.name}; "
                     f"{'with' if support is not None else 'no'} support map)")
    curves = {side: read_curve(path) for side, path in (footprints or {}).items() if path is not None}
    m = measure_surface(mesh, lms, support, residual, where=str(surface), footprints=curves,
                        **({"chest_wall": chest_wall} if chest_wall else {}))
    files = write_measurements(out.root, m, mesh, lms, {"surface": str(surface), "landmarks": str(lm_path),
                                                         "support_map": support is not None,
                                                         "fit_residual_mm": residual,
                                                         "footprints_given": {side: str(path) for side, path in
                                                                              (footprints or {}).items() if path}})
    return json.loads((out / MEASUREMENTS_JSON).read_text(encoding="utf-8")), files


def measure_result(ws: Workspace, progress: Progress | None = None, chest_wall: str | None = None) -> dict:
    """Measure a run's reconstruction into its own folder; the values for its report, or why it was not measured
    (not in millimetres, no landmarks): a warning, never a failed run."""
    try:
        r, _ = measure_file(ws.reconstruction, ws, None, progress, chest_wall=chest_wall)
    except UserError as exc:
        if progress:
            progress.warn(f"not measured: {exc}")
        return {"not_measured": str(exc)}
    if progress:
        from .report import summary_lines
        for line in summary_lines(r):
            progress.log(line)
    return {k: r[k] for k in ("breast_volume_ml", "distances_mm", "symmetry", "chest_wall_method")}
