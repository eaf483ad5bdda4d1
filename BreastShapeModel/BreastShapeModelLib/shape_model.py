"""`ShapeModel`: the public face of the liRBSM shape model (load, SDF, anchors, mesh, sampling)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import trimesh

from .checkpoint import (OFFICIAL_MM_PER_UNIT, check_against_config, read_checkpoint, write_checkpoint)
from .config import ModelConfig, load_config
from .devices import resolve_device
from .errors import CheckpointError, UserError
from .fast_eval import FoldedSDF, evaluate_chunked
from .landmarks import OFFICIAL_AVERAGE_ANCHORS, load_anchor_array
from .meshing import GridResult, dense_volume, extract_mesh, narrow_band_volume
from .network import LocalEnsembleSDF
from .options import BUNDLED_MODEL_NAME, DEFAULT_CHUNK_SIZE

MODELS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models"
BUNDLED_MODEL = MODELS_DIR / BUNDLED_MODEL_NAME


def _as_tensor(x, device, name: str, shape_tail: tuple | None = None) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be numeric, got {type(x).__name__}") from None
    if shape_tail is not None and (t.ndim != len(shape_tail) + 1 or tuple(t.shape[1:]) != shape_tail):
        raise UserError(f"{name} must have shape [N, {', '.join(map(str, shape_tail))}], got {tuple(t.shape)}")
    return t.to(device)


def _like(result: torch.Tensor, template):
    """Return numpy for numpy/list input, a tensor for tensor input."""
    return result if isinstance(template, torch.Tensor) else result.detach().cpu().numpy()


class ShapeModel:
    """A loaded liRBSM model. Codes are [latent_dim] vectors (576 for the official configuration)."""

    def __init__(self, network: LocalEnsembleSDF, latent_mean: torch.Tensor, latent_std: torch.Tensor,
                 mm_per_unit: float = OFFICIAL_MM_PER_UNIT, source: str = "", provenance: dict | None = None,
                 device="cpu"):
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.latent_mean = latent_mean.float().to(self.device)
        self.latent_std = latent_std.float().to(self.device)
        self.mm_per_unit = float(mm_per_unit)
        self.source = source
        self.provenance = dict(provenance or {})
        self._folded_cache: tuple[bytes, FoldedSDF] | None = None

    # ---------------------------------------------------------------- loading / saving
    @classmethod
    def load(cls, checkpoint: str | Path | None = None, config: str | Path | None = None,
             anchors: str | Path | None = None, device: str | None = "cpu") -> "ShapeModel":
        """Load the bundled model (no argument), an official liRBSM checkpoint or one of ours.

        For an official-layout file without `config`/`anchors`, the official 576 configuration and the official
        average anchors are assumed; explicit files always win over what a checkpoint carries.
        """
        if checkpoint is None:
            if not BUNDLED_MODEL.is_file():
                raise CheckpointError(f"the bundled model is missing ({BUNDLED_MODEL}); pass a checkpoint "
                                      f"(--ckpt) such as the official lirbsm_576.pth")
            checkpoint = BUNDLED_MODEL
        path = Path(checkpoint)
        ck = read_checkpoint(path)
        if config is not None:
            cfg = load_config(config)
        elif ck.config is not None:
            cfg = ModelConfig.from_dict(ck.config, source=f"{path} (embedded config)")
        else:
            cfg = load_config(None)
        if anchors is not None:
            avg = load_anchor_array(anchors)
        elif ck.average_anchors is not None:
            avg = ck.average_anchors
        else:
            avg = OFFICIAL_AVERAGE_ANCHORS
        if max(cfg.anchor_indices) >= len(avg):
            raise CheckpointError(f"config anchor_indices {list(cfg.anchor_indices)} do not fit {len(avg)} anchors")
        used = np.asarray(avg, float)[list(cfg.anchor_indices)]
        if not np.isfinite(used).all() or np.ptp(used, axis=0).max() < 1e-6:
            raise CheckpointError(f"{anchors or path}: the average anchors are degenerate (all at one point, or not "
                                  f"finite); give the model's real average anchors (--anchors)")
        net = LocalEnsembleSDF(cfg, torch.as_tensor(np.asarray(avg)[list(cfg.anchor_indices)]))
        expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        check_against_config(ck, cfg, expected, str(path))
        bad = [k for k, v in ck.state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad or not (torch.isfinite(ck.latent_mean).all() and torch.isfinite(ck.latent_std).all()):
            where = ", ".join(bad[:3]) or "latent statistics"
            raise CheckpointError(f"{path}: the weights contain NaN or infinity ({where}); the file is damaged or "
                                  f"from a training run that diverged")
        net.load_state_dict(ck.state_dict)
        dev = resolve_device(device)
        return cls(net, ck.latent_mean, ck.latent_std, ck.mm_per_unit or OFFICIAL_MM_PER_UNIT, str(path),
                   ck.provenance, dev)

    def save(self, path: str | Path, provenance: dict | None = None, official: bool = False) -> Path:
        """Write this model as our self-contained checkpoint (or the official layout with `official=True`)."""
        prov = {**self.provenance, **(provenance or {})}
        return write_checkpoint(path, self.network.state_dict(), self.latent_mean.cpu(), self.latent_std.cpu(),
                                config=self.config.to_dict(), average_anchors=self.average_anchors,
                                mm_per_unit=self.mm_per_unit, provenance=prov, official=official)

    # ---------------------------------------------------------------- properties
    @property
    def config(self) -> ModelConfig:
        return self.network.cfg

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def average_anchors(self) -> np.ndarray:
        return self.network.average_anchors.detach().cpu().double().numpy()

    @property
    def mean_code(self) -> np.ndarray:
        return self.latent_mean.cpu().numpy().copy()

    def sample_code(self, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """latent_mean + latent_std * N(0, 1), drawn from `rng` (a Generator or a seed)."""
        rng = np.random.default_rng(rng)
        eps = rng.standard_normal(self.latent_dim).astype(np.float32)
        return (self.latent_mean.cpu().numpy() + self.latent_std.cpu().numpy() * eps).astype(np.float32)

    # ---------------------------------------------------------------- evaluation
    def _code(self, code) -> torch.Tensor:
        t = _as_tensor(code, self.device, "code").reshape(-1)
        if t.numel() != self.latent_dim:
            raise UserError(f"shape code must have {self.latent_dim} values, got {t.numel()}")
        return t

    def folded(self, code) -> FoldedSDF:
        """The fast evaluator for one code (cached for the last code used)."""
        t = self._code(code)
        key = t.cpu().numpy().tobytes()
        if self._folded_cache is None or self._folded_cache[0] != key:
            self._folded_cache = (key, FoldedSDF(self.network, t))
        return self._folded_cache[1]

    def sdf(self, points, code, chunk_size: int = DEFAULT_CHUNK_SIZE, fast: bool = True):
        """SDF values [N] at `points` [N, 3] (model units) for one shape code."""
        pts = _as_tensor(points, self.device, "points", (3,))
        if fast:
            out = evaluate_chunked(self.folded(code), pts, chunk_size)
        else:
            z = self._code(code)[None]
            with torch.no_grad():
                out = evaluate_chunked(lambda p: self.network(p[None], z)[0][0], pts, chunk_size)
        return _like(out, points)

    def anchors(self, code, mm: bool = False):
        """The six predicted anchors [6, 3] in model units (or mm)."""
        with torch.no_grad():
            a = self.network.predict_anchors(self._code(code)[None])[0]
        return _like(a * (self.mm_per_unit if mm else 1.0), code)

    def volume(self, code, resolution: int = 256, chunk_size: int = DEFAULT_CHUNK_SIZE, method: str = "narrow_band",
               progress=None, fast: bool = True) -> GridResult:
        """The SDF on the [-1, 1]^3 grid ('narrow_band' or 'dense' evaluation)."""
        if resolution < 8:
            raise UserError(f"voxel resolution must be at least 8, got {resolution}")
        if fast:
            fn = self.folded(code)
        else:
            z = self._code(code)[None]

            def fn(p):
                with torch.no_grad():
                    return self.network(p[None], z)[0][0]
        if method == "dense":
            return dense_volume(fn, resolution, chunk_size, self.device, progress)
        if method == "narrow_band":
            return narrow_band_volume(fn, resolution, chunk_size, self.device, progress)
        raise UserError(f"unknown meshing method '{method}' (expected narrow_band or dense)")

    def code_sd(self, code) -> float:
        """How far a code lies from the training codes: the RMS of its per-dimension z-scores (about 1 for a
        training shape; see self_check for what fits give)."""
        c = torch.as_tensor(np.asarray(code, np.float32) if not torch.is_tensor(code) else code).float().reshape(-1)
        z = (c.to(self.latent_mean.device) - self.latent_mean.reshape(-1)) / self.latent_std.reshape(-1)
        return float(z.pow(2).mean().sqrt())

    def mesh(self, code, resolution: int = 256, chunk_size: int = DEFAULT_CHUNK_SIZE, units: str = "model",
             method: str = "narrow_band", progress=None, fast: bool = True) -> trimesh.Trimesh:
        """Marching-cubes surface of one code, in model units or millimetres (`units='mm'`)."""
        if units not in ("model", "mm"):
            raise UserError(f"units must be 'model' or 'mm', got '{units}'")
        grid = self.volume(code, resolution, chunk_size, method, progress, fast)
        try:
            verts, faces = extract_mesh(grid)
        except ValueError as exc:
            raise UserError(f"cannot mesh this shape code: {exc}") from None
        if units == "mm":
            verts = verts * self.mm_per_unit
        return trimesh.Trimesh(verts, faces, process=False)

    def describe(self) -> dict:
        """A short summary for logs and reports."""
        return {"source": self.source, "latent_dim": self.latent_dim, "mm_per_unit": self.mm_per_unit,
                "device": str(self.device), "provenance": self.provenance}
