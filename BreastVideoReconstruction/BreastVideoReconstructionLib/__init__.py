"""BreastVideoReconstructionLib: phone video -> frames -> SfM -> landmarks -> aligned cloud -> metric liRBSM fit.

Qt-free (also `python -m BreastVideoReconstructionLib`). Uses BreastShapeModelLib for the shape model.
The pipeline steps are being built; this version provides the package and its command-line entry point.
"""
__version__ = "0.1.0"
