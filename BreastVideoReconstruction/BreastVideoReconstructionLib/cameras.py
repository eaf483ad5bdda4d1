"""Cameras and the sparse scene: one plain type for every SfM backend, with projection and rays.

Convention (OpenCV): x_cam = R @ x_world + t; pixel = K @ x_cam / z, then radial distortion
(SIMPLE_RADIAL/RADIAL: k1, k2 on normalised coordinates). Pixel centres are at integer coordinates.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.fileio import atomic_path, atomic_write_text


@dataclass
class Camera:
    name: str                 # image file name, e.g. "007.png"
    K: np.ndarray             # [3, 3]
    R: np.ndarray             # [3, 3] world -> camera
    t: np.ndarray             # [3]
    width: int
    height: int
    dist: np.ndarray = field(default_factory=lambda: np.zeros(2))   # k1, k2

    @property
    def center(self) -> np.ndarray:
        return -self.R.T @ self.t

    @property
    def forward(self) -> np.ndarray:
        """Viewing direction (the camera's +z) in the world."""
        return self.R[2]

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, np.float64) @ self.R.T + self.t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels [N, 2] and depths [N] of world points (depth <= 0: behind the camera)."""
        pc = self.to_camera(points)
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xn = pc[:, :2] / z[:, None]
        r2 = (xn ** 2).sum(1, keepdims=True)
        xd = xn * (1 + self.dist[0] * r2 + self.dist[1] * r2 ** 2)
        uv = xd @ self.K[:2, :2].T + self.K[:2, 2]
        return uv, z

    def undistort(self, pixels: np.ndarray, iterations: int = 10) -> np.ndarray:
        """Normalised (undistorted) image coordinates [N, 2] of pixels."""
        xd = (np.asarray(pixels, np.float64) - self.K[:2, 2]) @ np.linalg.inv(self.K[:2, :2]).T
        xn = xd.copy()
        if np.any(self.dist):
            for _ in range(iterations):              # fixed point: xn = xd / (1 + k1 r^2 + k2 r^4)
                r2 = (xn ** 2).sum(1, keepdims=True)
                xn = xd / (1 + self.dist[0] * r2 + self.dist[1] * r2 ** 2)
        return xn

    def rays(self, pixels: np.ndarray) -> np.ndarray:
        """Unit world directions [N, 2] -> [N, 3] of the rays through pixels (origin: `center`)."""
        xn = self.undistort(pixels)
        d = np.concatenate([xn, np.ones((len(xn), 1))], 1) @ self.R      # R^T @ d_cam, row-wise
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    def projection_matrix(self) -> np.ndarray:
        """3x4 K [R|t] (ignores distortion: use with `undistort`ed pixels re-projected by K)."""
        return self.K @ np.concatenate([self.R, self.t[:, None]], 1)

    def to_dict(self) -> dict:
        return {"name": self.name, "width": self.width, "height": self.height, "K": self.K.tolist(),
                "dist": [float(v) for v in self.dist], "R": self.R.tolist(), "t": self.t.tolist(),
                "Rt": np.concatenate([self.R, self.t[:, None]], 1).tolist(), "center": self.center.tolist()}

    @staticmethod
    def from_dict(d: dict) -> "Camera":
        return Camera(d["name"], np.array(d["K"], float), np.array(d["R"], float), np.array(d["t"], float),
                      int(d["width"]), int(d["height"]), np.array(d.get("dist", [0.0, 0.0]), float))


@dataclass
class Scene:
    """Registered cameras (in frame order) and a coloured point cloud in the SfM frame."""
    cameras: list[Camera]
    points: np.ndarray                        # [N, 3]
    colors: np.ndarray                        # [N, 3] uint8
    errors: np.ndarray | None = None          # [N] reprojection error (px), when known
    depth: dict = field(default_factory=dict)  # image name -> dense depth map [H, W] (metres of the SfM frame)

    def camera(self, name: str) -> Camera | None:
        return next((c for c in self.cameras if c.name == name), None)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]


def write_cameras_json(cameras: list[Camera], path: Path, extra: dict | None = None) -> Path:
    return atomic_write_text(path, json.dumps({**(extra or {}), "convention": "opencv: x_cam = R x_world + t",
                                               "cameras": [c.to_dict() for c in cameras]}, indent=1))


def read_cameras_json(path: Path) -> list[Camera]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return [Camera.from_dict(c) for c in data["cameras"]]
    except FileNotFoundError:
        raise UserError(f"{path}: not found (run the sfm step first)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a cameras.json ({exc})") from None


def write_points_ply(path: Path, points: np.ndarray, colors: np.ndarray | None = None,
                     normals: np.ndarray | None = None) -> Path:
    """Binary PLY point cloud with optional uchar colours (written atomically)."""
    import trimesh
    pc = trimesh.PointCloud(np.asarray(points, np.float64),
                            colors=None if colors is None or len(colors) == 0 else np.asarray(colors, np.uint8))
    with atomic_path(path) as tmp:
        pc.export(tmp, file_type="ply")
    return Path(path)


def read_points_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import trimesh
    if not Path(path).is_file():
        raise UserError(f"{path}: not found")
    try:
        pc = trimesh.load(path, process=False)
        pts = np.asarray(pc.vertices, np.float64)
        cols = getattr(pc, "colors", None)
        if cols is None or len(cols) != len(pts):
            cols = getattr(getattr(pc, "visual", None), "vertex_colors", None)
        cols = np.zeros((len(pts), 3), np.uint8) if cols is None or len(cols) != len(pts) else \
            np.asarray(cols)[:, :3].astype(np.uint8)
    except Exception as exc:
        raise UserError(f"{path}: cannot read the point cloud ({exc.__class__.__name__}: {exc})") from None
    return pts, cols


def look_at(center: np.ndarray, target: np.ndarray, up: np.ndarray, roll_deg: float = 0.0) -> np.ndarray:
    """World->camera rotation of an OpenCV camera at `center` looking at `target` with image-up near `up`."""
    z = np.asarray(target, float) - np.asarray(center, float)
    z /= np.linalg.norm(z)
    x = np.cross(-np.asarray(up, float), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    if roll_deg:
        a = np.deg2rad(roll_deg)
        x, y = np.cos(a) * x + np.sin(a) * y, -np.sin(a) * x + np.cos(a) * y
    return np.stack([x, y, z])
