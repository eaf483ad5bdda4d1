"""Build the chest-wall model (measure/chest_model.py) from generator torsos: each torso's own chest wall (the torso
without breasts) as a radius map in its landmarks' body frame, then principal components. A few minutes on a CPU.

    python scripts/train_chest_wall.py [--num 300] [--seed 2028] [--output BreastShapeModel/Resources/Models/chest_wall_pca.npz]
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
from BreastShapeModelLib.fileio import atomic_path  # noqa: E402
from BreastShapeModelLib.measure import chest_model as CM  # noqa: E402
from BreastShapeModelLib.measure.frame import L_NIPPLE, NAVEL, R_NIPPLE, body_frame  # noqa: E402
from BreastShapeModelLib.synth import analytic_landmarks, torso_rng  # noqa: E402


def torso_wall(index: int, seed: int) -> np.ndarray | None:
    try:
        torso = Torso(sample_params(torso_rng(seed, index)))
        lm = analytic_landmarks(torso)
    except ValueError:
        return None
    frame = body_frame(lm)
    lmb = frame.to_body(lm)
    n2n = float(np.linalg.norm(lmb[L_NIPPLE] - lmb[R_NIPPLE]))
    y = CM.S_GRID * float(-lmb[NAVEL, 1])
    return CM.wall_radius(torso.chest_field, frame.rotation, frame.origin, CM.axis_depth(n2n),
                          np.radians(CM.THETA_GRID_DEG), y)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=300)
    ap.add_argument("--seed", type=int, default=2028)
    ap.add_argument("--output", type=Path, default=CM.MODEL_FILE)
    a = ap.parse_args()
    t0 = time.perf_counter()
    walls = [w for i in tqdm(range(a.num), desc="chest walls") if (w := torso_wall(i, a.seed)) is not None]
    model = CM.train(walls)
    a.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(a.output) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{k: np.asarray(v, np.float32 if np.ndim(v) > 1 else None)
                                      for k, v in model.items()})
    print(f"{len(walls)} chest walls, {len(model['sd'])} components explaining {100 * model['explained']:.1f} %, "
          f"{time.perf_counter() - t0:.0f} s -> {a.output} ({a.output.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
