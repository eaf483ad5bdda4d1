"""Time of the latent fit (1000 iterations x 1000 points): plain network path vs our sparse/folded path.

Both fit the same generator torso from the same start; the resulting codes' surfaces are compared.
    python bench/fit_speed.py [--ckpt model.pth] [--iterations 1000]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastShapeModel"))
from BreastShapeModelLib import ShapeModel, synth  # noqa: E402
from BreastShapeModelLib.alignment import umeyama  # noqa: E402
from BreastShapeModelLib.devices import use_all_cores  # noqa: E402
from BreastShapeModelLib.fitting import FitSettings, fit_code  # noqa: E402
from BreastShapeModelLib.reconstruct import compose, normalisation  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--iterations", type=int, default=1000)
    args = ap.parse_args()
    use_all_cores()
    model = ShapeModel.load(args.ckpt)
    t = synth.generate(0, 777_001, spacing=3.0)
    pts, _ = trimesh.sample.sample_surface(t.mesh, 20000, seed=0)
    norm = normalisation(pts)
    to_model = compose(umeyama(norm.apply(t.landmarks), model.average_anchors), norm)
    p, lm = to_model.apply(pts), to_model.apply(t.landmarks)
    codes, times = {}, {}
    for name, threshold in (("plain", 0.0), ("fast", 1e-4)):
        s = FitSettings(iterations=args.iterations, anchor_weight=1.0, sparse_threshold=threshold)
        net = model.network
        if name == "plain":                      # the reference path: the whole network for every point
            orig = net.forward_sparse
            net.forward_sparse = lambda q, c, th=0.0: net(q, c)
        t0 = time.perf_counter()
        fit = fit_code(net, p, lm, s)
        times[name] = time.perf_counter() - t0
        if name == "plain":
            net.forward_sparse = orig
        codes[name] = fit.code
        print(f"{name:6s}: {times[name]:6.1f} s for {args.iterations} iterations "
              f"({args.iterations / times[name]:.0f} it/s), final loss {fit.loss[-1]:.5f}")
    probe = torch.as_tensor(p[::10], dtype=torch.float32)
    a = model.sdf(probe, codes["plain"])
    b = model.sdf(probe, codes["fast"])
    print(f"speed-up x{times['plain'] / times['fast']:.1f}; target <= 30 s on 2 cores: "
          f"{'met' if times['fast'] <= 30 else 'NOT met'}")
    mm = model.mm_per_unit
    print(f"fitted surfaces at the input points (mm): mean |SDF| plain {float(a.abs().mean()) * mm:.3f}, "
          f"fast {float(b.abs().mean()) * mm:.3f}; mean |difference| {float((a - b).abs().mean()) * mm:.3f}")


if __name__ == "__main__":
    main()
