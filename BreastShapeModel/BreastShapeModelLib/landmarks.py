"""The six anatomical landmarks: one type used everywhere, plus reading and writing them.

Order is fixed: sternal notch, belly button, left nipple, right nipple, left coracoid, right coracoid
(left/right from the patient's perspective). In model space +x is the patient's left, +y up, +z forward.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import LandmarkError
from .fileio import atomic_write_text

LANDMARK_NAMES: tuple[str, ...] = (
    "sternal notch", "belly button", "left nipple", "right nipple", "left coracoid process", "right coracoid process",
)
LANDMARK_KEYS: tuple[str, ...] = (
    "sternal_notch", "belly_button", "left_nipple", "right_nipple", "left_coracoid", "right_coracoid",
)
NUM_LANDMARKS = len(LANDMARK_NAMES)

# The official liRBSM average anchors (model units, MIT licence): mean training landmarks x2, same order.
OFFICIAL_AVERAGE_ANCHORS = np.array([
    [-0.012517960327550511, 0.5457115945505642, -0.042698777628280074],
    [-0.00275619056376079, -0.7104054235876344, 0.19443460820889968],
    [0.3810629152263203, -0.08078513760099884, 0.24319785223416657],
    [-0.36870262148706556, -0.06588911378299986, 0.24219328239436722],
    [0.5315557029161821, 0.5535420063192379, -0.13556833785396477],
    [-0.5221661101725175, 0.5564887527011104, -0.13366839568348637],
], dtype=np.float64)


@dataclass(frozen=True)
class Landmarks:
    """Six named 3D points in the fixed order; `units` says what a coordinate means ("model", "mm", ...)."""

    points: np.ndarray
    units: str = "model"

    def __post_init__(self):
        object.__setattr__(self, "points", validate_points(self.points, "landmarks"))

    @property
    def names(self) -> tuple[str, ...]:
        return LANDMARK_NAMES

    def __getitem__(self, key: str) -> np.ndarray:
        index = LANDMARK_KEYS.index(key) if key in LANDMARK_KEYS else LANDMARK_NAMES.index(key)
        return self.points[index]

    def distances_mm(self, mm_per_unit: float = 1.0) -> dict[str, float]:
        """Straight-line distances surgeons quote, in mm (model units times `mm_per_unit`)."""
        p = self.points * mm_per_unit
        d = lambda a, b: float(np.linalg.norm(p[a] - p[b]))  # noqa: E731
        return {"nipple_to_nipple": d(2, 3), "sternal_notch_to_left_nipple": d(0, 2),
                "sternal_notch_to_right_nipple": d(0, 3), "sternal_notch_to_belly_button": d(0, 1),
                "coracoid_to_coracoid": d(4, 5)}


def validate_points(points, source: str, allow_degenerate: bool = False) -> np.ndarray:
    """Six finite 3D points as float64 [6, 3]; one clear error naming `source` otherwise."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise LandmarkError(f"{source}: landmarks must be numbers, got {type(points).__name__}") from None
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise LandmarkError(f"{source}: expected {NUM_LANDMARKS} landmarks with x, y, z each, got shape {arr.shape}")
    if arr.shape[0] != NUM_LANDMARKS:
        raise LandmarkError(f"{source}: expected {NUM_LANDMARKS} landmarks ({', '.join(LANDMARK_NAMES)}), "
                            f"got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise LandmarkError(f"{source}: landmark coordinates must be finite (found NaN or infinity)")
    if not allow_degenerate:
        scale = np.abs(arr - arr.mean(0)).max()
        gaps = np.where(np.eye(NUM_LANDMARKS, dtype=bool), np.inf, np.linalg.norm(arr[:, None] - arr[None], axis=-1))
        if scale == 0 or gaps.min() < 1e-6 * scale:
            i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
            raise LandmarkError(f"{source}: landmarks '{LANDMARK_NAMES[i]}' and '{LANDMARK_NAMES[j]}' coincide")
        centred = arr - arr.mean(0)
        sv = np.linalg.svd(centred, compute_uv=False)
        if sv[1] < 1e-3 * sv[0]:
            raise LandmarkError(f"{source}: landmarks are collinear; they must span the torso")
    return arr


def markups_json(points: np.ndarray, kind: str = "Fiducial", labels=None, descriptions=None, units: str = "mm",
                 name: str = "") -> str:
    """A Slicer markups JSON document: a point list ("Fiducial"), an open "Curve" or a "ClosedCurve".

    Coordinates are written as they are, declared LPS: Slicer reads a PLY without a coordinate-system header
    as LPS too, so markups and meshes written by this package overlay in Slicer.
    """
    pts = np.asarray(points, float)
    labels = labels or [""] * len(pts)
    descriptions = descriptions or [""] * len(pts)
    control_points = [{
        "id": str(i + 1), "label": label, "description": desc, "associatedNodeID": "",
        "position": [float(v) for v in p], "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
        "selected": True, "locked": False, "visibility": True, "positionStatus": "defined",
    } for i, (label, desc, p) in enumerate(zip(labels, descriptions, pts))]
    doc = {
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                   "Schema/markups-schema-v1.0.3.json#",
        "markups": [{"type": kind, "coordinateSystem": "LPS", "coordinateUnits": units, "locked": False,
                     "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d",
                     "lastUsedControlPointNumber": len(pts), "controlPoints": control_points, "measurements": [],
                     **({"name": name} if name else {})}],
    }
    return json.dumps(doc, indent=2)


def anchors_to_mrk_json(points: np.ndarray, name: str = "anchors", units: str = "mm") -> str:
    """A Slicer point list of the six named landmarks."""
    points = validate_points(points, name, allow_degenerate=True)
    return markups_json(points, "Fiducial", list(LANDMARK_NAMES), list(LANDMARK_KEYS), units)


def anchors_to_csv(points: np.ndarray) -> str:
    """One comma-separated `x,y,z` row per landmark, in the fixed order (the reference tools' layout)."""
    points = validate_points(points, "anchors", allow_degenerate=True)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([[repr(float(v)) for v in p] for p in points])
    return buf.getvalue()


def write_anchor_files(points: np.ndarray, stem: str | Path, units: str = "mm") -> list[Path]:
    """Write `<stem>.mrk.json` and `<stem>.csv`; returns the paths."""
    stem = Path(stem)
    paths = [stem.with_name(stem.name + ".mrk.json"), stem.with_name(stem.name + ".csv")]
    atomic_write_text(paths[0], anchors_to_mrk_json(points, stem.name, units))
    atomic_write_text(paths[1], anchors_to_csv(points))
    return paths


@contextlib.contextmanager
def _reading(path: Path, what: str):
    """Any failure while parsing `path` becomes one LandmarkError naming the file and what was expected."""
    try:
        yield
    except LandmarkError:
        raise
    except Exception as exc:  # any reader failure is a user-facing bad file
        raise LandmarkError(f"{path}: cannot read {what} ({exc.__class__.__name__}: {exc})") from None


def load_anchor_array(path: str | Path) -> np.ndarray:
    """Average anchors from an official `.pt` tensor, a `.npy` array, or a text file (6 rows x, y, z)."""
    path = Path(path)
    if not path.is_file():
        raise LandmarkError(f"anchors file not found: {path}")
    suffix = path.suffix.lower()
    with _reading(path, "anchors"):
        if suffix in (".pt", ".pth"):
            import torch
            data = torch.load(path, map_location="cpu", weights_only=True)
            arr = data.detach().cpu().numpy() if hasattr(data, "detach") else np.asarray(data)
        elif suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix in (".txt", ".csv", ".xyz"):
            arr = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=2)
        else:
            raise LandmarkError(f"{path}: unknown anchors format '{suffix}' (expected .pt, .npy, .txt or .csv)")
    return validate_points(arr, str(path), allow_degenerate=True)


