"""The video pipeline's options, one dataclass per step, defaults defined once (the CLI flags, the batch manifest's
extra columns and the Slicer module's command are all made from these)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.options import FitOptions, MeshOptions, ModelOptions, option

OFFICIAL_VIDEO_LATENT_WEIGHT = 0.1      # the method's video setting, for the official model
OURS_VIDEO_LATENT_WEIGHT = 0.02         # calibrated on synthetic videos (bench/video_pipeline.py) for our models
FIT_PRUNING_THRESHOLD = 0.35            # loose mean-surface pruning before fit-driven pruning (model units)
CLICK_RAY_MM = 8.0                      # a nipple found on the frames replaces a clicked one whose depth was a
                                        # guess when it lies this close to the clicked ray (an areola is 15-22 mm)
OFF_SKIN_MM = 5.0                       # a clicked landmark placed by a single ray this far in front of the
                                        # fitted skin moves along its ray onto the skin
GRAZING_DEG = 75.0                      # ... unless the ray meets the skin more obliquely than this
METHOD_PRUNING_THRESHOLD = 0.2          # the method's rule: points within 0.2 model units of the mean surface


@dataclass
class FrameOptions:
    num_frames: int = option(30, "frames to extract")
    uniform: bool = option(False, "evenly spaced frames instead of sharpness-aware selection")
    sharpness_threshold: float | None = option(None, "variance-of-Laplacian threshold (default: 75th percentile of "
                                                     "100 evenly spaced frames)", type=float)
    max_frame_size: int | None = option(None, "scale extracted frames to this long side (px)", type=int)


@dataclass
class SfmOptions:
    backend: str = option("colmap", "SfM backend (colmap: pycolmap)", choices=("colmap", "vggsfm"))
    camera_type: str = option("SIMPLE_RADIAL", "SIMPLE_RADIAL, RADIAL, SIMPLE_PINHOLE or PINHOLE",
                              choices=("SIMPLE_RADIAL", "RADIAL", "SIMPLE_PINHOLE", "PINHOLE"))
    shared_camera: bool = option(True, "one camera shared by all frames, or one per frame")
    max_image_size: int = option(1024, "SIFT on frames scaled to this long side (1280 and 1600 found no better "
                                       "cameras or points on 1080p videos, in 1.4x and 2.2x the time)")
    max_features: int = option(6144, "SIFT features per frame (on three 1080p videos: 8192 gave 0.69 mm in 1.16x "
                                     "the time, 4096 0.73 mm in 0.91x; 6144 0.70 mm)")
    sift_peak_threshold: float = option(0.002, "SIFT peak threshold (COLMAP's 0.0067 finds too few features on "
                                               "skin)")
    matching: str = option("auto", "auto: exhaustive up to 15 frames, else sequential with overlap (video frames "
                                   "are in order: a third of exhaustive matching's time for 30 frames, the same "
                                   "accuracy)",
                           choices=("auto", "sequential", "exhaustive"))
    overlap: int = option(10, "sequential matching: neighbours per frame")
    ba_global_ratio: float = option(1.5, "incremental mapping: global bundle adjustment each time the model has grown "
                                         "by this factor (COLMAP's 1.1 took 1.2-1.9x as long for the same cameras and "
                                         "points)")
    sfm_threads: int = option(-1, "CPU threads for COLMAP (-1: all cores)")
    import_colmap: Path | None = option(None, "use a COLMAP model computed elsewhere", type=Path)
    import_vggsfm: Path | None = option(None, "use VGGSfM predictions.pt computed elsewhere", type=Path)
    vggsfm_python: Path | None = option(None, "interpreter of your VGGSfM environment", type=Path)
    vggsfm_dir: Path | None = option(None, "your VGGSfM checkout (with demo.py)", type=Path)
    query_method: str = option("aliked", "VGGSfM: sp, sift, aliked or combinations")
    query_frame_num: int = option(3, "VGGSfM: query frames")
    max_query_pts: int = option(4096, "VGGSfM: query points per frame")
    num_ba_iterations: int = option(3, "VGGSfM: bundle-adjustment rounds")
    dense_depth: bool = option(False, "VGGSfM: also predict dense depth maps")
    dense: bool = option(False, "add points by rectified two-view stereo between neighbouring frames (off: on skin "
                                "it adds points but not accuracy; see the README)")

    def check(self) -> None:
        if self.ba_global_ratio <= 1.0:
            raise UserError(f"--ba_global_ratio must be above 1 (the model's growth between global bundle "
                            f"adjustments), got {self.ba_global_ratio}")


@dataclass
class AlignOptions:
    landmark_frame: str | None = option(None, "frame of the landmarks (e.g. 015); default: the file name, else the "
                                              "most frontal frame", type=str)
    pruning: str = option("fit", "fit: prune loosely from the mean surface, fit, prune again from the fitted surface "
                                 "and refit, so breasts far from the mean keep their points; mean: the method's rule, "
                                 "points within --pruning_dist_threshold of the model's mean surface",
                          choices=("fit", "mean"))
    pruning_dist_threshold: float | None = option(None, f"drop points farther than this from the model's mean "
                                                        f"surface (model units; default {FIT_PRUNING_THRESHOLD} with "
                                                        f"--pruning fit, {METHOD_PRUNING_THRESHOLD}, the method's "
                                                        f"value, with --pruning mean)", type=float)
    robust_landmarks: bool = option(True, "weight the landmarks by their evidence (tracked and triangulated, swept, "
                                          "single ray) and down-weight one that disagrees with the other five")
    refine_landmarks: bool = option(True, "track landmarks into neighbouring frames and triangulate (fallback: ray "
                                          "casting)")
    debug: bool = option(False, "also write the intermediate clouds")

    def threshold(self) -> float:
        """Mean-surface pruning threshold: loose before fit-driven pruning, the method's 0.2 otherwise."""
        if self.pruning_dist_threshold is not None:
            if self.pruning_dist_threshold <= 0:
                raise UserError(f"--pruning_dist_threshold must be positive, got {self.pruning_dist_threshold}")
            return self.pruning_dist_threshold
        return FIT_PRUNING_THRESHOLD if self.pruning == "fit" else METHOD_PRUNING_THRESHOLD


