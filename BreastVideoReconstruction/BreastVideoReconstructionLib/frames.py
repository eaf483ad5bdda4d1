"""Frames from a phone video: decoding as phones record (H.264/HEVC, rotation metadata, variable frame rate) and
the method's sharpness-aware selection with temporal coverage.

Selection: for each of N evenly spaced target times, the sharpest frame (variance of the Laplacian) within a
window of duration/(3N) around it whose sharpness passes a threshold; the threshold starts at the 75th percentile
of sharpness over 100 evenly spaced frames and is lowered by 30 % up to three times where no frame passes.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.fileio import atomic_write_text

from .workspace import VideoWorkspace as W

SHARPNESS_SIZE = 640          # sharpness is measured on frames scaled to this long side (comparable across sizes)


@dataclass
class VideoInfo:
    path: str
    width: int                # after rotation
    height: int
    frames: int
    duration: float
    fps: float
    rotation: int
    codec: str


@dataclass
class FrameSelection:
    indices: list[int]                     # source frame indices, in time order
    times: list[float]
    sharpness: list[float]
    threshold: float
    below_threshold: list[bool] = field(default_factory=list)


def _rotate(img: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display-matrix rotation (degrees counter-clockwise, as FFmpeg reports it) to a decoded frame."""
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


def iter_frames(path: Path, gray_size: int | None = None):
    """Yield (index, time_s, rgb [H, W, 3] uint8, rotation) for every decodable frame, upright."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"video not found: {path}")
    try:
        import av
    except ImportError:
        yield from _iter_frames_cv2(path)
        return
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise UserError(f"{path}: cannot read the video ({exc.__class__.__name__}: {exc}); expected an mp4/mov "
                        f"file as a phone records it") from None
    with container:
        if not container.streams.video:
            raise UserError(f"{path}: the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 30)
                rot = int(getattr(frame, "rotation", 0) or 0)
                yield index, t, _rotate(frame.to_ndarray(format="rgb24"), rot), rot
                index += 1
        except av.error.InvalidDataError:
            if index == 0:
                raise UserError(f"{path}: the video data is corrupt (no frame could be decoded)") from None
        except av.error.FFmpegError as exc:
            if index == 0:
                raise UserError(f"{path}: cannot decode the video ({exc})") from None


def _iter_frames_cv2(path: Path):
    import cv2
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise UserError(f"{path}: cannot read the video (OpenCV could not open it)")
    index = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield index, cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0, bgr[:, :, ::-1].copy(), 0
            index += 1
    finally:
        cap.release()


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image scaled to SHARPNESS_SIZE on its long side."""
    import cv2
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    s = SHARPNESS_SIZE / max(gray.shape)
    if s < 1:
        gray = cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def scan(path: Path, on_frame=None) -> tuple[VideoInfo, np.ndarray, np.ndarray]:
    """One decoding pass: video facts, per-frame times and sharpness."""
    times, sharp = [], []
    info = None
    rotation = 0
    for i, t, rgb, rot in iter_frames(path):
        if info is None:
            info = (rgb.shape[1], rgb.shape[0])
            rotation = rot
        times.append(t)
        sharp.append(sharpness(rgb))
        if on_frame:
            on_frame(i + 1)
    if info is None:
        raise UserError(f"{path}: the video has no frames")
    times = np.asarray(times)
    duration = float(times[-1] - times[0]) if len(times) > 1 else 0.0
    fps = (len(times) - 1) / duration if duration > 0 else 0.0
    codec = ""
    try:
        import av
        with av.open(str(path)) as c:
            codec = c.streams.video[0].codec_context.name
    except Exception:
        pass
    return VideoInfo(str(path), info[0], info[1], len(times), duration, fps, rotation, codec), times, np.asarray(sharp)


