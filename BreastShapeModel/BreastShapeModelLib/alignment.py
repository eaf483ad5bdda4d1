"""Similarity transforms between point sets (Umeyama), used for landmarks, fitting and evaluation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Similarity:
    """x -> scale * R @ x + t."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation

    def inverse(self) -> "Similarity":
        r_inv = self.rotation.T
        return Similarity(1.0 / self.scale, r_inv, -(r_inv @ self.translation) / self.scale)

    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = self.translation
        return m

    @staticmethod
    def identity() -> "Similarity":
        return Similarity(1.0, np.eye(3), np.zeros(3))


def umeyama(source: np.ndarray, target: np.ndarray, with_scale: bool = True,
            weights: np.ndarray | None = None) -> Similarity:
    """Least-squares similarity taking `source` [N, 3] onto `target` [N, 3] (Umeyama 1991), optionally with
    per-point weights (a doubtful landmark counts less)."""
    src, dst = np.asarray(source, np.float64), np.asarray(target, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[2, 2] = -1
    rot = u @ s @ vt
    var_s = float(w @ (xs ** 2).sum(1))
    scale = float(np.trace(np.diag(d) @ s) / var_s) if with_scale else 1.0
    return Similarity(scale, rot, mu_d - scale * rot @ mu_s)
