"""Training steps per second with the method's losses: plain network path vs our sparse/folded path.

Uses a preprocessed dataset when given (points from real training shapes), else a small synthetic one.
    python bench/train_speed.py [--dataset data.hdf5] [--steps 5] [--batch 16] [--surface 500 --volume 500]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastShapeModel"))
from BreastShapeModelLib.config import DEFAULT_CONFIG_PATH, load_config  # noqa: E402
from BreastShapeModelLib.devices import resolve_device, use_all_cores  # noqa: E402
from BreastShapeModelLib.training import Trainer, TrainSettings  # noqa: E402


def make_dataset(tmp: Path) -> Path:
    from BreastShapeModelLib import dataset, synth
    shapes = []
    for i in range(4):
        t = synth.generate(i, 5, spacing=4.0)
        d = tmp / f"t{i}"
        synth.write_torso(t, d, "t")
        shapes.append(dataset.process_scan(d / "t.ply", 0.1, 20000, i))
    return dataset.write_hdf5(tmp / "bench.hdf5", shapes, 0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--surface", type=int, default=500)
    ap.add_argument("--volume", type=int, default=500)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    use_all_cores()
    device = resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp())
    data = args.dataset or make_dataset(tmp)
    raw = yaml.safe_load((DEFAULT_CONFIG_PATH.parent / "train_synthetic_cpu.yaml").read_text())
    raw["data"].update(dataset_path=str(data), num_surface_points=args.surface, num_volume_points=args.volume)
    raw["train"]["batch_size"] = args.batch
    cfg_path = tmp / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_config(cfg_path)
    results = {}
    for name, threshold in (("plain (every member everywhere, unfolded)", None), ("sparse + folded", 1e-4)):
        settings = TrainSettings.from_config(cfg.raw, tmp)
        trainer = Trainer(cfg, settings, tmp / "run", device, log=lambda m: None)
        if threshold is None:                       # the reference path: the plain network forward
            trainer.net.forward_sparse = lambda p, c, t=0: trainer.net(p, c)
        ids = torch.arange(min(args.batch, len(trainer.train_idx))).repeat(args.batch)[:args.batch]
        trainer.train_step(ids)                     # warm-up
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step(ids)
        dt = (time.perf_counter() - t0) / args.steps
        results[name] = dt
        print(f"{name:45s} {1 / dt:7.2f} steps/s ({dt:.3f} s/step; batch {args.batch}, "
              f"{2 * args.surface + args.volume} points per shape, {device})")
    a, b = results.values()
    print(f"speed-up x{a / b:.1f}")


if __name__ == "__main__":
    main()
