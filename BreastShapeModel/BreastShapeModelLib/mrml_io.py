"""Results as MRML nodes, through storage nodes, for any scene (Slicer's or slicer-core's in tests).

No Qt here: the Slicer module passes `slicer.mrmlScene`, tests pass a `slicer.vtkMRMLScene()`.
"""
from __future__ import annotations

from pathlib import Path

from .errors import UserError


def _mrml():
    import slicer  # slicer-core outside Slicer, Slicer's own module inside it
    return slicer


def load_model_node(scene, path: str | Path, name: str | None = None, color=(0.93, 0.76, 0.67)):
    """Read a mesh file into a new model node with a display node; returns the node."""
    slicer = _mrml()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"mesh file not found: {path}")
    node = scene.AddNewNodeByClass("vtkMRMLModelNode", name or path.stem)
    storage = scene.AddNewNodeByClass("vtkMRMLModelStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise UserError(f"{path}: could not be read as a mesh")
    scene.RemoveNode(storage)     # the file is temporary; the node owns its polydata now
    display = scene.AddNewNodeByClass("vtkMRMLModelDisplayNode")
    display.SetColor(*color)
    node.SetAndObserveDisplayNodeID(display.GetID())
    return node


def load_markups_node(scene, path: str | Path, name: str | None = None):
    """Read a `.mrk.json` point list into a new markups fiducial node; returns the node."""
    slicer = _mrml()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"markups file not found: {path}")
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name or path.name.split(".")[0])
    storage = scene.AddNewNodeByClass("vtkMRMLMarkupsJsonStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise UserError(f"{path}: could not be read as Slicer markups")
    scene.RemoveNode(storage)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node
