"""Build the chest-wall model (measure/chest_model.py): for torsos whose chest wall is known, the skin and the
chest wall as radius maps on the model's grid in their landmarks' body frame, then the skin's principal components
and the regression from them to the wall. Generator torsos (the torso without breasts) always; Anny bodies (the same
body with cup size 0) when `anny` is installed. About 46 minutes on 2 cores for 1,000 + 700 torsos (1,672 kept).

    python scripts/train_chest_wall.py [--num 1000] [--anny 700] [--modes 800] [--seed 2028] [--anny_seed 2029] \
        [--cache maps.npz] [--output BreastShapeModel/Resources/Models/chest_wall_pca.npz]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastShapeModel"))
from BreastShapeModelLib.anatomy import Torso, sample_params  # noqa: E402
from BreastShapeModelLib.measure import chest_model as CM  # noqa: E402
from BreastShapeModelLib.measure.cylinder import radius_map  # noqa: E402
from BreastShapeModelLib.measure.frame import L_NIPPLE, NAVEL, R_NIPPLE, body_frame  # noqa: E402
from BreastShapeModelLib.synth import analytic_landmarks, torso_rng  # noqa: E402


def _grid(lmb: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    n2n = float(np.linalg.norm(lmb[L_NIPPLE] - lmb[R_NIPPLE]))
    return n2n, np.radians(CM.THETA_GRID_DEG), CM.S_GRID * float(-lmb[NAVEL, 1])


def generator_maps(index: int, seed: int):
    """(skin, wall, nipple distance) of one generator torso, or None for a rejected draw."""
    try:
        torso = Torso(sample_params(torso_rng(seed, index)))
        lm = analytic_landmarks(torso)
    except ValueError:
        return None
    frame = body_frame(lm)
    n2n, theta, y = _grid(frame.to_body(lm))
    maps = [CM.wall_radius(f, frame.rotation, frame.origin, CM.axis_depth(n2n), theta, y)
            for f in (torso.field, torso.chest_field)]
    return maps[0], maps[1], n2n


def anny_maps(index: int, seed: int):
    """(skin, wall, nipple distance) of one Anny torso: the cut torso and the same body with cup size 0, cut alike."""
    from BreastShapeModelLib import anny_source as A
    try:
        p = A.anny_rng_params(seed, index)
        t = A.make_anny_torso(p)
    except ValueError:
        return None
    frame = body_frame(t.landmarks)
    n2n, theta, y = _grid(frame.to_body(t.landmarks))
    maps = []
    for mesh in (t.mesh, t.chest_wall):
        body = mesh.copy()
        body.vertices = frame.to_body(mesh.vertices)
        maps.append(radius_map(body, frame, CM.axis_depth(n2n), 0.0, 0.0, grid=(theta, y)).r)
    return maps[0], maps[1], n2n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=1000, help="generator torsos")
    ap.add_argument("--anny", type=int, default=700, help="Anny torsos (skipped when anny is not installed)")
    ap.add_argument("--modes", type=int, default=CM.MODES, help="skin components kept")
    ap.add_argument("--seed", type=int, default=2028)
    ap.add_argument("--anny_seed", type=int, default=2029)
    ap.add_argument("--cache", type=Path, default=None, help="maps file: read when it exists, else written")
    ap.add_argument("--output", type=Path, default=CM.MODEL_FILE)
    a = ap.parse_args()
    t0 = time.perf_counter()
    if a.cache and a.cache.exists():
        with np.load(a.cache) as z:
            skins, walls, n2n = list(z["skin"]), list(z["wall"]), list(z["n2n"])
    else:
        from BreastShapeModelLib import anny_source
        jobs = [(generator_maps, i, a.seed) for i in range(a.num)]
        if anny_source.available():
            jobs += [(anny_maps, i, a.anny_seed) for i in range(a.anny)]
        maps = [m for f, i, s in tqdm(jobs, desc="skin and chest-wall maps") if (m := f(i, s)) is not None]
        skins, walls, n2n = (list(v) for v in zip(*maps))
        if a.cache:
            np.savez_compressed(a.cache, skin=np.stack(skins), wall=np.stack(walls), n2n=np.asarray(n2n))
    model = CM.train(skins, walls, n2n, modes=a.modes)
    CM.save(model, a.output)
    print(f"{len(skins)} torsos, {len(model['sd'])} skin components explaining {100 * model['explained']:.1f} %, "
          f"{time.perf_counter() - t0:.0f} s -> {a.output} ({a.output.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
