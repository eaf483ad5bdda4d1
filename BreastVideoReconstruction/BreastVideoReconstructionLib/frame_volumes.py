"""Video frames in a MRML scene, and landmarks placed on them, without Qt.

The extracted frames become RGB vector volumes in one sequence (a browser steps through them; the most frontal
frame is selected). A frame's pixel (x right, y down, integer pixel centres: the landmark files' convention) is
shown upright in the axial (Red) slice view: R = -x, A = -y, S = 0, i.e. the volume's IJK-to-RAS is
diag(-s, -s, 1) (s: pixel spacing when the frames are shown downsized). Clicked control points are converted back
exactly through the volume's RAS-to-IJK matrix.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from BreastShapeModelLib.errors import LandmarkError, UserError
from BreastShapeModelLib.landmarks import LANDMARK_NAMES
from BreastShapeModelLib.mrml_io import _new_node, markups_positions, new_landmark_node

from .workspace import VideoWorkspace as W

IMAGE_ATTRIBUTE = "BreastShape.FrameImage"     # on a frame volume and on a point list: which extracted image
SEQUENCE_NAME = "VideoFrames"


def frame_volume(scene, rgb: np.ndarray, name: str, spacing: float = 1.0, node=None):
    """An RGB vector volume of one frame ([H, W, 3] uint8); `spacing` > 1: the frame was downsized by it, and
    RAS still measures original pixels. Without `scene`, the node is made but not added (sequence items)."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk
    rgb = np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8)
    h, w = rgb.shape[:2]
    image = vtk.vtkImageData()
    image.SetDimensions(w, h, 1)
    scalars = numpy_to_vtk(rgb.reshape(-1, 3), deep=True)     # row-major: x fastest, so point (i, j) = pixel (x, y)
    scalars.SetName("rgb")
    image.GetPointData().SetScalars(scalars)
    if node is None:
        import slicer
        node = slicer.vtkMRMLVectorVolumeNode() if scene is None else _new_node(scene, "vtkMRMLVectorVolumeNode", name)
    node.SetName(name)
    node.SetAndObserveImageData(image)
    node.SetIJKToRASDirections(-1, 0, 0, 0, -1, 0, 0, 0, 1)
    node.SetSpacing(spacing, spacing, 1.0)
    off = spacing / 2.0 - 0.5                                  # downsized pixel i's centre = original s*i + s/2 - 1/2
    node.SetOrigin(-off, -off, 0.0)
    node.SetAttribute(IMAGE_ATTRIBUTE, name)
    return node


def pixels_from_ras(volume_node, ras: np.ndarray) -> np.ndarray:
    """Original-frame pixel coordinates [N, 2] of RAS points on a frame volume (its RAS-to-IJK, exactly)."""
    import vtk
    m = vtk.vtkMatrix4x4()
    volume_node.GetRASToIJKMatrix(m)
    a = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    ras = np.asarray(ras, float).reshape(-1, 3)
    ijk = ras @ a[:3, :3].T + a[:3, 3]
    s = volume_node.GetSpacing()[0]
    return ijk[:, :2] * s + (s / 2.0 - 0.5)


def ras_from_pixels(volume_node, pixels: np.ndarray) -> np.ndarray:
    """RAS [N, 3] of original-frame pixels on a frame volume (inverse of `pixels_from_ras`)."""
    import vtk
    m = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(m)
    a = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    s = volume_node.GetSpacing()[0]
    px = np.asarray(pixels, float).reshape(-1, 2)
    ijk = np.concatenate([(px - (s / 2.0 - 0.5)) / s, np.zeros((len(px), 1))], 1)
    return ijk @ a[:3, :3].T + a[:3, 3]


