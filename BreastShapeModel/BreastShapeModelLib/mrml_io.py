"""Results as MRML nodes, through storage nodes, for any scene (Slicer's or slicer-core's in tests).

No Qt here: the Slicer module passes `slicer.mrmlScene`, tests pass a `slicer.vtkMRMLScene()`.

Frames, the one place they are converted: our files are in one of two frames.
- "model": the shape model's frame (x = patient left, y = up, z = forward; samples, video results, metric fits).
  Shown in Slicer's RAS with the patient standing, facing anterior: R = -x, A = z, S = y.
- "lps": what Slicer itself writes (a scan exported from a node, fits in that scan's frame): file = LPS.
Every loader and writer here takes the frame; a loaded node remembers it in the attribute `FRAME_ATTRIBUTE`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UserError

MODEL_TO_RAS = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
FRAMES = {"model": MODEL_TO_RAS, "lps": LPS_TO_RAS}
FRAME_ATTRIBUTE = "BreastShape.Frame"


def _frame(frame: str) -> np.ndarray:
    if frame not in FRAMES:
        raise ValueError(f"unknown frame {frame!r} (expected one of {', '.join(FRAMES)})")
    return FRAMES[frame]


def to_ras(points, frame: str = "model") -> np.ndarray:
    """File coordinates [N, 3] in `frame` -> Slicer RAS."""
    return np.asarray(points, float) @ _frame(frame).T


def from_ras(points, frame: str = "model") -> np.ndarray:
    """Slicer RAS [N, 3] -> file coordinates in `frame` (the matrices are rotations: inverse = transpose)."""
    return np.asarray(points, float) @ _frame(frame)


def _storage_to_frame(frame: str) -> np.ndarray:
    """Storage nodes read our files as LPS; this rotation takes what they made to `frame`'s RAS."""
    return _frame(frame) @ LPS_TO_RAS.T


def _rotate_polydata(poly, rotation: np.ndarray):
    """Points and normals of `poly` rotated in place (identity: nothing done)."""
    if np.allclose(rotation, np.eye(3)):
        return poly
    import vtk
    transform = vtk.vtkTransform()
    m = np.eye(4)
    m[:3, :3] = rotation
    transform.SetMatrix(m.ravel().tolist())
    f = vtk.vtkTransformPolyDataFilter()
    f.SetInputData(poly)
    f.SetTransform(transform)
    f.Update()
    poly.DeepCopy(f.GetOutput())
    return poly


def _mrml():
    import slicer  # slicer-core outside Slicer, Slicer's own module inside it
    return slicer


def _new_node(scene, class_name: str, name: str | None = None):
    """Add a node of `class_name`; falls back to the class itself where the scene has not registered it
    (a bare scene without Slicer's modules, e.g. slicer-core's)."""
    node = scene.AddNewNodeByClass(class_name, name) if name else scene.AddNewNodeByClass(class_name)
    if node is None:
        node = getattr(_mrml(), class_name)()
        if name:
            node.SetName(name)
        scene.AddNode(node)
    return node


