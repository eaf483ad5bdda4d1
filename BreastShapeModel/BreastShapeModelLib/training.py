"""Training the local ensembled DeepSDF on an HDF5 dataset, as the method does (auto-decoder).

Per step and shape: `num_surface_points` surface points with normals, the same points jittered by N(0, 0.01),
and `num_volume_points` uniform points in [-1, 1]^3. Losses (weights from the config): surface |SDF|, normal
||grad SDF - n||, eikonal | ||grad SDF|| - 1 |, volume exp(-alpha |SDF|) off the surface, latent ||z||^2, anchor
||pred - landmark||. AdamW for the network, SparseAdam for the per-shape codes (sparse embedding, max_norm 1,
init N(0, latent_init)); both learning rates follow StepLR per epoch; gradients clipped to `gradient_clip`.

Checkpoints (`last.pt`, `best.pt`) hold everything needed to continue bit for bit: weights, codes, optimiser
and scheduler states, the sampling generator, epoch and step. Held-out shapes are evaluated by fitting a code
(see `fitting`) and comparing meshes: Chamfer-L1, normal consistency and F-score.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from .checkpoint import write_checkpoint
from .config import ModelConfig
from .dataset import read_hdf5
from .errors import UserError
from .fileio import atomic_path, atomic_write_text
from .fitting import FitSettings, fit_code
from .network import LocalEnsembleSDF, geometric_init

RUN_FORMAT = "slicer-breast-shape-run"


@dataclass
class TrainSettings:
    dataset: Path
    epochs: int
    batch_size: int
    num_surface_points: int
    num_volume_points: int
    weights: dict
    alpha: float
    lr: float
    weight_decay: float
    lr_step: int
    lr_gamma: float
    latent_lr: float
    latent_step: int
    latent_gamma: float
    latent_init: float
    max_norm: float
    gradient_clip: float
    seed: int
    eval_every: int
    val_fraction: float
    eval_shapes: int
    eval_resolution: int
    eval_fit_iterations: int
    sparse_threshold: float
    geometric_init: float

    @classmethod
    def from_config(cls, raw: dict, config_dir: Path) -> "TrainSettings":
        def get(*keys, default=None):
            node = raw
            for k in keys:
                if not isinstance(node, dict) or k not in node:
                    if default is None:
                        raise UserError(f"config: missing '{'.'.join(keys)}' (needed for training)")
                    return default
                node = node[k]
            return node
        data = Path(get("data", "dataset_path", default=str(Path(get("data", "dataset_root")) / "dataset.hdf5")))
        if not data.is_absolute():
            data = data.resolve()                  # relative to the working directory, as the reference

        weights = dict(zip(get("loss", "objectives"), [float(w) for w in get("loss", "weights")]))
        known = {"surface_loss", "normal_loss", "eikonal_loss", "volume_loss", "latent_norm", "anchor_loss"}
        unknown = set(weights) - known
        if unknown:
            raise UserError(f"config: unknown loss objectives {sorted(unknown)} (known: {sorted(known)})")
        return cls(
            dataset=data, epochs=int(get("train", "epochs", default=15000)),
            batch_size=int(get("train", "batch_size")),
            num_surface_points=int(get("data", "num_surface_points")),
            num_volume_points=int(get("data", "num_volume_points")), weights=weights,
            alpha=float(get("loss", "kwargs", "alpha")), lr=float(get("optimizer", "lr")),
            weight_decay=float(get("optimizer", "optimizer_kwargs", "weight_decay", default=0.01)),
            lr_step=int(get("optimizer", "scheduler_kwargs", "step_size")),
            lr_gamma=float(get("optimizer", "scheduler_kwargs", "gamma")),
            latent_lr=float(get("latent_optimizer", "lr")),
            latent_step=int(get("latent_optimizer", "scheduler_kwargs", "step_size")),
            latent_gamma=float(get("latent_optimizer", "scheduler_kwargs", "gamma")),
            latent_init=float(get("misc", "latent_init", default=1e-4)),
            max_norm=float(get("misc", "latent_max_norm", default=1.0)),
            gradient_clip=float(get("misc", "gradient_clip", default=0.0)),
            seed=int(get("misc", "manual_seed", default=0)),
            eval_every=int(get("train", "epochs_til_evaluation", default=100)),
            val_fraction=float(get("train", "val_fraction", default=0.05)),
            eval_shapes=int(get("train", "eval_shapes", default=4)),
            eval_resolution=int(get("eval", "voxel_resolution", default=128)),
            eval_fit_iterations=int(get("eval", "fit_iterations", default=300)),
            sparse_threshold=float(get("misc", "sparse_threshold", default=1e-4)),
            geometric_init=float(get("misc", "geometric_init", default=0.0)))


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train / held-out split (at least one training shape)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, int(round(n * val_fraction))) if n > 1 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def surface_metrics(pred_pts, pred_nrm, gt_pts, gt_nrm, threshold: float) -> dict:
    """Chamfer-L1 (mean of both directions), normal consistency and F-score at `threshold` (model units)."""
    d_pg, i_pg = cKDTree(gt_pts).query(pred_pts)
    d_gp, i_gp = cKDTree(pred_pts).query(gt_pts)
    precision, recall = float((d_pg < threshold).mean()), float((d_gp < threshold).mean())
    nc = 0.5 * (np.abs((pred_nrm * gt_nrm[i_pg]).sum(-1)).mean() + np.abs((gt_nrm * pred_nrm[i_gp]).sum(-1)).mean())
    return {"chamfer_l1": float(0.5 * (d_pg.mean() + d_gp.mean())), "normal_consistency": float(nc),
            "f_score": 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, text=True,
                             capture_output=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Trainer:
    def __init__(self, cfg: ModelConfig, settings: TrainSettings, run_dir: Path, device: torch.device,
                 progress=None, log=print):
        self.cfg, self.s, self.run_dir, self.device = cfg, settings, Path(run_dir), device
        self.log = log
        self.progress = progress
        data = read_hdf5(settings.dataset)
        self.data = data
        self.train_idx, self.val_idx = split_indices(len(data), settings.val_fraction, settings.seed)
        self.average_anchors = data.landmarks[self.train_idx].mean(0)
        torch.manual_seed(settings.seed)
        self.net = LocalEnsembleSDF(cfg, torch.as_tensor(self.average_anchors[list(cfg.anchor_indices)])).to(device)
        if settings.geometric_init > 0:
            geometric_init(self.net, settings.geometric_init)
        self.codes = torch.nn.Embedding(len(self.train_idx), cfg.latent_dim, max_norm=settings.max_norm,
                                        sparse=True).to(device)
        torch.nn.init.normal_(self.codes.weight, 0.0, settings.latent_init)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.latent_opt = torch.optim.SparseAdam(list(self.codes.parameters()), lr=settings.latent_lr)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, settings.lr_step, settings.lr_gamma)
        self.latent_sched = torch.optim.lr_scheduler.StepLR(self.latent_opt, settings.latent_step, settings.latent_gamma)
        self.gen = torch.Generator().manual_seed(settings.seed)
        self.epoch, self.step, self.best = 0, 0, math.inf
        self.history: list[dict] = []
        self.seconds = 0.0
        # all training shapes in memory, in model units
        n_pts = min(len(p) for p in data.points)
        self.points = torch.stack([torch.from_numpy(data.points[i][:n_pts]) for i in self.train_idx])
        self.normals = torch.stack([torch.from_numpy(data.normals[i][:n_pts]) for i in self.train_idx])
        self.landmarks = torch.as_tensor(data.landmarks[self.train_idx][:, list(cfg.anchor_indices)],
                                         dtype=torch.float32)
        self._writer = None

    def init_network_from(self, path: Path) -> None:
        """Start from another model's network (fine-tuning): its weights, this dataset's average anchors."""
        from .shape_model import ShapeModel
        src = ShapeModel.load(path, device="cpu").network.state_dict()
        own = self.net.state_dict()
        shapes = {k: tuple(v.shape) for k, v in own.items()}
        if any(k not in src or tuple(src[k].shape) != shapes[k] for k in own if k != "average_anchors"):
            raise UserError(f"{path}: its network does not match this configuration's architecture")
        with torch.no_grad():
            for k, v in own.items():
                if k != "average_anchors":
                    v.copy_(src[k].to(v.device, v.dtype))

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {"format": RUN_FORMAT, "config": self.cfg.raw or self.cfg.to_dict(), "epoch": self.epoch,
                "step": self.step, "best": self.best, "seconds": self.seconds,
                "model_state_dict": self.net.state_dict(), "codes": self.codes.weight.detach().cpu(),
                "optimizer": self.opt.state_dict(), "latent_optimizer": self.latent_opt.state_dict(),
                "scheduler": self.sched.state_dict(), "latent_scheduler": self.latent_sched.state_dict(),
                "generator": self.gen.get_state(), "average_anchors": torch.as_tensor(self.average_anchors),
                "train_idx": torch.as_tensor(self.train_idx), "val_idx": torch.as_tensor(self.val_idx),
                "mm_per_unit": self.data.mm_per_unit, "num_shapes": len(self.data),
                "history": json.dumps(self.history), "device": str(self.device)}

    def load_state(self, path: Path) -> None:
        try:
            st = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(f"{path}: cannot resume from this file ({exc.__class__.__name__}: {exc})") from None
        if not isinstance(st, dict) or st.get("format") != RUN_FORMAT:
            raise UserError(f"{path}: not a training checkpoint of this tool (use last.pt or best.pt of a run)")
        if st["codes"].shape[0] != len(self.train_idx) or not np.array_equal(st["train_idx"].numpy(), self.train_idx):
            raise UserError(f"{path}: was trained on a different dataset or split than {self.s.dataset}")
        self.net.load_state_dict(st["model_state_dict"])
        with torch.no_grad():
            self.codes.weight.copy_(st["codes"].to(self.device))
        self.opt.load_state_dict(st["optimizer"])
        self.latent_opt.load_state_dict(st["latent_optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        self.latent_sched.load_state_dict(st["latent_scheduler"])
        self.gen.set_state(st["generator"].cpu())
        self.epoch, self.step, self.best = int(st["epoch"]), int(st["step"]), float(st["best"])
        self.seconds = float(st.get("seconds", 0.0))
        self.history = json.loads(st["history"])

    def save(self, name: str) -> Path:
        path = self.run_dir / name
        with atomic_path(path) as tmp:
            torch.save(self.state(), tmp)
        return path

    # ------------------------------------------------------------------ steps
    def _batch(self, shape_ids: torch.Tensor):
        s, g = self.s, self.gen
        B = len(shape_ids)
        idx = torch.randint(self.points.shape[1], (B, s.num_surface_points), generator=g)
        surf = torch.gather(self.points[shape_ids], 1, idx[..., None].expand(-1, -1, 3))
        nrm = torch.gather(self.normals[shape_ids], 1, idx[..., None].expand(-1, -1, 3))
        near = surf + torch.randn(surf.shape, generator=g) * 0.01
        far = torch.rand((B, s.num_volume_points, 3), generator=g) * 2 - 1
        return surf, nrm, near, far

    def losses(self, shape_ids: torch.Tensor) -> dict:
        s, dev = self.s, self.device
        surf, nrm, near, far = (t.to(dev) for t in self._batch(shape_ids))
        points = torch.cat([surf, near, far], dim=1).requires_grad_(True)
        z = self.codes(shape_ids.to(dev))
        # Member skipping pays on a CPU; a GPU is launch-bound on this small network, so one batched forward wins
        # there (as in fit_code).
        if dev.type == "cpu":
            sdf, anchors = self.net.forward_sparse(points, z, s.sparse_threshold)
        else:
            sdf, anchors = self.net(points, z)
        grad = torch.autograd.grad(sdf.sum(), points, create_graph=True)[0]
        n_s = surf.shape[1]
        out = {
            "surface_loss": sdf[:, :n_s].abs().mean(),
            "normal_loss": (grad[:, :n_s] - nrm).norm(dim=-1).mean(),
            "eikonal_loss": (grad.norm(dim=-1) - 1).abs().mean(),
            "volume_loss": torch.exp(-s.alpha * sdf[:, n_s:].abs()).mean(),
            "latent_norm": (z.norm(dim=-1) ** 2).mean(),
            "anchor_loss": (anchors - self.landmarks[shape_ids].to(dev)).norm(dim=-1).mean(),
        }
        return out

    def train_step(self, shape_ids: torch.Tensor) -> dict:
        self.opt.zero_grad(set_to_none=True)
        self.latent_opt.zero_grad(set_to_none=True)
        parts = self.losses(shape_ids)
        total = sum(self.s.weights.get(k, 0.0) * v for k, v in parts.items())
        total.backward()
        clip = self.s.gradient_clip
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), clip)
            g = self.codes.weight.grad
            if g is not None:
                g = g.coalesce()
                norm = g.values().norm()
                if norm > clip:
                    g.values().mul_(clip / (norm + 1e-6))
                self.codes.weight.grad = g
        self.opt.step()
        self.latent_opt.step()
        self.step += 1
        return {"total": float(total.detach()), **{k: float(v.detach()) for k, v in parts.items()}}

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        """Fit codes to held-out shapes (or a few training shapes when there are none) and compare meshes."""
        from .shape_model import ShapeModel
        ids = list(self.val_idx[: self.s.eval_shapes]) or list(self.train_idx[: self.s.eval_shapes])
        codes = self.codes.weight.detach()
        model = ShapeModel(self.net, codes.mean(0).cpu(), codes.std(0).cpu(), self.data.mm_per_unit,
                           device=self.device)
        rows = []
        rng = np.random.default_rng(0)
        for i in ids:
            pts, nrm = self.data.points[i], self.data.normals[i]
            sel = rng.choice(len(pts), min(len(pts), 20000), replace=False)
            fit = fit_code(self.net, pts[sel], self.data.landmarks[i][list(self.cfg.anchor_indices)],
                           FitSettings(iterations=self.s.eval_fit_iterations, latent_weight=1e-3, anchor_weight=1.0,
                                       sparse_threshold=self.s.sparse_threshold))
            try:
                mesh = model.mesh(fit.code, self.s.eval_resolution)
            except UserError:
                rows.append({"chamfer_l1": 1.0, "normal_consistency": 0.0, "f_score": 0.0})
                continue
            import trimesh
            p, face = trimesh.sample.sample_surface(mesh, 20000, seed=0)
            rows.append(surface_metrics(p, mesh.face_normals[face], pts[sel], nrm[sel], threshold=0.01))
        self.net.train()
        metrics = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        metrics["chamfer_l1_mm"] = metrics["chamfer_l1"] * self.data.mm_per_unit
        return metrics

    # ------------------------------------------------------------------ loop
    def _tb(self):
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:
                self._writer = False
                self.log("TensorBoard not installed (pip install tensorboard): logging to metrics.csv only")
        return self._writer or None

    def _csv(self, row: dict) -> None:
        path = self.run_dir / "metrics.csv"
        fields = ["epoch", "step", "seconds", "total", "surface_loss", "normal_loss", "eikonal_loss", "volume_loss",
                  "latent_norm", "anchor_loss", "lr", "chamfer_l1", "chamfer_l1_mm", "normal_consistency", "f_score"]
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def train(self, epochs: int, update=None) -> dict:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        n = len(self.train_idx)
        while self.epoch < epochs:
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=self.gen)
            sums: dict = {}
            for b in range(0, n, self.s.batch_size):
                parts = self.train_step(order[b:b + self.s.batch_size])
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v * len(order[b:b + self.s.batch_size])
            self.sched.step()
            self.latent_sched.step()
            self.epoch += 1
            self.seconds += time.perf_counter() - t0
            row = {"epoch": self.epoch, "step": self.step, "seconds": round(self.seconds, 2),
                   **{k: v / n for k, v in sums.items()}, "lr": self.opt.param_groups[0]["lr"]}
            evaluate = self.epoch % self.s.eval_every == 0 or self.epoch == epochs
            if evaluate:
                row.update(self.evaluate())
            self.history.append(row)
            self._csv(row)
            tb = self._tb()
            if tb:
                for k, v in row.items():
                    if k not in ("epoch", "step"):
                        tb.add_scalar(("eval/" if k in ("chamfer_l1", "chamfer_l1_mm", "normal_consistency", "f_score")
                                       else "train/") + k, v, self.epoch)
                tb.flush()
            self.save("last.pt")
            if evaluate and row["chamfer_l1"] < self.best:
                self.best = row["chamfer_l1"]
                self.save("best.pt")
            if update is not None:
                update(self.epoch, row)
        return self.history[-1] if self.history else {}


def export(run_dir: Path, output: Path, which: str = "best", official: bool = False, extra: dict | None = None) -> Path:
    """Write our self-contained checkpoint (or the official layout) from a run's `best.pt` / `last.pt`."""
    path = Path(run_dir) / f"{which}.pt"
    if not path.is_file():
        alt = Path(run_dir) / "last.pt"
        if which == "best" and alt.is_file():
            path = alt
        else:
            raise UserError(f"{run_dir}: no {which}.pt (is this a training run directory?)")
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(st, dict) or st.get("format") != RUN_FORMAT:
        raise UserError(f"{path}: not a training checkpoint of this tool")
    codes = st["codes"].float()
    history = json.loads(st["history"])
    evals = [h for h in history if "chamfer_l1" in h]
    provenance = {
        "trained_by": "SlicerBreastShape train", "data_shapes": int(st["num_shapes"]),
        "train_shapes": int(len(st["train_idx"])), "held_out_shapes": int(len(st["val_idx"])),
        "epochs": int(st["epoch"]), "steps": int(st["step"]), "device": st.get("device", "?"),
        "train_seconds": float(st.get("seconds", 0.0)), "date": _dt.date.today().isoformat(),
        "git_commit": git_commit(), "host": platform.machine(), "checkpoint": which,
        "last_eval": evals[-1] if evals else None, **(extra or {})}
    return write_checkpoint(output, st["model_state_dict"], codes.mean(0), codes.std(0), config=st["config"],
                            average_anchors=st["average_anchors"].numpy(), mm_per_unit=float(st["mm_per_unit"]),
                            provenance=provenance, official=official)


def write_json(path: Path, data: dict) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2))