def frames_sequence(scene, out_dir: str | Path, max_size: int | None = 1280, select: str | None = None,
                    sequences_logic=None):
    """The run's extracted frames as one sequence with a browser; returns (sequence, browser, proxy volume).

    `select`: the image to show first (default: the landmark frame of a finished run, else the most frontal
    registered camera, else the middle frame). `sequences_logic`: Slicer's (slicer.modules.sequences.logic());
    by default a vtkSlicerSequencesLogic of our own makes the proxy node."""
    import cv2
    import slicer
    out_dir = Path(out_dir)
    images = sorted((out_dir / W.IMAGES).glob("*.png"))
    if not images:
        raise UserError(f"{out_dir / W.IMAGES}: no frames yet (run the frames step first)")
    sequence = _new_node(scene, "vtkMRMLSequenceNode", SEQUENCE_NAME)
    sequence.SetIndexName("frame")
    sequence.SetIndexUnit("")
    sequence.SetIndexType(sequence.TextIndex)
    for path in images:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserError(f"{path}: cannot be read as an image")
        spacing = 1.0
        if max_size and max(bgr.shape[:2]) > max_size:
            spacing = float(np.ceil(max(bgr.shape[:2]) / max_size))
            h, w = bgr.shape[:2]
            bgr = cv2.resize(bgr, (int(round(w / spacing)), int(round(h / spacing))), interpolation=cv2.INTER_AREA)
            spacing = w / bgr.shape[1]
        sequence.SetDataNodeAtValue(frame_volume(None, bgr[:, :, ::-1], path.name, spacing), path.name)
    browser = _new_node(scene, "vtkMRMLSequenceBrowserNode", SEQUENCE_NAME + " browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    if sequences_logic is None:
        sequences_logic = slicer.vtkSlicerSequencesLogic()
        sequences_logic.SetMRMLScene(scene)
    name = select or default_frame(out_dir)
    names = [p.name for p in images]
    browser.SetSelectedItemNumber(names.index(name) if name in names else len(names) // 2)
    sequences_logic.UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    return sequence, browser, proxy


def current_image(browser) -> str:
    """The extracted image the browser shows now (e.g. "015.png")."""
    sequence = browser.GetMasterSequenceNode()
    return sequence.GetNthIndexValue(browser.GetSelectedItemNumber())


def default_frame(out_dir: Path) -> str | None:
    """The landmark frame of a finished alignment, else the most frontal registered camera."""
    out_dir = Path(out_dir)
    try:
        rep = json.loads((out_dir / W.ALIGN_REPORT).read_text(encoding="utf-8"))
        if rep.get("landmark_frame"):
            return rep["landmark_frame"]
    except (OSError, ValueError):
        pass
    if (out_dir / W.CAMERAS).is_file():
        from .cameras import read_cameras_json
        from .landmarks2d import frontal_camera
        cams = read_cameras_json(out_dir / W.CAMERAS)
        if cams:
            return cams[frontal_camera(cams)].name
    return None


def place_frame_landmarks(scene, browser, name: str = "FrameLandmarks"):
    """The point list to click on the frame the browser shows: six named, undefined points; remembers the frame."""
    node = new_landmark_node(scene, LANDMARK_NAMES, name)
    node.SetAttribute(IMAGE_ATTRIBUTE, current_image(browser))
    return node


def proposed_frame_landmarks(scene, out_dir: str | Path, browser, sequences_logic=None,
                             name: str = "ProposedLandmarks"):
    """The landmarks a run without a landmark file found (landmarks_proposed.json) as the six named points on
    their frame, which the browser then shows: ready to drag, then saved and reconstructed like clicked ones.
    A point's description holds its confidence; points below CONFIDENT are left unselected (another colour).
    Returns (point list, the reasons to check)."""
    from BreastShapeModelLib.found_landmarks import mark_confidence
    path = Path(out_dir) / W.PROPOSED
    if not path.is_file():
        raise UserError(f"{path}: no proposed landmarks (run the pipeline without a landmark file first)")
    prop = json.loads(path.read_text(encoding="utf-8"))
    sequence = browser.GetMasterSequenceNode()
    names = [sequence.GetNthIndexValue(i) for i in range(sequence.GetNumberOfDataNodes())]
    if prop["image"] not in names:
        raise UserError(f"{path}: the frame {prop['image']} is not among the loaded frames")
    browser.SetSelectedItemNumber(names.index(prop["image"]))
    if sequences_logic is not None:
        sequences_logic.UpdateProxyNodesFromSequences(browser)
    node = place_frame_landmarks(scene, browser, name)
    ras = ras_from_pixels(browser.GetProxyNode(sequence), np.asarray(prop["points"], float))
    for i, p in enumerate(ras):
        node.SetNthControlPointPosition(i, *p)
    mark_confidence(node, prop["confidence"])
    return node, list(prop.get("unsure", []))


def frame_landmarks_pixels(points_node, volume_node) -> np.ndarray:
    """[6, 2] original-frame pixels of the six points clicked on a frame volume; a clear error if incomplete."""
    pts, labels = markups_positions(points_node)
    if len(pts) != len(LANDMARK_NAMES):
        raise LandmarkError(f"'{points_node.GetName()}': expected {len(LANDMARK_NAMES)} points "
                            f"({', '.join(LANDMARK_NAMES)}), got {len(pts)}")
    missing = [labels[i] or str(i + 1) for i in range(len(pts)) if not np.isfinite(pts[i]).all()]
    if missing:
        raise LandmarkError(f"'{points_node.GetName()}': place {', '.join(missing)} on the frame first")
    return pixels_from_ras(volume_node, pts)


def write_frame_landmarks(points_node, volume_node, path: str | Path) -> Path:
    """The clicked points as our landmark file (`.json`: pixels and the frame image), ready for `run`/`align`."""
    from BreastShapeModelLib.fileio import atomic_write_text
    image = points_node.GetAttribute(IMAGE_ATTRIBUTE) or volume_node.GetAttribute(IMAGE_ATTRIBUTE)
    if not image:
        raise LandmarkError(f"'{points_node.GetName()}': on which frame were these placed? (no frame recorded)")
    px = frame_landmarks_pixels(points_node, volume_node)
    h = volume_node.GetImageData().GetDimensions()[1] * volume_node.GetSpacing()[0]
    w = volume_node.GetImageData().GetDimensions()[0] * volume_node.GetSpacing()[0]
    outside = [LANDMARK_NAMES[i] for i, (x, y) in enumerate(px) if not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5)]
    if outside:
        raise LandmarkError(f"'{points_node.GetName()}': {', '.join(outside)} not on the frame {image}")
    path = Path(path)
    atomic_write_text(path, json.dumps({"names": list(LANDMARK_NAMES), "image": image,
                                        "points": np.round(px, 3).tolist()}, indent=1))
    return path