# ------------------------------------------------------------------ reading user landmark files
LANDMARK_SUFFIXES = (".pp", ".csv", ".txt", ".ply", ".mrk.json", ".json", ".fcsv", ".npy")


def _match_labels(labels: list[str], points: np.ndarray, source: str) -> np.ndarray:
    """Reorder by label when every label names a known landmark (name or key, any case); else keep the order."""
    norm = [str(label).strip().lower().replace("_", " ").replace("-", " ") for label in labels]
    known = {n: i for i, n in enumerate(LANDMARK_NAMES)}
    known.update({k.replace("_", " "): i for i, k in enumerate(LANDMARK_KEYS)})
    known.update({"umbilicus": 1, "jugulum": 0, "left coracoid": 4, "right coracoid": 5})
    if len(norm) == NUM_LANDMARKS and all(n in known for n in norm):
        order = [known[n] for n in norm]
        if sorted(order) != list(range(NUM_LANDMARKS)):
            raise LandmarkError(f"{source}: landmark labels repeat a name: {labels}")
        out = np.empty_like(points)
        out[order] = points
        return out
    return points


def _lps_from(system: str, pts: np.ndarray) -> np.ndarray:
    """Our files are LPS (as Slicer reads our PLY meshes); RAS markups are converted."""
    if str(system).upper() in ("RAS", "0"):
        return pts * np.array([-1.0, -1.0, 1.0])
    return pts


