"""Reading a finished SfM step back: the scene (cameras, points, optional depth), the landmark frame, and landmark
pixels in the extracted frames' size."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from BreastShapeModelLib.errors import UserError

from .cameras import Scene, read_cameras_json, read_points_ply
from .landmarks2d import Landmarks2D
from .workspace import VideoWorkspace as W


def load_scene(out_dir: Path, dense: bool = True) -> Scene:
    out_dir = Path(out_dir)
    cams = read_cameras_json(out_dir / W.CAMERAS)
    cloud = out_dir / W.POINTS_DENSE if dense and (out_dir / W.POINTS_DENSE).exists() else out_dir / W.POINTS
    pts, cols = read_points_ply(cloud)
    depth = {}
    dz = out_dir / W.DEPTH
    if dz.exists():
        with np.load(dz) as z:
            depth = {k: z[k] for k in z.files}
    return Scene(cams, pts, cols, None, depth)


def frame_index(out_dir: Path, scene: Scene, lm: Landmarks2D | None, landmark_frame: str | int | None) -> int:
    """Camera index of the landmark frame: from the landmark file, --landmark_frame, or the frontal camera."""
    from .frames import read_frames_json
    from .landmarks2d import frontal_camera
    name = None
    if landmark_frame is not None:
        name = f"{int(landmark_frame):03d}.png" if str(landmark_frame).isdigit() else str(landmark_frame)
    elif lm is not None and lm.image is not None:
        name = lm.image
    elif lm is not None and lm.video_frame is not None:
        frames = read_frames_json(out_dir)["frames"]
        match = [f["image"] for f in frames if f["source_frame"] == lm.video_frame]
        if not match:
            raise UserError(f"{lm.source}: video frame {lm.video_frame} is not among the extracted frames; re-run "
                            f"extract-frames with these landmarks (run does it), or give --landmark_frame")
        name = match[0]
    if name is None:
        return frontal_camera(scene.cameras)
    for i, c in enumerate(scene.cameras):
        if c.name == name:
            return i
    raise UserError(f"the landmark frame {name} was not registered by SfM (registered: "
                    f"{', '.join(scene.names[:5])}...); pick landmarks on another frame (--landmark_frame)")


def landmark_pixels_in_frame(out_dir: Path, lm: Landmarks2D) -> np.ndarray:
    """Landmarks placed on the full-size video frame, scaled to the extracted image size."""
    from .frames import read_frames_json
    if lm.video_frame is None:
        return lm.points
    scale = float(read_frames_json(out_dir).get("scale", 1.0))
    return (lm.points + 0.5) * scale - 0.5
