"""Results as MRML nodes, through storage nodes, for any scene (Slicer's or slicer-core's in tests).

No Qt here: the Slicer module passes `slicer.mrmlScene`, tests pass a `slicer.vtkMRMLScene()`.
"""
from __future__ import annotations

from pathlib import Path

from .errors import UserError


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


def load_model_node(scene, path: str | Path, name: str | None = None, color=(0.93, 0.76, 0.67)):
    """Read a mesh file into a new model node with a display node; returns the node."""
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
    display = _new_node(scene, "vtkMRMLModelDisplayNode")
    display.SetColor(*color)
    node.SetAndObserveDisplayNodeID(display.GetID())
    return node


def load_markups_node(scene, path: str | Path, name: str | None = None):
    """Read a `.mrk.json` point list into a new markups fiducial node; returns the node."""
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
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def add_point_scalar(model_node, name: str, values) -> None:
    """Attach a per-vertex array to a model (PLY readers drop custom vertex properties)."""
    import numpy as np
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk
    poly = model_node.GetPolyData()
    values = np.ascontiguousarray(values, dtype=np.float32)
    if len(values) != poly.GetNumberOfPoints():
        raise UserError(f"'{name}' has {len(values)} values for {poly.GetNumberOfPoints()} vertices")
    arr = numpy_to_vtk(values, deep=True, array_type=vtk.VTK_FLOAT)
    arr.SetName(name)
    poly.GetPointData().AddArray(arr)


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
    return True


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
    import numpy as np
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
    """Write a model node's mesh through a storage node (PLY without header = LPS, like our outputs)."""
    path = Path(path)
    scene = model_node.GetScene()
    storage = _new_node(scene, "vtkMRMLModelStorageNode")
    storage.SetFileName(str(path))
    ok = storage.WriteData(model_node)
    scene.RemoveNode(storage)
    if not ok:
        raise UserError(f"could not write model '{model_node.GetName()}' to {path}")
    return path