def _markups_points(path: Path) -> tuple[list[str], np.ndarray]:
    """Labels and LPS positions of the first markup in a Slicer `.mrk.json` (any markups type)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    markups = doc.get("markups") or []
    if not markups:
        raise LandmarkError(f"{path}: no markups in the file")
    m = markups[0]
    cps = m.get("controlPoints") or []
    arr = np.array([cp.get("position", [np.nan] * 3) for cp in cps], dtype=np.float64).reshape(-1, 3)
    return [cp.get("label", "") for cp in cps], _lps_from(m.get("coordinateSystem", "LPS"), arr)


def read_curve(path: str | Path, min_points: int = 3) -> np.ndarray:
    """The points [N, 3] of a curve: a Slicer `.mrk.json` (closed or open curve, point list; LPS) or a `.csv` /
    `.txt` of x, y, z rows (what `measure` writes for a footprint). One clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise LandmarkError(f"curve file not found: {path}")
    name = path.name.lower()
    with _reading(path, "the curve"):
        if name.endswith(".json"):
            arr = _markups_points(path)[1]
        elif name.endswith((".csv", ".txt")):
            arr = np.loadtxt(path, delimiter="," if name.endswith(".csv") else None, ndmin=2, comments="#")
        else:
            raise LandmarkError(f"{path}: unknown curve format (expected .mrk.json, .csv or .txt)")
    arr = np.asarray(arr, float)
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) < min_points or not np.isfinite(arr).all():
        raise LandmarkError(f"{path}: expected at least {min_points} defined x, y, z points, got an array of shape "
                            f"{arr.shape}")
    return arr


