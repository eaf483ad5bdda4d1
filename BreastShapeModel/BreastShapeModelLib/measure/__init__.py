"""Clinical measurements on a breast surface (millimetres): per-side footprint and volume against an estimated
chest wall, tape-measure distances (straight and along the skin), symmetry, intervals; and the before/after
comparison of two visits. Used by `measure`/`compare`, `reconstruct`, the video `run` and the Slicer modules."""
