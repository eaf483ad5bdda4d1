"""The six landmarks in 2D, on one frame: files, the frontal-frame choice, overlays, and the picker's logic.

File formats: `<frame-id>_landmarks.txt` / `.csv` (one `x,y` pixel row per landmark in the fixed order, optional
name column or header), Slicer `.mrk.json` (control-point x, y as pixels), and our `.json`
(`{"points": [[x, y] x6], "image": "015.png"}` or, as placed on the video itself, `"video_frame": 120`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from BreastShapeModelLib.errors import LandmarkError
from BreastShapeModelLib.fileio import atomic_path, atomic_write_text
from BreastShapeModelLib.landmarks import LANDMARK_KEYS, LANDMARK_NAMES, NUM_LANDMARKS

from .cameras import Camera

COLORS = [(230, 60, 60), (60, 160, 230), (240, 200, 40), (60, 200, 90), (200, 90, 220), (250, 140, 40)]


@dataclass
class Landmarks2D:
    points: np.ndarray                  # [6, 2] pixels (integer pixel centres)
    image: str | None = None            # extracted frame name, e.g. "015.png"
    video_frame: int | None = None      # or the source frame of the video
    source: str = ""


def frame_id_from_name(path: Path) -> str | None:
    m = re.match(r"^(.+?)_landmarks$", Path(path).name.split(".")[0])
    return m.group(1) if m else None


def read_landmarks_2d(path: str | Path) -> Landmarks2D:
    path = Path(path)
    if not path.is_file():
        raise LandmarkError(f"landmark file not found: {path}")
    name = path.name.lower()
    image, video_frame = None, None
    try:
        if name.endswith(".mrk.json"):
            data = json.loads(path.read_text(encoding="utf-8"))
            cps = data["markups"][0]["controlPoints"]
            pts = [cp["position"][:2] for cp in cps if cp.get("positionStatus", "defined") != "undefined"]
        elif name.endswith(".json"):
            data = json.loads(path.read_text(encoding="utf-8"))
            pts = data["points"]
            image, video_frame = data.get("image"), data.get("video_frame")
        elif name.endswith((".txt", ".csv")):
            pts = []
            for line in path.read_text(encoding="utf-8").splitlines():
                cells = [c.strip() for c in re.split(r"[,;\s]+", line.strip()) if c.strip()]
                nums = []
                for c in cells:
                    try:
                        nums.append(float(c))
                    except ValueError:
                        pass
                if len(nums) >= 2:
                    pts.append(nums[-2:] if len(nums) > 2 and len(cells) > len(nums) else nums[:2])
        else:
            raise LandmarkError(f"{path}: unknown landmark format (expected <frame-id>_landmarks.txt, .csv, "
                                f".mrk.json or .json)")
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    except LandmarkError:
        raise
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise LandmarkError(f"{path}: cannot read 2D landmarks ({exc.__class__.__name__}: {exc})") from None
    if len(pts) != NUM_LANDMARKS:
        raise LandmarkError(f"{path}: expected {NUM_LANDMARKS} landmarks ({', '.join(LANDMARK_NAMES)}), "
                            f"found {len(pts)}")
    if not np.isfinite(pts).all():
        raise LandmarkError(f"{path}: landmark coordinates must be finite numbers")
    if image is None and video_frame is None:
        fid = frame_id_from_name(path)
        if fid is not None:
            image = f"{int(fid):03d}.png" if fid.isdigit() else f"{fid}.png"
    return Landmarks2D(pts, image, None if video_frame is None else int(video_frame), str(path))


def check_inside(lm: Landmarks2D, width: int, height: int) -> None:
    bad = [(LANDMARK_NAMES[i], p) for i, p in enumerate(lm.points)
           if not (0 <= p[0] <= width - 1 and 0 <= p[1] <= height - 1)]
    if bad:
        what = ", ".join(f"{n} at ({p[0]:.0f}, {p[1]:.0f})" for n, p in bad)
        raise LandmarkError(f"{lm.source or 'landmarks'}: outside the {width}x{height} image: {what}")


def write_landmarks_2d(points: np.ndarray, path: Path) -> Path:
    """`<frame-id>_landmarks.txt` (x,y rows) or `.csv` (with names) or `.json`."""
    path = Path(path)
    pts = np.asarray(points, float)
    if path.suffix == ".json":
        return atomic_write_text(path, json.dumps({"names": list(LANDMARK_NAMES), "points": pts.round(3).tolist()}))
    if path.suffix == ".csv":
        rows = ["name,x,y"] + [f"{k},{x:.3f},{y:.3f}" for k, (x, y) in zip(LANDMARK_KEYS, pts)]
        return atomic_write_text(path, "\n".join(rows) + "\n")
    return atomic_write_text(path, "\n".join(f"{x:.3f},{y:.3f}" for x, y in pts) + "\n")


def frontal_camera(cams: list[Camera]) -> int:
    """Index of the camera nearest the middle of the arc that looks at the scene centre (not the middle file)."""
    from .sfm import orbit_centre
    centre = orbit_centre(cams)
    dirs = np.stack([c.center - centre for c in cams])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    mean = dirs.mean(0)
    mean /= np.linalg.norm(mean)
    looking = np.array([(centre - c.center) @ c.forward / np.linalg.norm(centre - c.center) for c in cams])
    score = dirs @ mean + 0.5 * looking
    return int(np.argmax(score))


@dataclass
class Label:
    text: str
    x: int              # top-left corner of the label's box, pixels
    y: int
    w: int
    h: int


def label_layout(points: np.ndarray, labels, shape, scale: float) -> list[Label]:
    """Where each landmark's label goes: beside its point on the outer side (the patient's right on the image's
    left), inside the image, moved down until it overlaps no other label."""
    import cv2
    pts = np.asarray(points, float)
    height, width = shape[:2]
    centre = np.median(pts[np.isfinite(pts).all(1), 0]) if np.isfinite(pts).any() else width / 2
    thickness = max(1, int(round(2 * scale)))
    boxes: list[Label] = []
    r = int(10 * scale)                       # the other points' rings are kept clear too
    rings = [Label("", int(px) - r, int(py) - r, 2 * r, 2 * r) for px, py in pts if np.isfinite([px, py]).all()]
    for i, (x, y) in enumerate(pts):
        text = f"{i + 1} {labels[i]}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, thickness)
        w, h, gap = tw + 8, th + base + 6, int(10 * scale)
        bx = x - gap - w if x < centre else x + gap
        by = y - h / 2
        bx = int(np.clip(bx, 0, max(0, width - w))) if np.isfinite(bx) else 0
        by = int(np.clip(by, 0, max(0, height - h))) if np.isfinite(by) else 0
        for _ in range(50):
            hit = [b for b in boxes + rings if bx < b.x + b.w and b.x < bx + w and by < b.y + b.h and b.y < by + h]
            if not hit:
                break
            by = min(max(b.y + b.h for b in hit) + 1, max(0, height - h))
        boxes.append(Label(text, bx, by, w, h))
    return boxes


def overlay(image_rgb: np.ndarray, points: np.ndarray, labels=LANDMARK_NAMES, extra: np.ndarray | None = None):
    """Landmarks drawn on a frame: a coloured ring per point and its numbered name once, on a dark box beside it;
    `extra` [6, 2] (e.g. re-projections) as crosses."""
    import cv2
    img = np.ascontiguousarray(image_rgb.copy())
    s = max(1.0, max(img.shape[:2]) / 1000)
    thickness = max(1, int(round(2 * s)))
    boxes = label_layout(points, labels, img.shape, s)
    shade = img.copy()
    for b in boxes:
        cv2.rectangle(shade, (b.x, b.y), (b.x + b.w, b.y + b.h), (20, 20, 20), -1)
    img = cv2.addWeighted(shade, 0.6, img, 0.4, 0)
    for i, ((x, y), b) in enumerate(zip(np.asarray(points, float), boxes)):
        c = COLORS[i % len(COLORS)]
        if np.isfinite([x, y]).all():
            p = (int(round(x)), int(round(y)))
            cv2.circle(img, p, max(4, int(8 * s)), c, thickness, cv2.LINE_AA)
            end = (b.x + b.w if b.x + b.w <= p[0] else b.x, b.y + b.h // 2)
            cv2.line(img, p, end, c, 1, cv2.LINE_AA)
        cv2.putText(img, b.text, (b.x + 4, b.y + b.h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.55 * s, c, thickness,
                    cv2.LINE_AA)
        if extra is not None:
            q = (int(round(extra[i][0])), int(round(extra[i][1])))
            cv2.drawMarker(img, q, c, cv2.MARKER_CROSS, max(8, int(14 * s)), thickness)
    return img


def save_rgb(path: Path, rgb: np.ndarray) -> Path:
    import cv2
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(rgb[:, :, ::-1])):
            raise OSError(f"cannot write {path}")
    return Path(path)


# ----------------------------------------------------------------------------------------------- picker logic
@dataclass
class PickerState:
    """What the picker does with clicks and keys, without a window (so it is testable).

    Left click adds the next landmark (or grabs one within `grab_radius` to drag), right click undoes the
    last one, Enter saves when all six are placed, q/Esc quits without saving.
    """
    width: int
    height: int
    grab_radius: float = 12.0
    points: list = field(default_factory=list)
    dragging: int | None = None
    done: bool = False
    saved: bool = False
    message: str = ""

    def prompt(self) -> str:
        if len(self.points) < NUM_LANDMARKS:
            return f"click landmark {len(self.points) + 1}/6: {LANDMARK_NAMES[len(self.points)]} " \
                   f"(right click: undo, q: quit)"
        return "all six placed: Enter saves, drag to adjust, right click undoes, q quits"

    def _inside(self, x, y) -> bool:
        return 0 <= x <= self.width - 1 and 0 <= y <= self.height - 1

    def press(self, x: float, y: float, button: int) -> None:
        if button == 3:
            if self.points:
                self.points.pop()
            return
        if button != 1 or not self._inside(x, y):
            return
        if self.points:
            d = np.hypot(*(np.asarray(self.points) - (x, y)).T)
            k = int(np.argmin(d))
            if d[k] <= self.grab_radius:
                self.dragging = k
                return
        if len(self.points) < NUM_LANDMARKS:
            self.points.append((float(x), float(y)))

    def move(self, x: float, y: float) -> None:
        if self.dragging is not None and self._inside(x, y):
            self.points[self.dragging] = (float(x), float(y))

    def release(self) -> None:
        self.dragging = None

    def key(self, key: str) -> None:
        if key in ("enter", "return"):
            if len(self.points) == NUM_LANDMARKS:
                self.saved = self.done = True
            else:
                self.message = f"place all six first ({len(self.points)} so far)"
        elif key in ("q", "escape"):
            self.done = True


def pick_interactively(image_rgb: np.ndarray, initial: np.ndarray | None = None) -> np.ndarray | None:
    """Open a matplotlib window over the frame; returns the six points, or None when the user quits."""
    try:
        import matplotlib
        import matplotlib.pyplot as plt
    except ImportError:
        raise LandmarkError("the picker needs matplotlib with a display (pip install matplotlib); or write the "
                            "landmark file yourself: one x,y pixel row per landmark") from None
    if matplotlib.get_backend().lower() in ("agg", "pdf", "svg", "ps", "cairo", "template"):
        raise LandmarkError("no display for the picker (matplotlib backend is non-interactive); write the landmark "
                            "file by hand or run where a window can open")
    h, w = image_rgb.shape[:2]
    state = PickerState(w, h, grab_radius=max(8.0, 0.012 * max(w, h)))
    if initial is not None:
        state.points = [tuple(map(float, p)) for p in initial]
    fig, ax = plt.subplots(figsize=(12, 12 * h / w))
    ax.imshow(image_rgb)
    artists = []

    def redraw():
        for a in artists:
            a.remove()
        artists.clear()
        for i, (x, y) in enumerate(state.points):
            c = np.array(COLORS[i]) / 255
            artists.append(ax.plot([x], [y], "o", mfc="none", mec=c, ms=10, mew=2)[0])
            artists.append(ax.text(x + 10, y - 10, f"{i + 1} {LANDMARK_NAMES[i]}", color=c, fontsize=10))
        ax.set_title(state.message or state.prompt())
        state.message = ""
        fig.canvas.draw_idle()

    fig.canvas.mpl_connect("button_press_event", lambda e: (e.inaxes and (state.press(e.xdata, e.ydata, e.button), redraw())))
    fig.canvas.mpl_connect("motion_notify_event", lambda e: (e.inaxes and state.dragging is not None and (state.move(e.xdata, e.ydata), redraw())))
    fig.canvas.mpl_connect("button_release_event", lambda e: state.release())

    def on_key(e):
        state.key(e.key)
        if state.done:
            plt.close(fig)
        else:
            redraw()
    fig.canvas.mpl_connect("key_press_event", on_key)
    redraw()
    plt.show()
    return np.asarray(state.points) if state.saved else None
