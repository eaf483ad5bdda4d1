"""The measurement report: measurements.json / .csv, footprints as Slicer closed curves (+ csv), the tape lines,
the chest wall mesh, and a one-page sheet (PNG and PDF) a clinician can file."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import trimesh

from ..fileio import atomic_path, atomic_write_text
from ..landmarks import markups_json
from ..mesh_io import write_mesh
from ..workspace import Workspace
from .frame import body_frame
from .measurements import Measurements

MEASUREMENTS_JSON = Workspace.MEASUREMENTS
MEASUREMENTS_CSV = "measurements.csv"
MEASUREMENTS_PNG = "measurements.png"
MEASUREMENTS_PDF = "measurements.pdf"
DISTANCE_LINES = "distance_lines.json"        # name -> polyline along the skin (mm)
CHEST_WALL = "chest_wall.ply"
FOOTPRINT = "footprint_{side}"                # + .mrk.json (closed curve) / .csv
BREAST = "breast_{side}.ply"                  # the tissue counted as that side's volume (closed mesh)


def summary_lines(report: dict) -> list[str]:
    """The measurements as a few lines for the terminal and logs."""
    v = report["breast_volume_ml"]
    d = report["distances_mm"]
    lines = [f"breast volume left {v['left']['value']:.0f} ml [{v['left']['interval'][0]:.0f}-"
             f"{v['left']['interval'][1]:.0f}], right {v['right']['value']:.0f} ml [{v['right']['interval'][0]:.0f}-"
             f"{v['right']['interval'][1]:.0f}] (chest wall: {report['chest_wall_method']})"]
    for name in ("sternal_notch_to_left_nipple", "sternal_notch_to_right_nipple", "nipple_to_nipple",
                 "left_nipple_to_fold", "right_nipple_to_fold"):
        if name in d:
            lines.append(f"{name.replace('_', ' ')}: {d[name]['straight']:.1f} mm straight, "
                         f"{d[name]['surface']:.1f} mm along the skin")
    return lines


def write_measurements(out_dir: Path, m: Measurements, mesh: trimesh.Trimesh, landmarks: np.ndarray,
                       extra: dict | None = None) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for side, curve in m.footprints.items():
        if len(curve):
            stem = out / FOOTPRINT.format(side=side)
            files.append(atomic_write_text(stem.with_name(stem.name + ".mrk.json"),
                                           markups_json(curve, "ClosedCurve", name=f"{side} breast footprint")))
            files.append(atomic_write_text(stem.with_name(stem.name + ".csv"), _xyz_csv(curve)))
    files.append(atomic_write_text(out / DISTANCE_LINES, json.dumps(
        {k: np.asarray(v).round(3).tolist() for k, v in m.lines.items()})))
    if m.wall_mesh is not None:
        files.append(write_mesh(m.wall_mesh, out / CHEST_WALL))
    for side, breast in m.breast_meshes.items():
        files.append(write_mesh(breast, out / BREAST.format(side=side)))
    buf = io.StringIO()
    rows = m.rows()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    files.append(atomic_write_text(out / MEASUREMENTS_CSV, buf.getvalue()))
    files += sheet(out, m, mesh, landmarks)
    doc = {**m.to_json(), **(extra or {}), "files": [p.name for p in files]}
    files.append(atomic_write_text(out / MEASUREMENTS_JSON, json.dumps(doc, indent=1)))
    return files


def _xyz_csv(points: np.ndarray) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([[f"{v:.3f}" for v in p] for p in points])
    return buf.getvalue()


def _draw_mesh(ax, mesh_body: trimesh.Trimesh, view: str, scalars=None, cmap=None, norm=None):
    """Painter's-algorithm drawing of a body-frame mesh, front (x, y) or side (z, y) view, shaded."""
    from matplotlib.collections import PolyCollection
    v, f = mesh_body.vertices, mesh_body.faces
    axes, depth_axis, light = ((0, 1), 2, np.array([0.3, 0.4, 1.0])) if view == "front" else \
        ((2, 1), 0, np.array([1.0, 0.4, 0.3]))
    tri = v[f][:, :, axes]          # front: body x (the patient's left) to the right, as seen facing her
    n = mesh_body.face_normals
    order = np.argsort(v[f][:, :, depth_axis].mean(1))          # far faces first
    shade = np.clip(n @ (light / np.linalg.norm(light)), 0.15, 1.0)
    if scalars is not None:
        import matplotlib.pyplot as plt
        colours = plt.get_cmap(cmap)(norm(scalars[f].mean(1)))[:, :3] * (0.55 + 0.45 * shade[:, None])
    else:
        colours = np.stack([0.93 * shade, 0.80 * shade, 0.72 * shade], 1)
    ax.add_collection(PolyCollection(tri[order], facecolors=colours[order], edgecolors="none", rasterized=True))
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.axis("off")


