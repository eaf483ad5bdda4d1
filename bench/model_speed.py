"""Speed of the shape model on this machine: SDF points/s (plain vs fast path) and mesh time (fast narrow-band
vs dense plain evaluation), with peak memory.

    python bench/model_speed.py [--ckpt FILE] [--device cpu] [--full]

Without --ckpt it uses the bundled model if present, else a torso-sized test surface (official architecture,
geometric initialisation). Dense-plain meshing at 256^3 takes many minutes on a laptop CPU: it is extrapolated
from 128^3 (x8 points) unless --full is given.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastShapeModel"))
from BreastShapeModelLib import BUNDLED_MODEL, ShapeModel  # noqa: E402
from BreastShapeModelLib.config import load_config  # noqa: E402
from BreastShapeModelLib.devices import resolve_device  # noqa: E402
from BreastShapeModelLib.landmarks import OFFICIAL_AVERAGE_ANCHORS  # noqa: E402
from BreastShapeModelLib.meshing import extract_mesh  # noqa: E402
from BreastShapeModelLib.network import LocalEnsembleSDF, geometric_init  # noqa: E402


def test_surface_model(device) -> ShapeModel:
    torch.manual_seed(0)
    net = LocalEnsembleSDF(load_config(), torch.as_tensor(OFFICIAL_AVERAGE_ANCHORS * 0.6))
    geometric_init(net, radius=0.4)
    with torch.no_grad():
        net.ensembled_deep_sdf.lin0.weight[:, :, 3:] += 0.01 * torch.randn_like(net.ensembled_deep_sdf.lin0.weight[:, :, 3:])
    return ShapeModel(net, torch.zeros(576), torch.full((576,), 0.2), source="geometric-init test surface",
                      device=device)


def peak_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2 ** 20


def timed(fn, repeat=1):
    fn_out = None
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn_out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, fn_out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--full", action="store_true", help="really run dense-plain meshing at 256^3")
    args = ap.parse_args()
    device = resolve_device(args.device)
    if args.ckpt or BUNDLED_MODEL.is_file():
        model = ShapeModel.load(args.ckpt, device=str(device))
    else:
        model = test_surface_model(device)
    code = model.mean_code
    print(f"model: {model.source}  device: {device}  torch threads: {torch.get_num_threads()}")

    rng = np.random.default_rng(0)
    mesh128 = model.mesh(code, 128)
    near = mesh128.vertices[rng.choice(len(mesh128.vertices), 50_000)] + rng.normal(0, 0.01, (50_000, 3))
    pts = torch.as_tensor(near, dtype=torch.float32)
    model.sdf(pts[:1000], code)
    model.sdf(pts[:1000], code, fast=False)
    t_plain, plain = timed(lambda: model.sdf(pts, code, fast=False), 2)
    t_plain_small, _ = timed(lambda: model.sdf(pts, code, fast=False, chunk_size=512), 2)
    t_fast, fast = timed(lambda: model.sdf(pts, code, fast=True), 3)
    n = len(pts)
    print("\nSDF evaluation, 50,000 points near the surface")
    print(f"  plain path (chunks of 65,536):  {n / t_plain:10,.0f} points/s")
    print(f"  plain path (chunks of 512):     {n / t_plain_small:10,.0f} points/s")
    print(f"  fast path:                      {n / t_fast:10,.0f} points/s   "
          f"x{t_plain / t_fast:.1f} vs plain default, x{t_plain_small / t_fast:.1f} vs plain best")
    print(f"  max |fast - plain|:             {float((fast - plain).abs().max()):.2e}")

    print("\nMeshing (marching cubes included)")
    rows = {}
    for res in (128, 256):
        t_nb, grid = timed(lambda: model.volume(code, res, method="narrow_band"))
        t_mc, (v, f) = timed(lambda: extract_mesh(grid))
        rows[res] = (t_nb + t_mc, grid.evaluated, len(v))
        print(f"  {res}^3 fast narrow band: {t_nb + t_mc:7.2f} s  ({grid.evaluated:,} SDF evaluations = "
              f"{grid.evaluated / res ** 3:.1%} of the grid, {len(v):,} vertices)")
    print(f"  peak memory so far: {peak_mb():.0f} MB")
    t_dense, grid = timed(lambda: model.volume(code, 128, method="dense", fast=False))
    t_dense += timed(lambda: extract_mesh(grid))[0]
    print(f"  128^3 dense plain:       {t_dense:7.2f} s  -> narrow band is x{t_dense / rows[128][0]:.1f} faster")
    if args.full:
        t256, grid = timed(lambda: model.volume(code, 256, method="dense", fast=False))
        t256 += timed(lambda: extract_mesh(grid))[0]
        label = "measured"
    else:
        t256, label = 8 * t_dense, "extrapolated x8 from 128^3"
    print(f"  256^3 dense plain:       {t256:7.2f} s  ({label}) -> narrow band is x{t256 / rows[256][0]:.1f} faster")
    print(f"  peak memory: {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
