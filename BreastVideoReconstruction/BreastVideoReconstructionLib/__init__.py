"""BreastVideoReconstructionLib: phone video -> frames -> SfM -> landmarks -> aligned cloud -> metric liRBSM fit.

Qt-free (also `python -m BreastVideoReconstructionLib`). Python API: `api.run_video` / `api.run_scan` with the
options of `options.py`; cohorts: `batch.run_batch` (Dask). Uses BreastShapeModelLib for the shape model.
"""
__version__ = "0.1.0"
