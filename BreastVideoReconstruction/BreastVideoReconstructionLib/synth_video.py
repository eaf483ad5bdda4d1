"""Synthetic phone videos of a generator torso, rendered offscreen with VTK (EGL or OSMesa), with ground truth.

The torso (mm, model orientation: +x patient's left, +y up, +z forward) wears a procedural skin texture:
low-contrast mottling, pores, a few moles and freckles, darker areolas. It stands in a plain room (plaster walls
with frames, a door, a wooden floor) lit by fixed room lights. A hand-held camera sweeps an arc of +-A degrees at
0.5-0.9 m with slow drift and hand shake, with phone-like intrinsics (about 67 degrees across the long side).
The ground truth holds the mesh and landmarks (mm), every frame's camera, and the six landmarks' pixels and
visibility per frame; `landmarks.json` gives the landmarks on the most frontal frame, as a user would place them.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.fileio import atomic_path, atomic_write_text
from BreastShapeModelLib.landmarks import LANDMARK_NAMES, write_landmarks

from .cameras import Camera, look_at, write_cameras_json

SKIN_TONES = np.array([(226, 184, 160), (214, 164, 134), (190, 138, 104), (158, 108, 78), (112, 76, 56)], float)


@dataclass
class VideoSettings:
    seed: int = 0
    width: int = 1920
    height: int = 1080
    portrait: bool = False
    fps: float = 30.0
    duration: float = 8.0
    arc_deg: float | None = None          # half-arc; default drawn in [60, 75]
    distance_mm: float | None = None      # default drawn in [500, 900]
    hfov_deg: float = 67.0                # across the long side of the image
    motion_blur: int = 1                  # sub-frames averaged per frame (1: none)
    codec: str = "h264"                   # h264 (PyAV) or mp4v (OpenCV)
    crf: int = 20
    landmark_noise_px: float = 0.0
    torso_spacing_mm: float = 2.0
    source: str = "generator"             # anatomy source: generator or anny
    whole_body: bool = False              # anny: render the whole body (arms, head, legs); truth stays the torso


# ----------------------------------------------------------------------------------------------- textures
def _noise(rng, shape, sigma, amplitude):
    n = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return n * (amplitude / (n.std() + 1e-12))


def skin_texture(rng: np.random.Generator, size=(1280, 4096), tone=None) -> np.ndarray:
    """Float RGB [H, W, 3] in 0..1: mottled skin with pores, freckles and moles (low contrast)."""
    h, w = size
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] if tone is None else np.asarray(tone, float)
    base = tone / 255 * rng.uniform(0.95, 1.05, 3)
    lum = 1 + _noise(rng, size, 40, 0.05) + _noise(rng, size, 9, 0.035) + _noise(rng, size, 2.0, 0.03) \
        + _noise(rng, size, 0.7, 0.02)
    red = _noise(rng, size, 25, 0.02)                       # blotchy redness
    img = base[None, None, :] * lum[..., None]
    img[..., 0] *= 1 + red
    img[..., 1] *= 1 - 0.5 * red
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(150, 320))):            # freckles (small, faint) and moles (darker)
        mole = rng.random() < 0.15
        r = rng.uniform(3, 7) if mole else rng.uniform(1.5, 3.5)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        y0, y1, x0, x1 = int(max(cy - 3 * r, 0)), int(min(cy + 3 * r, h)), int(max(cx - 3 * r, 0)), int(min(cx + 3 * r, w))
        d2 = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2
        a = np.exp(-d2 / (2 * r * r))[..., None] * (rng.uniform(0.35, 0.55) if mole else rng.uniform(0.12, 0.25))
        spot = np.array([0.45, 0.30, 0.22]) if mole else np.array([0.75, 0.55, 0.42])
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + a * spot * img[y0:y1, x0:x1] * 1.2
    return np.clip(img, 0, 1)


def _paint_areola(img, vertices: np.ndarray, uv: np.ndarray, nipple: np.ndarray, radius: float, rng) -> None:
    """Darken an areola of `radius` mm and its nipple into the skin texture round `nipple`, by distance on the
    body: the mesh's own texture coordinates give each texel its point on the skin, so the disc is centred on the
    nipple, as a real areola is. (A circle drawn in texture space was stretched where the skin runs oblique to the
    texture's cylinder, towards the midline and under a drooping breast: its dark centre lay 3-5 mm from the
    nipple on the bench videos, so no detector could find the nipple there.)"""
    from scipy.interpolate import LinearNDInterpolator
    h, w = img.shape[:2]
    near = np.linalg.norm(vertices - nipple, axis=1) < 2.0 * radius
    tex = np.stack([uv[near, 0] * w, (1 - uv[near, 1]) * h], 1)      # numpy rows run top-down, texture v bottom-up
    x0, y0 = np.maximum(np.floor(tex.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(tex.max(0)).astype(int) + 1, [w, h])
    yy, xx = np.mgrid[y0:y1, x0:x1]
    skin = LinearNDInterpolator(tex, vertices[near])(xx, yy)           # [rows, cols, 3], NaN off the patch
    d = np.nan_to_num(np.linalg.norm(skin - nipple, axis=-1) / radius, nan=9.0)
    a = np.clip((1.15 - d) / 0.3, 0, 1)[..., None] * 0.55
    nip = np.clip((0.3 - d) / 0.1, 0, 1)[..., None] * 0.25
    dark = np.array([0.62, 0.42, 0.36]) * (1 + _noise(rng, d.shape, 1.5, 0.08))[..., None]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + a * img[y0:y1, x0:x1] * dark
    img[y0:y1, x0:x1] *= 1 - nip


def wall_texture(rng, size=(1024, 2048), frames: int = 3, door: bool = False) -> np.ndarray:
    """Painted plaster with a few framed pictures (and a door)."""
    h, w = size
    paint = rng.choice([(0.86, 0.84, 0.78), (0.80, 0.83, 0.84), (0.88, 0.82, 0.72), (0.78, 0.80, 0.74)])
    img = np.asarray(paint)[None, None, :] * (1 + _noise(rng, size, 30, 0.03) + _noise(rng, size, 1.2, 0.02))[..., None]
    for _ in range(frames):
        fh, fw = int(rng.uniform(0.15, 0.3) * h), int(rng.uniform(0.08, 0.2) * w)
        y, x = int(rng.uniform(0.15, 0.55) * h), int(rng.uniform(0.05, 0.9) * w - fw)
        x = max(x, 0)
        img[y:y + fh, x:x + fw] = rng.uniform(0.1, 0.4, 3)                    # frame
        b = max(4, fh // 14)
        inner = gaussian_filter(rng.random((fh - 2 * b, fw - 2 * b, 3)), (fh / 10, fw / 10, 0))
        inner = (inner - inner.min()) / (np.ptp(inner) + 1e-9)
        img[y + b:y + fh - b, x + b:x + fw - b] = 0.2 + 0.7 * inner
    if door:
        dw, dh = int(0.12 * w), int(0.75 * h)
        x = int(rng.uniform(0.05, 0.8) * w)
        img[h - dh:, x:x + dw] = np.array([0.55, 0.42, 0.3]) * (1 + _noise(rng, (dh, dw), 3, 0.05))[..., None]
        img[h - dh // 2 - 6:h - dh // 2 + 6, x + dw - 30:x + dw - 12] = 0.8
    return np.clip(img, 0, 1)


def floor_texture(rng, size=(1024, 1024)) -> np.ndarray:
    h, w = size
    img = np.zeros((h, w, 3))
    plank = 64
    for i in range(0, h, plank):
        tone = np.array([0.55, 0.38, 0.24]) * rng.uniform(0.8, 1.15)
        grain = 1 + _noise(rng, (plank, w), (1, 25), 0.08)
        img[i:i + plank] = tone * grain[: min(plank, h - i), :, None]
        img[i:i + 2] *= 0.6
    return np.clip(img, 0, 1)


# ----------------------------------------------------------------------------------------------- VTK scene
def _vtk_texture(img: np.ndarray):
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk
    h, w = img.shape[:2]
    data = vtk.vtkImageData()
    data.SetDimensions(w, h, 1)
    arr = numpy_to_vtk(np.ascontiguousarray((np.clip(img, 0, 1) * 255).astype(np.uint8)[::-1].reshape(-1, 3)), deep=1)
    data.GetPointData().SetScalars(arr)
    tex = vtk.vtkTexture()
    tex.SetInputData(data)
    tex.InterpolateOn()
    tex.MipmapOn()
    return tex


def _polydata(vertices, faces, tcoords, normals=None):
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
    pd = vtk.vtkPolyData()
    pts = vtk.vtkPoints()
    pts.SetData(numpy_to_vtk(np.ascontiguousarray(vertices, np.float64), deep=1))
    pd.SetPoints(pts)
    cells = vtk.vtkCellArray()
    conn = np.concatenate([np.full((len(faces), 1), 3), faces], 1).astype(np.int64).ravel()
    cells.SetCells(len(faces), numpy_to_vtkIdTypeArray(conn, deep=1))
    pd.SetPolys(cells)
    pd.GetPointData().SetTCoords(numpy_to_vtk(np.ascontiguousarray(tcoords, np.float32), deep=1))
    if normals is not None:
        pd.GetPointData().SetNormals(numpy_to_vtk(np.ascontiguousarray(normals, np.float32), deep=1))
    return pd


def _quad(corner, du, dv, repeat=(1, 1)):
    v = np.array([corner, corner + du, corner + du + dv, corner + dv], float)
    tc = np.array([[0, 0], [repeat[0], 0], [repeat[0], repeat[1]], [0, repeat[1]]], float)
    return v, np.array([[0, 1, 2], [0, 2, 3]]), tc


def torso_uv(vertices: np.ndarray, ylim: tuple[float, float]) -> np.ndarray:
    """Cylindrical texture coordinates around the vertical axis (seam at the back)."""
    u = (np.arctan2(vertices[:, 0], vertices[:, 2]) + np.pi) / (2 * np.pi)
    v = (vertices[:, 1] - ylim[0]) / (ylim[1] - ylim[0])
    return np.stack([u, v], 1)


class Renderer:
    """Offscreen VTK render window holding the torso and the room."""

    def __init__(self, mesh, landmarks, width, height, rng):
        import vtk
        self.width, self.height = width, height
        rw = vtk.vtkRenderWindow()
        rw.SetOffScreenRendering(1)
        rw.SetSize(width, height)
        ren = vtk.vtkRenderer()
        ren.SetBackground(0.7, 0.7, 0.7)
        rw.AddRenderer(ren)
        self.rw, self.ren = rw, ren
        # torso
        ylim = (mesh.vertices[:, 1].min() - 1, mesh.vertices[:, 1].max() + 1)
        uv = torso_uv(np.asarray(mesh.vertices), ylim)
        skin = skin_texture(rng)
        for i in (2, 3):
            _paint_areola(skin, np.asarray(mesh.vertices), uv, landmarks[i], rng.uniform(15, 22), rng)
        self._actor(_polydata(mesh.vertices, mesh.faces, uv, mesh.vertex_normals), skin, diffuse=0.85, ambient=0.22,
                    specular=0.06)
        # room: back wall, side walls, floor
        floor_y = ylim[0] - rng.uniform(700, 900)
        back_z, side_x, top_y = -rng.uniform(900, 1400), rng.uniform(1600, 2200), floor_y + 2600
        walls = [
            (_quad(np.array([-side_x, floor_y, back_z]), np.array([2 * side_x, 0, 0]), np.array([0, top_y - floor_y, 0])), True),
            (_quad(np.array([side_x, floor_y, back_z]), np.array([0, 0, 3000]), np.array([0, top_y - floor_y, 0])), False),
            (_quad(np.array([-side_x, floor_y, back_z + 3000]), np.array([0, 0, -3000]), np.array([0, top_y - floor_y, 0])), False),
        ]
        for (v, f, tc), door in walls:
            self._actor(_polydata(v, f, tc), wall_texture(rng, door=door), diffuse=0.9, ambient=0.3)
        v, f, tc = _quad(np.array([-side_x, floor_y, back_z]), np.array([0, 0, 3000]), np.array([2 * side_x, 0, 0]),
                         repeat=(3, 4))
        self._actor(_polydata(v, f[:, ::-1], tc), floor_texture(rng), diffuse=0.8, ambient=0.3, repeat=True)
        # fixed room lights (not a headlight): key from the upper front left, fill from the right
        ren.AutomaticLightCreationOff()
        for pos, inten in (((-900, 1200, 1500), 0.6), ((1200, 500, 1200), 0.3), ((0, 300, 2500), 0.2)):
            light = vtk.vtkLight()
            light.SetLightTypeToSceneLight()
            light.SetPosition(*pos)
            light.SetFocalPoint(0, 0, 0)
            light.SetIntensity(inten)
            light.SetPositional(False)
            ren.AddLight(light)
        self._zfilter = None

    def _actor(self, pd, img, diffuse, ambient, specular=0.0, repeat=False):
        import vtk
        m = vtk.vtkPolyDataMapper()
        m.SetInputData(pd)
        a = vtk.vtkActor()
        a.SetMapper(m)
        tex = _vtk_texture(img)
        tex.SetRepeat(bool(repeat))
        a.SetTexture(tex)
        prop = a.GetProperty()
        prop.SetDiffuse(diffuse)
        prop.SetAmbient(ambient)
        prop.SetSpecular(specular)
        prop.SetSpecularPower(20)
        self.ren.AddActor(a)

    def set_camera(self, cam: Camera) -> None:
        c = self.ren.GetActiveCamera()
        center = cam.center
        c.SetPosition(*center)
        c.SetFocalPoint(*(center + 500 * cam.forward))
        c.SetViewUp(*(-cam.R[1]))
        c.SetViewAngle(float(np.rad2deg(2 * np.arctan(self.height / 2 / cam.K[1, 1]))))
        c.SetClippingRange(100, 8000)

    def render(self, cam: Camera) -> np.ndarray:
        """RGB uint8 [H, W, 3] seen by `cam`."""
        import vtk
        from vtk.util.numpy_support import vtk_to_numpy
        self.set_camera(cam)
        self.rw.Render()
        arr = vtk.vtkUnsignedCharArray()
        self.rw.GetPixelData(0, 0, self.width - 1, self.height - 1, 0, arr, 0)
        img = vtk_to_numpy(arr).reshape(self.height, self.width, -1)
        return np.ascontiguousarray(img[::-1, :, :3])

    def depth_at(self, cam: Camera, pixels: np.ndarray) -> np.ndarray:
        """Scene depth (mm along the optical axis) at pixels, from the z-buffer of the last render of `cam`."""
        near, far = self.ren.GetActiveCamera().GetClippingRange()
        out = np.full(len(pixels), np.inf)
        for i, (x, y) in enumerate(pixels):
            xi, yi = int(round(x)), int(round(y))
            if 0 <= xi < self.width and 0 <= yi < self.height:
                d = self.rw.GetZbufferDataAtPoint(xi, self.height - 1 - yi)
                ndc = 2 * d - 1
                out[i] = 2 * near * far / (far + near - ndc * (far - near))
        return out


# ----------------------------------------------------------------------------------------------- trajectory
def _smooth_noise(rng, t, scale, periods=(3.0, 1.3, 0.6)):
    out = np.zeros_like(t)
    for p in periods:
        out += rng.normal() * np.sin(2 * np.pi * t / (p * rng.uniform(0.8, 1.25)) + rng.uniform(0, 2 * np.pi))
    return out * scale / np.sqrt(len(periods))


def trajectory(rng, settings: VideoSettings, target: np.ndarray, width: int, height: int) -> tuple[list[Camera], dict]:
    """Hand-held arc around the torso: one camera per frame (mm, world = torso frame)."""
    n = max(2, int(round(settings.duration * settings.fps)))
    t = np.arange(n) / settings.fps
    arc = settings.arc_deg if settings.arc_deg is not None else rng.uniform(60, 75)
    dist = settings.distance_mm if settings.distance_mm is not None else rng.uniform(500, 900)
    s = t / t[-1]
    s = s + 0.04 * np.sin(2 * np.pi * s * rng.uniform(1, 2.5) + rng.uniform(0, 6))    # uneven walking speed
    s = (s - s.min()) / np.ptp(s)
    theta = np.deg2rad(-arc + 2 * arc * (0.5 - 0.5 * np.cos(np.pi * s)))             # eased start and stop
    radius = dist + _smooth_noise(rng, t, 0.05 * dist)
    height_off = rng.uniform(-60, 120) + _smooth_noise(rng, t, 40)
    fx = max(width, height) / 2 / np.tan(np.deg2rad(settings.hfov_deg) / 2)
    K = np.array([[fx, 0, (width - 1) / 2], [0, fx, (height - 1) / 2], [0, 0, 1]])
    cams = []
    for i in range(n):
        c = target + np.array([radius[i] * np.sin(theta[i]), height_off[i], radius[i] * np.cos(theta[i])])
        c += rng.normal(0, 1.0, 3)                                        # hand shake
        aim = target + np.array([_smooth_noise(rng, t[i:i + 1], 15)[0], _smooth_noise(rng, t[i:i + 1], 15)[0], 0])
        roll = _smooth_noise(rng, t[i:i + 1], 3.0)[0] + rng.normal(0, 0.2)
        R = look_at(c, aim, np.array([0, 1, 0]), roll)
        cams.append(Camera(f"{i:05d}", K.copy(), R, -R @ c, width, height))
    return cams, {"arc_deg": float(arc), "distance_mm": float(dist), "frames": n, "fx": float(fx)}


# ----------------------------------------------------------------------------------------------- encoding
class VideoWriter:
    """H.264 through PyAV (what phones record), or mp4v through OpenCV (no PyAV)."""

    def __init__(self, path: Path, width: int, height: int, fps: float, codec: str = "h264", crf: int = 20):
        self.path, self.codec = Path(path), codec
        if codec == "h264":
            try:
                import av
            except ImportError:
                raise UserError("H.264 encoding needs PyAV: pip install av (or use --codec mp4v)") from None
            from fractions import Fraction
            self.container = av.open(str(path), mode="w")
            self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
            self.stream.options = {"crf": str(crf), "preset": "veryfast"}
        elif codec == "mp4v":
            import cv2
            self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        else:
            raise UserError(f"unknown codec {codec!r} (expected h264 or mp4v)")

    def write(self, rgb: np.ndarray) -> None:
        if self.codec == "h264":
            import av
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        else:
            self.writer.write(rgb[:, :, ::-1])

    def close(self) -> None:
        if self.codec == "h264":
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
        else:
            self.writer.release()


# ----------------------------------------------------------------------------------------------- main entry
def synth_video(output_dir: Path, settings: VideoSettings, torso_index: int = 0, on_frame=None) -> dict:
    """Render a synthetic video and its ground truth into `output_dir`; returns the summary written to video.json."""
    from BreastShapeModelLib import synth
    rng = np.random.default_rng([settings.seed, 7193])
    output_dir = Path(output_dir)
    truth_dir = output_dir / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    if settings.source not in ("generator", "anny"):
        raise UserError(f"unknown anatomy source {settings.source!r} (generator or anny)")
    if settings.whole_body and settings.source != "anny":
        raise UserError("--whole_body needs --source anny (the generator makes torsos only)")
    torso = synth.generate(torso_index, settings.seed, settings.torso_spacing_mm, source=settings.source)
    mesh, lms = torso.mesh, torso.landmarks
    shown = torso.full_body if settings.whole_body else mesh
    width, height = (settings.height, settings.width) if settings.portrait else (settings.width, settings.height)
    if width % 2 or height % 2 or min(width, height) < 64:
        raise UserError(f"video size must be even and at least 64 px, got {width}x{height}")
    target = np.array([0.0, lms[2:4, 1].mean() + 30, mesh.vertices[:, 2].min() * 0.3])
    cams, traj = trajectory(rng, settings, target, width, height)
    renderer = Renderer(shown, lms, width, height, rng)
    blur = max(1, int(settings.motion_blur))
    pix = np.zeros((len(cams), 6, 2))
    vis = np.zeros((len(cams), 6), bool)
    video = output_dir / "video.mp4"
    with atomic_path(video) as tmp:
        writer = VideoWriter(tmp, width, height, settings.fps, settings.codec, settings.crf)
        try:
            for i, cam in enumerate(cams):
                if blur > 1 and i + 1 < len(cams):           # average sub-frames over half the frame interval
                    acc = np.zeros((height, width, 3))
                    for k in range(blur):
                        a = 0.5 * k / blur
                        acc += renderer.render(_blend(cam, cams[i + 1], a))
                    img = (acc / blur).round().astype(np.uint8)
                img = renderer.render(cam) if blur == 1 or i + 1 == len(cams) else img
                if blur > 1 and i + 1 < len(cams):
                    renderer.render(cam)                      # z-buffer of the frame's own pose
                uv, z = cam.project(lms)
                pix[i] = uv
                zb = renderer.depth_at(cam, uv)
                vis[i] = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) & \
                    (uv[:, 1] <= height - 1) & (np.abs(zb - z) < 6.0)
                writer.write(img)
                if on_frame:
                    on_frame(i + 1, len(cams))
        finally:
            writer.close()
    # ground truth
    with atomic_path(truth_dir / "mesh.ply") as tmp:
        mesh.export(tmp, file_type="ply")
    write_landmarks(lms, truth_dir / "landmarks.txt")
    write_cameras_json(cams, truth_dir / "cameras.json", {"units": "mm", "fps": settings.fps})
    np.save(truth_dir / "landmarks_2d.npy", pix)
    np.save(truth_dir / "landmarks_2d_visible.npy", vis)
    atomic_write_text(truth_dir / "torso.json", json.dumps(torso.truth, indent=1, default=float))
    # the user's landmarks: the most frontal frame where all six are visible
    angles = np.array([abs(np.degrees(np.arctan2(c.center[0] - target[0], c.center[2] - target[2]))) for c in cams])
    seen = vis.sum(1)
    angles[seen < max(seen.max(), 5)] = np.inf         # all six where possible; whole bodies may hide a coracoid
    if not np.isfinite(angles).any():
        raise UserError("no frame of the synthetic video sees at least five of the six landmarks; try another --seed")
    frontal = int(np.argmin(angles))
    noisy = pix[frontal] + np.random.default_rng(settings.seed + 1).normal(0, settings.landmark_noise_px, (6, 2))
    lm_file = {"video": video.name, "video_frame": frontal, "time": frontal / settings.fps,
               "image_size": [width, height], "names": list(LANDMARK_NAMES),
               "points": np.round(noisy, 2).tolist()}
    atomic_write_text(output_dir / "landmarks.json", json.dumps(lm_file, indent=1))
    summary = {"settings": asdict(settings), "torso_index": torso_index, "trajectory": traj, "width": width,
               "height": height, "frontal_frame": frontal, "video": str(video),
               "landmarks_visible_fraction": float(vis.mean()),
               "hidden_on_landmark_frame": [LANDMARK_NAMES[i] for i in np.flatnonzero(~vis[frontal])]}
    atomic_write_text(output_dir / "video.json", json.dumps(summary, indent=1))
    return summary


def _blend(a: Camera, b: Camera, w: float) -> Camera:
    """Camera part-way between two poses (for motion blur): centres and rotations interpolated."""
    from scipy.spatial.transform import Rotation, Slerp
    rots = Rotation.from_matrix(np.stack([a.R, b.R]))
    R = Slerp([0, 1], rots)([w]).as_matrix()[0]
    c = (1 - w) * a.center + w * b.center
    return Camera(a.name, a.K, R, -R @ c, a.width, a.height, a.dist)