def select_frames(times: np.ndarray, sharp: np.ndarray, num: int, uniform: bool = False,
                  threshold: float | None = None, include: tuple[int, ...] = ()) -> FrameSelection:
    """The method's selection (see module docstring); `include` forces source frames in (nearest target replaced)."""
    n = len(times)
    if n < num:
        raise UserError(f"the video has {n} usable frames, fewer than the {num} asked for (record a longer video "
                        f"or lower --num_frames)")
    probe = sharp[np.linspace(0, n - 1, min(100, n)).round().astype(int)]
    thr = float(np.percentile(probe, 75)) if threshold is None else float(threshold)
    t0, t1 = float(times[0]), float(times[-1])
    duration = max(t1 - t0, 1e-9)
    targets = t0 + (np.arange(num) + 0.5) * duration / num
    chosen, below = [], []
    for k, tt in enumerate(targets):
        nearest = int(np.argmin(np.abs(times - tt)))
        if uniform:
            chosen.append(nearest)
            below.append(False)
            continue
        half = duration / (3 * num) / 2
        window = np.flatnonzero(np.abs(times - tt) <= half)
        if len(window) == 0:
            window = np.array([nearest])
        pick, low = None, True
        for level in range(4):                        # threshold, then lowered by 30 % up to three times
            ok = window[sharp[window] >= thr * 0.7 ** level]
            if len(ok):
                pick, low = int(ok[np.argmax(sharp[ok])]), False
                break
        if pick is None:
            pick = int(window[np.argmax(sharp[window])])
        chosen.append(pick)
        below.append(low)
    for f in include:
        if not 0 <= f < n:
            raise UserError(f"frame {f} is not in the video (it has {n} frames)")
        if f not in chosen:
            k = int(np.argmin(np.abs(targets - times[f])))
            chosen[k], below[k] = f, False
    order = np.argsort(chosen, kind="stable")
    chosen = [chosen[i] for i in order]
    below = [below[i] for i in order]
    if len(set(chosen)) < num:                        # very short windows can pick the same frame twice
        raise UserError(f"the video has too few distinct frames for {num} images ({len(set(chosen))} found)")
    return FrameSelection(chosen, [float(times[i]) for i in chosen], [float(sharp[i]) for i in chosen], thr, below)


def extract_frames(video: Path, out_dir: Path, num_frames: int = 30, uniform: bool = False,
                   sharpness_threshold: float | None = None, include: tuple[int, ...] = (),
                   max_size: int | None = None, progress=None) -> dict:
    """Write `images/000.png...` and `frames.json` into out_dir (images swapped in only when all are written)."""
    import cv2
    from contextlib import nullcontext
    if num_frames < 2:
        raise UserError(f"--num_frames must be at least 2, got {num_frames}")
    stage = progress.stage if progress is not None else (lambda *a, **k: nullcontext(lambda *x, **y: None))
    with stage("frames: scan", total=1.0) as update:
        info, times, sharp = scan(video, lambda i: update(min(i / 300.0, 0.99), f"frame {i}"))
    if info.frames < 2:
        raise UserError(f"{video}: has {info.frames} frame; a video circling the patient is needed (is it a still "
                        f"image with a video name?)")
    if np.all(sharp < 1e-3):
        raise UserError(f"{video}: the video is blank (no image detail in any frame)")
    sel = select_frames(times, sharp, num_frames, uniform, sharpness_threshold, include)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".images-", dir=out_dir))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)           # mkdtemp's 0700 would hide the frames from others once renamed
    wanted = {src: k for k, src in enumerate(sel.indices)}
    try:
        with stage("frames: write", total=len(wanted)) as update:
            done = 0
            for i, _, rgb, _ in iter_frames(video):
                if i in wanted:
                    if max_size and max(rgb.shape[:2]) > max_size:
                        s = max_size / max(rgb.shape[:2])
                        rgb = cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
                    if not cv2.imwrite(str(tmp / f"{wanted[i]:03d}.png"), rgb[:, :, ::-1]):
                        raise UserError(f"cannot write the frame images into {out_dir} (disk full or not "
                                        f"writable?); earlier frames are kept")
                    done += 1
                    update(done)
                    if done == len(wanted):
                        break
        if done < len(wanted):
            raise UserError(f"{video}: only {done} of {len(wanted)} selected frames could be decoded again")
        images = out_dir / W.IMAGES
        old = out_dir / ".images-old"
        if images.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(images, old)
        os.replace(tmp, images)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    h, w = cv2.imread(str(out_dir / W.IMAGES / "000.png")).shape[:2]
    record = {
        "video": asdict(info), "num_frames": num_frames, "uniform": uniform, "threshold": sel.threshold,
        "image_size": [w, h], "scale": w / info.width,
        "frames": [{"image": f"{k:03d}.png", "source_frame": src, "time": round(t, 4), "sharpness": round(s, 3),
                    "below_threshold": b}
                   for k, (src, t, s, b) in enumerate(zip(sel.indices, sel.times, sel.sharpness, sel.below_threshold))],
    }
    atomic_write_text(out_dir / W.FRAMES, json.dumps(record, indent=1))
    return record


def read_frames_json(out_dir: Path) -> dict:
    path = Path(out_dir) / W.FRAMES
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found (run extract-frames first)") from None
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
