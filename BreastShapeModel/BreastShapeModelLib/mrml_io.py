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
