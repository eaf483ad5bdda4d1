"""The model-based chest wall (measure/chest_model.py): rays against an implicit surface, the statistical wall
recovering what a breast hides, and the shipped model (its accuracy against the other walls is in
bench/measure_accuracy.py)."""
from __future__ import annotations

import numpy as np

from BreastShapeModelLib.measure import chest_model as CM
from BreastShapeModelLib.measure.cylinder import RadiusMap
from BreastShapeModelLib.measure.frame import BodyFrame


def test_wall_radius_finds_the_outermost_crossing():
    theta, y = np.radians(np.arange(-60.0, 61.0, 10.0)), np.arange(-80.0, 81.0, 20.0)
    sphere = lambda p: np.linalg.norm(p - [0.0, 0.0, -30.0], axis=-1) - 120.0       # noqa: E731
    r = CM.wall_radius(sphere, np.eye(3), np.zeros(3), -30.0, theta, y)
    expected = np.sqrt(120.0 ** 2 - y[:, None] ** 2) * np.ones_like(theta)
    assert np.abs(r - expected).max() < 0.05
    assert np.isnan(CM.wall_radius(lambda p: np.ones(p.shape[:-1]), np.eye(3), np.zeros(3), 0.0, theta, y)).all()


def test_the_fitted_model_recovers_the_wall_a_breast_hides():
    s, th = np.linspace(-1.0, 0.2, 31), np.arange(-120.0, 121.0, 4.0)
    S, T = np.meshgrid(s, np.radians(th), indexing="ij")
    comps = [np.cos(T) * 30.0, S * 25.0, np.cos(2 * T) * 10.0]
    model = {"s_grid": s, "theta_deg": th, "mean": 150.0 + 20.0 * np.cos(T),
             "components": np.stack([c / np.linalg.norm(c) for c in comps]), "sd": np.array([60.0, 40.0, 20.0])}
    L = 300.0
    y = np.arange(-290.0, 50.0, 4.0)
    rm = RadiusMap(BodyFrame(np.zeros(3), np.eye(3)), -90.0, np.radians(np.arange(-110.0, 111.0, 2.0)), y,
                   np.zeros((len(y), 111)))
    wall = CM.PcaWall(rm, L, model)
    truth = wall.mean + 35.0 * wall.components[0] - 20.0 * wall.components[1] + 12.0 * wall.components[2]
    Tg, Yg = np.meshgrid(rm.theta, rm.y)
    breast = np.hypot(np.degrees(Tg) - 30.0, (Yg + 150.0) / 3.0) < 25.0
    skin = truth + np.where(breast, 40.0, 0.0)
    got = wall.fit(skin, np.where(breast, 0.0, 1.0))
    assert np.abs(got - truth)[breast].max() < 0.5                 # under the breast, from the skin round it
    assert wall.code_z() < 1.0


def test_the_shipped_model_loads():
    m = CM.load()
    assert m["count"] >= 300 and m["components"].shape[0] == len(m["sd"]) == CM.MODES
    assert m["mean"].shape == (len(m["s_grid"]), len(m["theta_deg"])) and m["explained"] > 0.95
