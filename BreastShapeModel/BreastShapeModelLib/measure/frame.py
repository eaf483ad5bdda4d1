"""The body frame of a surface, from its six landmarks: origin at the sternal notch, +x towards the patient's left,
+y up (navel to sternal notch), +z forward. Every measurement is taken in it, so the surface may come in any pose."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..landmarks import LANDMARK_NAMES

SN, NAVEL, L_NIPPLE, R_NIPPLE, L_CORACOID, R_CORACOID = range(6)


@dataclass
class BodyFrame:
    origin: np.ndarray          # the sternal notch, in surface coordinates
    rotation: np.ndarray        # rows: body x, y, z in surface coordinates

    def to_body(self, p: np.ndarray) -> np.ndarray:
        return (np.asarray(p, float) - self.origin) @ self.rotation.T

    def to_surface(self, q: np.ndarray) -> np.ndarray:
        return np.asarray(q, float) @ self.rotation + self.origin


def body_frame(landmarks: np.ndarray) -> BodyFrame:
    """The frame of six landmarks (sternal notch, navel, left and right nipple, left and right coracoid)."""
    lm = np.asarray(landmarks, float)
    up = lm[SN] - lm[NAVEL]
    if np.linalg.norm(up) < 1e-9:
        raise UserError("the sternal notch and the navel landmarks coincide")
    y = up / np.linalg.norm(up)
    across = lm[L_NIPPLE] - lm[R_NIPPLE]
    x = across - (across @ y) * y
    if np.linalg.norm(x) < 1e-9:
        raise UserError(f"the {LANDMARK_NAMES[L_NIPPLE]} and {LANDMARK_NAMES[R_NIPPLE]} landmarks are not side by side")
    x /= np.linalg.norm(x)
    return BodyFrame(lm[SN].copy(), np.stack([x, y, np.cross(x, y)]))