@dataclass
class VideoFitOptions(FitOptions, MeshOptions):
    latent_weight: float | None = option(None, f"pull towards the mean shape (default: {OFFICIAL_VIDEO_LATENT_WEIGHT}, "
                                               f"the method's video setting, for official checkpoints; "
                                               f"{OURS_VIDEO_LATENT_WEIGHT} for ours, whose codes are larger)",
                                         type=float)
    anchor_weight: float = option(0.1, "landmark term (the method's video setting)")
    metrical: bool = option(True, "output in millimetres, or --no-metrical for model units")
    refit_threshold: float = option(0.04, "--pruning fit: keep points within this of the first fitted surface for "
                                          "the refit (model units, 0.04 = about 12 mm)")
    nipple_depth_from_frames: bool = option(True, "a clicked nipple whose depth was a guess (no track) takes it from "
                                                  "the nipple found on the frames along the clicked ray, and the fit "
                                                  "runs again")

    def check(self) -> None:
        FitOptions.check(self)
        MeshOptions.check(self)
        if self.refit_threshold <= 0:
            raise UserError(f"--refit_threshold must be positive, got {self.refit_threshold}")

    def latent_weight_for(self, model) -> float:
        """Given, or the default for the model: our checkpoints carry provenance, official ones do not."""
        if self.latent_weight is not None:
            return self.latent_weight
        return OURS_VIDEO_LATENT_WEIGHT if model.provenance else OFFICIAL_VIDEO_LATENT_WEIGHT


@dataclass
class ColourOptions:
    colorize: bool = option(False, "colour the mesh from the frames")
    remove_invisible: bool = option(False, "cut away what no camera saw (implies --colorize)")


@dataclass
class VideoOptions:
    """Everything `run_video` takes besides its inputs."""
    frames: FrameOptions = field(default_factory=FrameOptions)
    sfm: SfmOptions = field(default_factory=SfmOptions)
    align: AlignOptions = field(default_factory=AlignOptions)
    fit: VideoFitOptions = field(default_factory=VideoFitOptions)
    colour: ColourOptions = field(default_factory=ColourOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    measure: bool = option(False, "also measure the result: footprints, volumes, distances, symmetry -> "
                                  "measurements.json/.csv/.pdf (experimental, see the README)")
    strict: bool = option(False, "exit with status 3 when the result fails its self-check (default: a loud warning "
                                 "in the terminal and report.json, exit 0)")

    def check(self) -> None:
        self.fit.check()
        self.align.threshold()
        self.sfm.check()


STEP_OPTIONS = (("frames", FrameOptions), ("structure from motion", SfmOptions),
                ("landmarks and alignment", AlignOptions), ("fit", VideoFitOptions), ("colour", ColourOptions),
                ("model", ModelOptions))