def read_landmarks(path: str | Path) -> np.ndarray:
    """Six 3D landmarks [6, 3] from MeshLab .pp, .csv/.txt, vertex-only .ply, Slicer .mrk.json (matched by
    label when labels are the known names, else by order), legacy .fcsv or .npy. One clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise LandmarkError(f"landmark file not found: {path}")
    name = path.name.lower()
    with _reading(path, "landmarks"):
        if name.endswith(".pp"):
            import xml.etree.ElementTree as ET
            root = ET.parse(path).getroot()
            pts = [(p.get("name", ""), [float(p.get(a)) for a in "xyz"]) for p in root.iter("point")
                   if p.get("active", "1") != "0"]
            labels, arr = [p[0] for p in pts], np.array([p[1] for p in pts], dtype=np.float64).reshape(-1, 3)
            arr = _match_labels(labels, arr, str(path))
        elif name.endswith(".mrk.json") or name.endswith(".json"):
            labels, arr = _markups_points(path)
            arr = _match_labels(labels, arr, str(path))
        elif name.endswith(".fcsv"):
            system, rows = "RAS", []
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.startswith("#"):
                    if "CoordinateSystem" in line:
                        system = line.split("=", 1)[1].strip()
                    continue
                if line.strip():
                    rows.append(next(csv.reader([line])))
            arr = np.array([[float(r[1]), float(r[2]), float(r[3])] for r in rows], dtype=np.float64).reshape(-1, 3)
            arr = _match_labels([r[11] if len(r) > 11 else "" for r in rows], _lps_from(system, arr), str(path))
        elif name.endswith(".ply"):
            import trimesh
            cloud = trimesh.load(path, process=False)
            arr = np.asarray(getattr(cloud, "vertices", np.empty((0, 3))), dtype=np.float64)
        elif name.endswith((".csv", ".txt", ".xyz")):
            rows = [r for r in csv.reader(path.read_text(encoding="utf-8").splitlines(),
                                          delimiter="," if "," in path.read_text(encoding="utf-8") else " ",
                                          skipinitialspace=True) if r and not r[0].startswith("#")]
            labels, values = [], []
            for r in rows:
                r = [c for c in r if c != ""]
                try:
                    values.append([float(c) for c in r[-3:]])
                    labels.append(" ".join(r[:-3]))
                except ValueError:
                    if values:                          # a non-numeric row after data is an error
                        raise
            arr = _match_labels(labels, np.array(values, dtype=np.float64).reshape(-1, 3), str(path))
        elif name.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        else:
            raise LandmarkError(f"{path}: unknown landmark format (expected one of {', '.join(LANDMARK_SUFFIXES)})")
    return validate_points(arr, str(path))


def write_landmarks(points: np.ndarray, path: str | Path, units: str = "mm") -> Path:
    """Write six landmarks in the format the suffix names (.mrk.json, .csv, .txt, .pp, .fcsv, .ply)."""
    path = Path(path)
    pts = validate_points(points, str(path), allow_degenerate=True)
    name = path.name.lower()
    if name.endswith(".mrk.json"):
        return atomic_write_text(path, anchors_to_mrk_json(pts, path.name[:-9], units))
    if name.endswith(".csv"):
        return atomic_write_text(path, anchors_to_csv(pts))
    if name.endswith(".txt"):
        return atomic_write_text(path, "".join(f"{x!r} {y!r} {z!r}\n" for x, y, z in pts.tolist()))
    if name.endswith(".pp"):
        body = "".join(f' <point x="{x!r}" y="{y!r}" z="{z!r}" active="1" name="{n}"/>\n'
                       for n, (x, y, z) in zip(LANDMARK_NAMES, pts.tolist()))
        return atomic_write_text(path, f"<!DOCTYPE PickedPoints>\n<PickedPoints>\n{body}</PickedPoints>\n")
    if name.endswith(".fcsv"):
        head = ("# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n"
                "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n")
        rows = "".join(f"{i + 1},{x!r},{y!r},{z!r},0,0,0,1,1,1,0,{n},,\n"
                       for i, (n, (x, y, z)) in enumerate(zip(LANDMARK_NAMES, pts.tolist())))
        return atomic_write_text(path, head + rows)
    if name.endswith(".ply"):
        body = "".join(f"{x!r} {y!r} {z!r}\n" for x, y, z in pts.tolist())
        return atomic_write_text(path, "ply\nformat ascii 1.0\nelement vertex 6\nproperty double x\n"
                                       "property double y\nproperty double z\nend_header\n" + body)
    raise LandmarkError(f"{path}: unknown landmark format (expected .mrk.json, .csv, .txt, .pp, .fcsv or .ply)")
