"""A module's state in its scene parameter node (the classic vtkMRMLScriptedModuleNode, one per module and scene),
without Qt: options, paths, node references and the last result survive switching modules and are saved with the
scene (.mrml/.mrb). Values are stored as JSON text; options through `as_dict`/`from_dict`, so a scene saved by
another version loads what it can."""
from __future__ import annotations

import json
from typing import Any

from .mrml_io import _new_node
from .options import as_dict, from_dict


def parameter_node(scene, module: str):
    """The scene's parameter node of `module` (made on first use, like Slicer's getParameterNode)."""
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLScriptedModuleNode")
        if node.GetModuleName() == module:
            return node
    node = _new_node(scene, "vtkMRMLScriptedModuleNode", module)
    node.SetModuleName(module)
    node.SetSingletonTag(module)
    return node


def put(node, key: str, value: Any) -> None:
    """Store a JSON-able value (dataclasses as their options)."""
    from dataclasses import is_dataclass
    node.SetParameter(key, json.dumps(as_dict(value) if is_dataclass(value) else value))


def get(node, key: str, default: Any = None) -> Any:
    """A stored value, or `default` when absent or unreadable; a dataclass `default` is filled from it."""
    from dataclasses import is_dataclass
    text = node.GetParameter(key)
    if not text:
        return default
    try:
        value = json.loads(text)
    except ValueError:
        return default
    if is_dataclass(default):
        return from_dict(default, value) if isinstance(value, dict) else default
    return value


def put_node(node, role: str, mrml_node) -> None:
    """Remember a node (input model, landmarks, result) by reference: saved with the scene."""
    node.SetNodeReferenceID(role, mrml_node.GetID() if mrml_node is not None else None)


def get_node(node, role: str):
    return node.GetNodeReference(role)
