"""BreastShapeModelLib: the liRBSM neural parametric breast shape model, Qt-free (also `python -m BreastShapeModelLib`).

Public entry point: `ShapeModel` (load a checkpoint, evaluate SDF and anchors, mesh, sample codes).
"""
from .errors import CheckpointError, ConfigError, LandmarkError, UserError
from .landmarks import LANDMARK_KEYS, LANDMARK_NAMES, OFFICIAL_AVERAGE_ANCHORS, Landmarks
from .shape_model import BUNDLED_MODEL, ShapeModel

__all__ = ["ShapeModel", "Landmarks", "LANDMARK_NAMES", "LANDMARK_KEYS", "OFFICIAL_AVERAGE_ANCHORS",
           "BUNDLED_MODEL", "UserError", "CheckpointError", "ConfigError", "LandmarkError"]
__version__ = "0.1.0"
