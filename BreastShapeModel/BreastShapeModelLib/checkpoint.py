"""Reading and writing shape-model checkpoints.

Two layouts, one loader:
- official liRBSM: {'model_state_dict', 'latent_mean', 'latent_std'}; config and average anchors come from
  separate files (or default to the official 576 configuration and anchors);
- ours: the same three keys plus 'format', 'config' (official YAML layout as a dict), 'average_anchors',
  'mm_per_unit' and 'provenance', so one file is the whole model.
Everything is read with torch.load(weights_only=True): a pickle that tries to run code is refused.
"""
from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import ModelConfig
from .errors import CheckpointError
from .fileio import atomic_path

FORMAT_NAME = "slicer-breast-shape-model"
FORMAT_VERSION = 1
# Average normalisation of the official training set: 1 / (2 * 0.0017137007706792716) mm per model unit.
OFFICIAL_MM_PER_UNIT = 1.0 / (2.0 * 0.0017137007706792716)


@dataclass
class CheckpointData:
    """What a checkpoint holds, whatever its layout."""

    state_dict: dict
    latent_mean: torch.Tensor
    latent_std: torch.Tensor
    config: dict | None = None
    average_anchors: np.ndarray | None = None
    mm_per_unit: float | None = None
    provenance: dict = field(default_factory=dict)
    is_official_layout: bool = True


def read_checkpoint(path: str | Path) -> CheckpointData:
    """Load either layout from `path`, with one clear error for a missing, corrupt or unsafe file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")         # torch warns about pickle protocols before failing cleanly
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise CheckpointError(f"{path}: refused to load: the file would import '{found.group(1)}' (it holds "
                                  f"Python objects or code, not just weights)") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unsupported pickle content)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(f"{path}: not a valid PyTorch checkpoint (corrupt or truncated: {first[:160]})") from None
    if not isinstance(data, dict) or "model_state_dict" not in data:
        keys = sorted(data)[:6] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: not a liRBSM checkpoint: expected keys 'model_state_dict', 'latent_mean', "
                              f"'latent_std' (found {keys})")
    for key in ("latent_mean", "latent_std"):
        if not isinstance(data.get(key), torch.Tensor):
            raise CheckpointError(f"{path}: checkpoint lacks the tensor '{key}'")
    state = data["model_state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'model_state_dict' must map parameter names to tensors")
    ours = data.get("format") == FORMAT_NAME
    if ours and int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer SlicerBreastShape (format version "
                              f"{data.get('format_version')}); please update the extension")
    anchors = data.get("average_anchors")
    return CheckpointData(
        state_dict=state,
        latent_mean=data["latent_mean"].float().reshape(-1),
        latent_std=data["latent_std"].float().reshape(-1),
        config=data.get("config") if ours else None,
        average_anchors=anchors.double().numpy() if isinstance(anchors, torch.Tensor) else None,
        mm_per_unit=float(data["mm_per_unit"]) if ours and data.get("mm_per_unit") is not None else None,
        provenance=dict(data.get("provenance") or {}) if ours else {},
        is_official_layout=not ours,
    )


def check_against_config(ckpt: CheckpointData, cfg: ModelConfig, expected_shapes: dict, source: str) -> None:
    """Raise a clear error when the weights do not fit the architecture the config describes."""
    missing = sorted(set(expected_shapes) - set(ckpt.state_dict))
    extra = sorted(set(ckpt.state_dict) - set(expected_shapes))
    if missing or extra:
        raise CheckpointError(f"{source}: parameter names do not match the liRBSM architecture "
                              f"(missing: {missing[:4]}, unexpected: {extra[:4]})")
    for name, shape in expected_shapes.items():
        got = tuple(ckpt.state_dict[name].shape)
        if got != tuple(shape):
            raise CheckpointError(f"{source}: '{name}' has shape {got} but the config implies {tuple(shape)}; "
                                  f"pass the config the checkpoint was trained with (--config)")
    for key in ("latent_mean", "latent_std"):
        n = getattr(ckpt, key).numel()
        if n != cfg.latent_dim:
            raise CheckpointError(f"{source}: '{key}' has {n} values but the config's shape code has "
                                  f"{cfg.latent_dim}")


def write_checkpoint(path: str | Path, state_dict: dict, latent_mean, latent_std, *, config: dict | None = None,
                     average_anchors=None, mm_per_unit: float | None = None, provenance: dict | None = None,
                     official: bool = False) -> Path:
    """Write our self-contained layout (default) or the official one (`official=True`), atomically."""
    data = {
        "model_state_dict": {k: v.detach().cpu().float().contiguous() for k, v in state_dict.items()},
        "latent_mean": torch.as_tensor(latent_mean, dtype=torch.float32).reshape(-1).clone(),
        "latent_std": torch.as_tensor(latent_std, dtype=torch.float32).reshape(-1).clone(),
    }
    if not official:
        data.update({
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": config,
            "average_anchors": torch.as_tensor(np.asarray(average_anchors), dtype=torch.float64).clone(),
            "mm_per_unit": float(mm_per_unit) if mm_per_unit is not None else None,
            "provenance": dict(provenance or {}),
        })
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return Path(path)
