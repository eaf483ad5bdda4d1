"""The video pipeline's output folder: every file it writes, named once (plus the fit's files and the step stamps
of the scan workspace)."""
from __future__ import annotations

from pathlib import Path

from BreastShapeModelLib.workspace import Workspace

STEPS = ("frames", "sfm", "dense", "landmarks", "align", "fit", "colorize", "measure")
UNTIL_STEPS = ("frames", "sfm")           # where a run may stop before the landmarks are placed


class VideoWorkspace(Workspace):
    IMAGES = "images"                            # extracted frames 000.png ...
    FRAMES = "frames.json"
    SFM_DIR = "sfm"                              # the SfM database and temporary models
    DEPTH = "sfm/depth.npz"                      # VGGSfM dense depth (optional)
    CAMERAS = "cameras.json"
    POINTS = "points.ply"
    SFM_REPORT = "sfm_report.json"
    POINTS_DENSE = "points_dense.ply"
    LANDMARKS_3D = "landmarks_3d.ply"            # in the SfM frame
    ALIGNED_LANDMARKS = "aligned_landmarks_3d.ply"
    ALIGNED_CLOUD = "aligned_pt_pruned.ply"
    ALIGN_REPORT = "align_report.json"
    OVERLAY = "landmarks_overlay.png"
    PROPOSED = "landmarks_proposed.json"         # no landmark file: the landmarks found (fitted anchors) on a frame
    PROPOSED_OVERLAY = "landmarks_proposed.png"
    DEBUG_ALIGNED_ALL = "debug_aligned_all.ply"
    DEBUG_RAY_LANDMARKS = "debug_ray_landmarks.ply"
    COLORED = "reconstruction_colored.ply"
    OVERVIEW = "overview.png"
    LANDMARK_CHECK = "landmark_check.png"        # 3D landmarks re-projected into other frames (the Check view)

    @property
    def images(self) -> Path:
        return self.root / self.IMAGES

    def forget_from(self, step: str) -> None:
        """Remove the stamps of `step` and every step after it, so they run again."""
        self.forget(*STEPS[STEPS.index(step):])
