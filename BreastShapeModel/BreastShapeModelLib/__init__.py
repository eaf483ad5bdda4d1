"""BreastShapeModelLib: the liRBSM neural parametric breast shape model, Qt-free (also `python -m BreastShapeModelLib`).

Public entry point: `ShapeModel` (load a checkpoint, evaluate SDF and anchors, mesh, sample codes).
"""
from .errors import CheckpointError, ConfigError, LandmarkError, UserError
from .landmarks import LANDMARK_KEYS, LANDMARK_NAMES, OFFICIAL_AVERAGE_ANCHORS, Landmarks

_LAZY = ("ShapeModel", "BUNDLED_MODEL")     # need torch: imported on first use, so the package (and the Slicer
                                            # module importing it) loads before torch is installed


def __getattr__(name):
    if name in _LAZY:
        from . import shape_model
        return getattr(shape_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["ShapeModel", "Landmarks", "LANDMARK_NAMES", "LANDMARK_KEYS", "OFFICIAL_AVERAGE_ANCHORS",
           "BUNDLED_MODEL", "UserError", "CheckpointError", "ConfigError", "LandmarkError"]
__version__ = "0.1.0"
