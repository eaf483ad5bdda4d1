"""Distances along the skin, as a tape measure lies: exact geodesic paths on the mesh (edge flips, potpourri3d),
between the mesh vertices nearest to the two end points."""
from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial import cKDTree


class SkinPaths:
    """Geodesic paths on the connected piece of skin that holds the landmarks."""

    def __init__(self, mesh: trimesh.Trimesh, anchor_points: np.ndarray):
        m = mesh.copy()
        m.merge_vertices()
        parts = m.split(only_watertight=False)
        if len(parts) > 1:                                  # the piece nearest to the landmarks
            d = [float(cKDTree(p.vertices).query(anchor_points)[0].mean()) for p in parts]
            m = parts[int(np.argmin(d))]
        self.mesh = m
        self.tree = cKDTree(m.vertices)
        self._solver = None

    def _get_solver(self):
        if self._solver is None:
            import potpourri3d as pp3d
            self._solver = pp3d.EdgeFlipGeodesicSolver(np.asarray(self.mesh.vertices, float),
                                                       np.asarray(self.mesh.faces, np.int64))
        return self._solver

    def path(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The geodesic polyline [N, 3] from the vertex nearest to `a` to the one nearest to `b`."""
        ia, ib = (int(i) for i in self.tree.query(np.stack([a, b]))[1])
        if ia == ib:
            return self.mesh.vertices[[ia]]
        return np.asarray(self._get_solver().find_geodesic_path(ia, ib))

    def length(self, a: np.ndarray, b: np.ndarray) -> float:
        p = self.path(a, b)
        return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) if len(p) > 1 else 0.0