def load_model_node(scene, path: str | Path, name: str | None = None, color=(0.93, 0.76, 0.67), frame: str = "model"):
    """Read a mesh file (coordinates in `frame`) into a new model node, shown in RAS; returns the node."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"mesh file not found: {path}")
    node = _new_node(scene, "vtkMRMLModelNode", name or path.stem)
    storage = _new_node(scene, "vtkMRMLModelStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise UserError(f"{path}: could not be read as a mesh")
    scene.RemoveNode(storage)     # the file is temporary; the node owns its polydata now
    _rotate_polydata(node.GetPolyData(), _storage_to_frame(frame))
    node.SetAttribute(FRAME_ATTRIBUTE, frame)
    display = _new_node(scene, "vtkMRMLModelDisplayNode")
    display.SetColor(*color)
    node.SetAndObserveDisplayNodeID(display.GetID())
    return node


def load_markups_node(scene, path: str | Path, name: str | None = None, frame: str = "model"):
    """Read a `.mrk.json` point list (coordinates in `frame`) into a new markups fiducial node, in RAS."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"markups file not found: {path}")
    node = _new_node(scene, "vtkMRMLMarkupsFiducialNode", name or path.name.split(".")[0])
    storage = _new_node(scene, "vtkMRMLMarkupsJsonStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise UserError(f"{path}: could not be read as Slicer markups")
    scene.RemoveNode(storage)
    rotation = _storage_to_frame(frame)
    for i in range(node.GetNumberOfControlPoints()):
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPosition(i, p)
        node.SetNthControlPointPosition(i, *(rotation @ np.asarray(p)).tolist())
    node.SetAttribute(FRAME_ATTRIBUTE, frame)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def points_node(scene, points, name: str, frame: str = "model", colors=None, lines: bool = False,
                color=(0.3, 0.6, 1.0), point_size: float = 3.0):
    """A model node of points (vertices) or, with `lines`, a polyline through them, from file coordinates in
    `frame`; `colors` [N, 3] uint8 become the point colours."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
    pts = to_ras(np.asarray(points, float).reshape(-1, 3), frame)
    poly = vtk.vtkPolyData()
    vpts = vtk.vtkPoints()
    vpts.SetData(numpy_to_vtk(np.ascontiguousarray(pts), deep=True))
    poly.SetPoints(vpts)
    n = len(pts)
    ids = numpy_to_vtkIdTypeArray(np.arange(n, dtype=np.int64), deep=True)
    offsets = np.array([0, n]) if lines else np.arange(n + 1)       # one polyline, or one vertex per point
    cells = vtk.vtkCellArray()
    cells.SetData(numpy_to_vtkIdTypeArray(offsets.astype(np.int64), deep=True), ids)
    if lines:
        poly.SetLines(cells)
    else:
        poly.SetVerts(cells)
    node = _new_node(scene, "vtkMRMLModelNode", name)
    node.SetAndObservePolyData(poly)
    node.SetAttribute(FRAME_ATTRIBUTE, frame)
    display = _new_node(scene, "vtkMRMLModelDisplayNode")
    display.SetColor(*color)
    display.SetPointSize(point_size)
    display.SetLineWidth(2.0)
    node.SetAndObserveDisplayNodeID(display.GetID())
    if colors is not None:
        rgb = numpy_to_vtk(np.ascontiguousarray(np.asarray(colors, np.uint8)[:, :3]), deep=True)
        rgb.SetName("colors")
        poly.GetPointData().AddArray(rgb)
        display.SetActiveScalarName("colors")
        display.SetScalarVisibility(True)
        if hasattr(display, "SetScalarRangeFlag") and hasattr(display, "UseDirectScalars"):
            display.SetScalarRangeFlag(display.UseDirectScalars)
    return node


def add_point_scalar(model_node, name: str, values) -> None:
    """Attach a per-vertex array to a model (PLY readers drop custom vertex properties)."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk
    poly = model_node.GetPolyData()
    values = np.ascontiguousarray(values, dtype=np.float32)
    if len(values) != poly.GetNumberOfPoints():
        raise UserError(f"'{name}' has {len(values)} values for {poly.GetNumberOfPoints()} vertices")
    arr = numpy_to_vtk(values, deep=True, array_type=vtk.VTK_FLOAT)
    arr.SetName(name)
    poly.GetPointData().AddArray(arr)


FIT_RESIDUAL_ATTRIBUTE = "BreastShape.FitResidualMm"     # a fitted model node's mean residual (mm)


def attach_fit_quality(model_node, result_dir: str | Path) -> None:
    """A fit's support map (point array `support`) and mean residual (node attribute) from its result folder, so a
    later measurement of the node reads the chest wall and widens its intervals as `measure` on the folder does."""
    from .measure.surface_io import find_residual
    from .workspace import Workspace
    d = Path(result_dir)
    if (d / Workspace.SUPPORT).is_file():
        add_point_scalar(model_node, "support", np.load(d / Workspace.SUPPORT))
    residual = find_residual(d / Workspace.RECONSTRUCTION)
    if residual:
        model_node.SetAttribute(FIT_RESIDUAL_ATTRIBUTE, f"{residual:.4f}")


def export_fit_quality(model_node, surface_path: str | Path) -> None:
    """Beside a surface saved from `model_node`: its support map and residual, where `measure` looks for them (a PLY
    written through a storage node keeps no custom vertex property)."""
    import json
    from vtk.util.numpy_support import vtk_to_numpy
    from .workspace import Workspace
    d = Path(surface_path).parent
    poly = model_node.GetPolyData()
    support = poly.GetPointData().GetArray("support") if poly is not None else None
    if support is not None:
        np.save(d / Workspace.SUPPORT, vtk_to_numpy(support).astype(float))
    residual = model_node.GetAttribute(FIT_RESIDUAL_ATTRIBUTE)
    if residual:
        (d / Workspace.FIT_REPORT).write_text(json.dumps({"residuals": {"mean_mm": float(residual)}}),
                                              encoding="utf-8")


def show_scalar(model_node, array_name: str, color_table_id: str = "vtkMRMLColorTableNodeRainbow") -> bool:
    """Colour a model by one of its point-data arrays (e.g. the fit's `support`); False if the array is absent."""
    poly = model_node.GetPolyData()
    if poly is None or poly.GetPointData().GetArray(array_name) is None:
        return False
    display = model_node.GetDisplayNode()
    display.SetActiveScalarName(array_name)
    display.SetScalarVisibility(True)
    if model_node.GetScene() is not None and model_node.GetScene().GetNodeByID(color_table_id) is not None:
        display.SetAndObserveColorNodeID(color_table_id)
    if array_name == "support":
        add_color_legend(model_node, "support (distance to the nearest input point)")
    return True


def add_color_legend(model_node, title: str):
    """A colour legend for a model's scalars: through Slicer's Colors module where it runs, else a legend display
    node of our own (a bare MRML scene); None where neither is possible."""
    colors = getattr(getattr(_mrml(), "modules", None), "colors", None)     # only inside the Slicer application
    if colors is not None and hasattr(colors.logic(), "AddDefaultColorLegendDisplayNode"):
        legend = colors.logic().AddDefaultColorLegendDisplayNode(model_node)
    elif hasattr(_mrml(), "vtkMRMLColorLegendDisplayNode") and model_node.GetScene() is not None:
        legend = _mrml().vtkMRMLColorLegendDisplayNode()
        model_node.GetScene().AddNode(legend)
        legend.SetAndObservePrimaryDisplayNode(model_node.GetDisplayNode())
        model_node.AddAndObserveDisplayNodeID(legend.GetID())
    else:
        return None
    if legend is not None:
        legend.SetTitleText(title)
    return legend


def show_signed_scalar(model_node, array_name: str, limit: float, title: str):
    """Colour a model by a signed per-vertex array on a blue (negative) - white - red (positive) scale fixed to
    [-limit, limit], with a legend; the colour node is shared by name."""
    import vtk
    scene = model_node.GetScene()
    name = "BreastShapeSignedDistance"
    color = scene.GetFirstNodeByName(name)
    if color is None:
        color = _new_node(scene, "vtkMRMLProceduralColorNode", name)
        ctf = vtk.vtkColorTransferFunction()
        for x, rgb in ((-1.0, (0.13, 0.40, 0.67)), (0.0, (0.97, 0.97, 0.97)), (1.0, (0.70, 0.09, 0.17))):
            ctf.AddRGBPoint(x, *rgb)
        color.SetAndObserveColorTransferFunction(ctf)
    ctf = color.GetColorTransferFunction()
    ctf.RemoveAllPoints()
    for x, rgb in ((-limit, (0.13, 0.40, 0.67)), (0.0, (0.97, 0.97, 0.97)), (limit, (0.70, 0.09, 0.17))):
        ctf.AddRGBPoint(x, *rgb)
    display = model_node.GetDisplayNode()
    display.SetActiveScalarName(array_name)
    display.SetScalarVisibility(True)
    display.SetAndObserveColorNodeID(color.GetID())
    display.SetScalarRangeFlag(display.UseManualScalarRange)
    display.SetScalarRange(-limit, limit)
    return add_color_legend(model_node, title)


def markups_from_points(scene, points, name: str, class_name: str = "vtkMRMLMarkupsClosedCurveNode",
                        frame: str = "lps", labels=None, color=None, linear: bool = False):
    """A markups node (closed or open curve, line, point list) through points given in file coordinates of
    `frame`; `linear` curves pass straight from point to point (a path along the skin)."""
    import vtk
    node = _new_node(scene, class_name, name)
    for i, p in enumerate(to_ras(np.asarray(points, float).reshape(-1, 3), frame)):
        node.AddControlPoint(vtk.vtkVector3d(*p), (labels[i] if labels else ""))
    if linear and hasattr(node, "SetCurveTypeToLinear"):
        node.SetCurveTypeToLinear()
    node.SetAttribute(FRAME_ATTRIBUTE, frame)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    if color is not None and node.GetDisplayNode() is not None:
        node.GetDisplayNode().SetSelectedColor(*color)
        node.GetDisplayNode().SetColor(*color)
    return node


def table_node(scene, rows: list[dict], name: str):
    """A table node with one row per dict (columns from the first row's keys; numbers as double columns)."""
    import vtk
    node = _new_node(scene, "vtkMRMLTableNode", name)
    table = node.GetTable()
    keys = list(rows[0]) if rows else []
    numeric = {k: all(isinstance(r.get(k), (int, float)) or r.get(k) is None for r in rows) and
               any(isinstance(r.get(k), (int, float)) for r in rows) for k in keys}
    for k in keys:
        col = vtk.vtkDoubleArray() if numeric[k] else vtk.vtkStringArray()
        col.SetName(k)
        table.AddColumn(col)
    table.SetNumberOfRows(len(rows))
    for i, r in enumerate(rows):
        for j, k in enumerate(keys):
            v = r.get(k)
            table.SetValue(i, j, vtk.vtkVariant(float("nan") if v is None else float(v)) if numeric[k]
                           else vtk.vtkVariant("" if v is None else str(v)))
    node.Modified()
    return node


def new_landmark_node(scene, names, name: str = "Landmarks"):
    """A markups point list with the named, still undefined points, so the user places them one by one."""
    import vtk
    node = _new_node(scene, "vtkMRMLMarkupsFiducialNode", name)
    for label in names:
        i = node.AddControlPoint(vtk.vtkVector3d(0, 0, 0), label)
        node.UnsetNthControlPointPosition(i)
    node.SetFixedNumberOfControlPoints(True)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def markups_positions(node):
    """[N, 3] positions (world, RAS) and labels of a markups node; undefined points are NaN."""
    pts, labels = [], []
    for i in range(node.GetNumberOfControlPoints()):
        labels.append(node.GetNthControlPointLabel(i))
        if node.GetNthControlPointPositionStatus(i) == node.PositionUndefined:
            pts.append([np.nan] * 3)
            continue
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(i, p)
        pts.append(p)
    return np.array(pts, dtype=float).reshape(-1, 3), labels


def save_model_node(model_node, path: str | Path) -> Path:
    """Write a model node's mesh through a storage node, in the "lps" frame (what Slicer writes)."""
    path = Path(path)
    scene = model_node.GetScene()
    storage = _new_node(scene, "vtkMRMLModelStorageNode")
    storage.SetFileName(str(path))
    ok = storage.WriteData(model_node)
    scene.RemoveNode(storage)
    if not ok:
        raise UserError(f"could not write model '{model_node.GetName()}' to {path}")
    return path