def _front(p):
    p = np.atleast_2d(p)
    return p[:, :2]


def sheet(out: Path, m: Measurements, mesh: trimesh.Trimesh, landmarks: np.ndarray) -> list[Path]:
    """measurements.png and .pdf: front and side views with footprints, chest-wall cut and tape lines, and the
    table of values with their intervals."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    frame = body_frame(landmarks)
    body = mesh.copy()
    body.vertices = frame.to_body(mesh.vertices)
    fig = plt.figure(figsize=(11.69, 8.27))                      # A4 landscape
    ax_f = fig.add_axes([0.01, 0.12, 0.36, 0.82])
    ax_s = fig.add_axes([0.37, 0.12, 0.18, 0.82])
    ax_t = fig.add_axes([0.565, 0.05, 0.425, 0.9])
    _draw_mesh(ax_f, body, "front")
    _draw_mesh(ax_s, body, "side")
    colours = {"left": "tab:blue", "right": "tab:red"}
    for side, curve in m.footprints.items():
        if len(curve):
            c = frame.to_body(curve)
            cf = _front(np.vstack([c, c[:1]]))
            ax_f.plot(cf[:, 0], cf[:, 1], color=colours[side], lw=1.6)
            ax_s.plot(c[:, 2], c[:, 1], ".", color=colours[side], ms=1.5)
    if m.wall_mesh is not None:
        wall = frame.to_body(m.wall_mesh.vertices)
        cut = np.abs(wall[:, 0] - frame.to_body(landmarks[2])[0]) < 2.0
        ax_s.plot(wall[cut, 2], wall[cut, 1], ",", color="tab:blue", alpha=0.8)
        cut = np.abs(wall[:, 0] - frame.to_body(landmarks[3])[0]) < 2.0
        ax_s.plot(wall[cut, 2], wall[cut, 1], ",", color="tab:red", alpha=0.8)
    for name, line in m.lines.items():
        lf = _front(frame.to_body(line))
        ax_f.plot(lf[:, 0], lf[:, 1], color="0.15", lw=0.9, alpha=0.8)
    lmf = _front(frame.to_body(landmarks))
    ax_f.plot(lmf[:, 0], lmf[:, 1], "o", color="gold", mec="k", ms=5)
    ax_f.set_title("front (patient's left on the right)", fontsize=9)
    ax_s.set_title("side: chest wall under the nipples", fontsize=9)
    rows = [["measure", "value", "90 % interval"]]
    for side in ("left", "right"):
        v = m.breast_volume_ml[side]
        rows.append([f"{side} breast volume", f"{v['value']:.0f} ml",
                     f"{v['interval'][0]:.0f} - {v['interval'][1]:.0f} ml (observed {100 * v['observed_fraction']:.0f} %)"])
    for name, d in m.distances_mm.items():
        value = d["surface"] if d["surface"] is not None else d["straight"]
        kind = "along skin" if d["surface"] is not None else "straight"
        rows.append([name.replace("_", " ") + f" ({kind})", f"{value:.1f} mm",
                     f"{d['interval'][0]:.1f} - {d['interval'][1]:.1f}"])
    for name, s in m.symmetry.items():
        if s["value"] is not None:
            lo, hi = s["interval"]
            fmt = "{:.2f}" if s["units"] == "ratio" else "{:.1f}"
            unit = "" if s["units"] == "ratio" else f" {s['units']}"
            rows.append([name.replace("_", " "), fmt.format(s["value"]) + unit,
                         f"{fmt.format(lo)} - {fmt.format(hi)}" if lo is not None else "-"])
    ax_t.axis("off")
    table = ax_t.table(cellText=rows[1:], colLabels=rows[0], loc="upper center", cellLoc="left",
                       colWidths=[0.47, 0.145, 0.385])      # within its axes: clear of the side view
    table.auto_set_font_size(False)
    table.set_fontsize(7.2)
    table.scale(1, 1.25)
    ax_t.set_title(f"Breast measurements (chest wall: {m.chest_wall_method}; millimetres)", fontsize=10)
    fig.text(0.01, 0.02, "Research software, not validated on patients: volumes are against an estimated chest wall; "
                         "intervals are calibrated on synthetic torsos (bench/measure_accuracy.py).", fontsize=7)
    files = []
    for name, fmt in ((MEASUREMENTS_PNG, "png"), (MEASUREMENTS_PDF, "pdf")):
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, format=fmt, dpi=110)
        files.append(out / name)
    plt.close(fig)
    return files


COMPARISON_JSON = "comparison.json"
COMPARISON_PNG = "comparison.png"
AFTER_WITH_DISTANCE = "after_signed_distance.ply"    # AFTER in BEFORE's frame, per-vertex `signed_distance`


def write_comparison(out_dir: Path, c, before: trimesh.Trimesh, before_lms: np.ndarray, extra: dict) -> list[Path]:
    """comparison.json, the AFTER surface with its signed distance, and the colour map with the changes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mesh = c.after_registered.copy()
    mesh.vertex_attributes["signed_distance"] = c.signed_distance.astype(np.float32)
    files = [write_mesh(mesh, out / AFTER_WITH_DISTANCE)]
    frame = body_frame(before_lms)
    body = c.after_registered.copy()
    body.vertices = frame.to_body(body.vertices)
    lim = max(2.0, float(np.percentile(np.abs(c.signed_distance), 99)))
    norm = TwoSlopeNorm(0.0, -lim, lim)
    fig = plt.figure(figsize=(11.69, 8.27))
    ax = fig.add_axes([0.02, 0.08, 0.5, 0.86])
    _draw_mesh(ax, body, "front", scalars=np.clip(c.signed_distance, -lim, lim), cmap="RdBu_r", norm=norm)
    sm = plt.cm.ScalarMappable(norm=norm, cmap="RdBu_r")
    fig.colorbar(sm, ax=ax, fraction=0.04, pad=0.01, label="after - before (mm): red gained, blue lost")
    doc = c.to_json()
    rows = [["change", "value"]]
    rows += [[f"{s} breast volume", f"{v:+.0f} ml"] for s, v in doc["volume_change_ml"].items()]
    rows += [[k.replace("_", " "), f"{v:+.1f} mm"] for k, v in doc["distance_changes_mm"].items()]
    rows.append(["registration residual (unchanged regions)", f"{doc['registration_residual_mm']:.2f} mm median"])
    axt = fig.add_axes([0.55, 0.05, 0.43, 0.9])
    axt.axis("off")
    t = axt.table(cellText=rows[1:], colLabels=rows[0], loc="upper center", cellLoc="left", colWidths=[0.7, 0.3])
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    t.scale(1, 1.3)
    axt.set_title("Before / after", fontsize=10)
    with atomic_path(out / COMPARISON_PNG) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    files.append(out / COMPARISON_PNG)
    files.append(atomic_write_text(out / COMPARISON_JSON, json.dumps({**doc, **extra}, indent=1)))
    return files
