"""Training commands: `train` a model on an HDF5 dataset, `export` a run as a checkpoint `ShapeModel.load` reads."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from .errors import UserError
from .progress import MODES, Progress


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train the shape model on a preprocessed HDF5 dataset",
                       description="Train the local ensembled DeepSDF with the method's losses and optimisers. "
                                   "A run directory holds last.pt / best.pt (exactly resumable), metrics.csv and "
                                   "TensorBoard logs; re-running the same command resumes from last.pt.")
    p.add_argument("config", type=Path, help="YAML in the official layout (model, data, train, loss, optimizer, "
                                             "latent_optimizer, misc); data.dataset_path or dataset_root/dataset.hdf5")
    p.add_argument("--output_dir", type=Path, default=Path("runs/train"), help="run directory (runs/train)")
    p.add_argument("--resume", type=Path, default=None, help="training checkpoint to continue (default: "
                                                             "<output_dir>/last.pt when it exists)")
    p.add_argument("--fresh", action="store_true", help="start over even if <output_dir>/last.pt exists")
    p.add_argument("--init_weights", type=Path, default=None,
                   help="a new run starts from this model's network weights (ours or official; fine-tuning on "
                        "new data), with fresh per-shape codes; ignored when the run resumes")
    p.add_argument("--dataset", type=Path, default=None, help="HDF5 dataset (default: from the config)")
    p.add_argument("--epochs", type=int, default=None, help="total epochs to reach (default: train.epochs)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
    p.add_argument("--progress", choices=MODES, default="bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="write a training run as a self-contained model checkpoint",
                       description="Weights, config, average anchors, latent mean/std of the learned codes, mm per "
                                   "model unit from the data, and provenance, in one .pth that ShapeModel.load and "
                                   "every command read (--ckpt).")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--output", type=Path, default=Path("model.pth"))
    p.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint of the run (best)")
    p.add_argument("--official", action="store_true",
                   help="also write the official liRBSM layout: <output>_official.pth with its config YAML and "
                        "average_anchors.pt")
    p.add_argument("--progress", choices=MODES, default="bar")
    p.set_defaults(func=cmd_export)


def cmd_train(args, progress: Progress) -> int:
    from .config import load_config
    from .devices import resolve_device, use_all_cores
    from .training import Trainer, TrainSettings, write_json
    cfg = load_config(args.config)
    settings = TrainSettings.from_config(cfg.raw, args.config.parent)
    if args.dataset is not None:
        settings.dataset = args.dataset
    if args.epochs is not None:
        if args.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {args.epochs}")
        settings.epochs = args.epochs
    device = resolve_device(args.device)
    use_all_cores()
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)
    trainer = Trainer(cfg, settings, args.output_dir, device, log=progress.log)
    resume = args.resume or (None if args.fresh else args.output_dir / "last.pt")
    if resume is not None and Path(resume).is_file():
        trainer.load_state(Path(resume))
        message = f"resumed from {resume} at epoch {trainer.epoch}, step {trainer.step}"
        print(message, file=sys.stderr)              # always said: a resumed run is not a fresh one
        progress.event("log", message=message)
    elif args.resume is not None:
        raise UserError(f"{args.resume}: no such training checkpoint")
    else:
        if args.fresh and (args.output_dir / "metrics.csv").exists():
            (args.output_dir / "metrics.csv").unlink()
        if args.init_weights is not None:
            trainer.init_network_from(args.init_weights)
            progress.log(f"network initialised from {args.init_weights}")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_json(args.output_dir / "run.json", {"config": str(args.config), "dataset": str(settings.dataset),
                                              "shapes": len(trainer.data), "train": len(trainer.train_idx),
                                              "held_out": len(trainer.val_idx), "device": str(device),
                                              "settings": {k: str(v) for k, v in vars(settings).items()}})
    progress.log(f"training on {len(trainer.train_idx)} shapes ({len(trainer.val_idx)} held out) on {device}")
    with progress.stage("train", total=settings.epochs, unit="epoch") as update:
        update(trainer.epoch)

        def on_epoch(epoch, row):
            msg = f"loss {row['total']:.4f}"
            if "chamfer_l1_mm" in row:
                msg += f", held-out Chamfer-L1 {row['chamfer_l1_mm']:.2f} mm, F {row['f_score']:.3f}"
                progress.log(f"epoch {epoch}: {msg}")
            update(epoch, msg)
        last = trainer.train(settings.epochs, on_epoch)
    progress.result(files=[str(args.output_dir / "last.pt")], epoch=trainer.epoch, metrics=last)
    print(json.dumps({"epoch": trainer.epoch, "step": trainer.step, **{k: v for k, v in last.items()}}))
    return 0


def cmd_export(args, progress: Progress) -> int:
    from .training import export
    out = export(args.run_dir, args.output, args.which)
    files = [str(out)]
    if args.official:
        import yaml
        st = torch.load(out, map_location="cpu", weights_only=True)
        stem = args.output.with_name(args.output.stem + "_official")
        off = export(args.run_dir, stem.with_suffix(".pth"), args.which, official=True)
        cfg_path = stem.with_name(stem.name + "_config.yaml")
        cfg_path.write_text(yaml.safe_dump(st["config"], sort_keys=False))
        anchors_path = stem.with_name(stem.name + "_average_anchors.pt")
        torch.save(st["average_anchors"].double(), anchors_path)
        files += [str(off), str(cfg_path), str(anchors_path)]
    progress.summary(f"wrote {', '.join(files)}")
    progress.result(files=files)
    return 0
