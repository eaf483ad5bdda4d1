"""Model configuration: the official liRBSM YAML layout read into a small typed value.

Only the architecture keys under `model` are needed to build the network; the rest of an official config
(data, train, loss, optimizer, ...) is kept verbatim in `ModelConfig.raw` for the trainer.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

DEFAULT_CONFIG_PATH = Path(__file__).parent / "configs" / "local_ensembled_deep_sdf_576.yaml"

# (path in the YAML, python type) of every key the network needs.
_REQUIRED = [
    (("model", "local_ensembled_deep_sdf", "input_dim"), int),
    (("model", "local_ensembled_deep_sdf", "output_dim"), int),
    (("model", "local_ensembled_deep_sdf", "global_latent_dim"), int),
    (("model", "local_ensembled_deep_sdf", "local_latent_dim"), int),
    (("model", "local_ensembled_deep_sdf", "hidden_dim"), int),
    (("model", "local_ensembled_deep_sdf", "num_layers"), int),
    (("model", "local_ensembled_deep_sdf", "blending", "sigma"), float),
    (("model", "local_ensembled_deep_sdf", "blending", "const"), float),
    (("model", "local_ensembled_deep_sdf", "anchor_indices"), list),
    (("model", "anchor_mlp", "hidden_dim"), int),
]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the local ensembled DeepSDF (defaults: the official 576-d model)."""

    input_dim: int = 3
    output_dim: int = 1
    global_latent_dim: int = 128
    local_latent_dim: int = 64
    hidden_dim: int = 200
    num_layers: int = 4
    sigma: float = 0.25
    const: float = 0.2
    anchor_indices: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    anchor_mlp_hidden_dim: int = 256
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_indices)

    @property
    def ensemble_size(self) -> int:
        """One member per anchor plus the background member (global coordinates)."""
        return self.num_anchors + 1

    @property
    def latent_dim(self) -> int:
        return self.global_latent_dim + self.ensemble_size * self.local_latent_dim

    @property
    def member_input_dim(self) -> int:
        return self.input_dim + self.global_latent_dim + self.local_latent_dim

    @property
    def skip_layer(self) -> int:
        """Index of the linear layer whose input re-concatenates the member input."""
        return self.num_layers // 2

    @classmethod
    def from_dict(cls, cfg: dict, source: str = "config") -> "ModelConfig":
        """Validate an official-layout config dict; `source` names it in error messages."""
        if not isinstance(cfg, dict):
            raise ConfigError(f"{source}: expected a YAML mapping with a 'model' section, got {type(cfg).__name__}")
        values = {}
        for keys, kind in _REQUIRED:
            node: Any = cfg
            for depth, key in enumerate(keys):
                if not isinstance(node, dict) or key not in node:
                    raise ConfigError(f"{source}: missing key '{'.'.join(keys[:depth + 1])}' "
                                      f"(expected the official liRBSM layout, e.g. {DEFAULT_CONFIG_PATH.name})")
                node = node[key]
            if kind is float and isinstance(node, int) and not isinstance(node, bool):
                node = float(node)
            if not isinstance(node, kind) or isinstance(node, bool):
                raise ConfigError(f"{source}: key '{'.'.join(keys)}' must be {kind.__name__}, got {node!r}")
            values[keys[-1] if keys[-2] != "anchor_mlp" else "anchor_mlp_hidden_dim"] = node
        indices = values["anchor_indices"]
        if not indices or not all(isinstance(i, int) and 0 <= i for i in indices) or len(set(indices)) != len(indices):
            raise ConfigError(f"{source}: 'model.local_ensembled_deep_sdf.anchor_indices' must be distinct "
                              f"non-negative integers, got {indices!r}")
        for name in ("input_dim", "output_dim", "global_latent_dim", "local_latent_dim", "hidden_dim",
                     "num_layers", "anchor_mlp_hidden_dim"):
            if values[name] <= 0:
                raise ConfigError(f"{source}: '{name}' must be positive, got {values[name]}")
        if values["num_layers"] < 2 or values["hidden_dim"] <= values["input_dim"] + values["global_latent_dim"] \
                + values["local_latent_dim"]:
            raise ConfigError(f"{source}: 'hidden_dim' must exceed the member input size "
                              f"(input_dim + global_latent_dim + local_latent_dim) and 'num_layers' must be >= 2")
        if values["sigma"] <= 0:
            raise ConfigError(f"{source}: 'blending.sigma' must be positive, got {values['sigma']}")
        values["anchor_indices"] = tuple(indices)
        return cls(raw=copy.deepcopy(cfg), **values)

    def to_dict(self) -> dict:
        """The official YAML layout (architecture keys refreshed from this value)."""
        cfg = copy.deepcopy(self.raw) if self.raw else load_config_dict(DEFAULT_CONFIG_PATH)
        ens = cfg.setdefault("model", {}).setdefault("local_ensembled_deep_sdf", {})
        ens.update(input_dim=self.input_dim, output_dim=self.output_dim, global_latent_dim=self.global_latent_dim,
                   local_latent_dim=self.local_latent_dim, hidden_dim=self.hidden_dim, num_layers=self.num_layers,
                   blending={"sigma": self.sigma, "const": self.const}, anchor_indices=list(self.anchor_indices))
        cfg["model"].setdefault("anchor_mlp", {})["hidden_dim"] = self.anchor_mlp_hidden_dim
        cfg.setdefault("module", "local_ensembled_deep_sdf")
        return cfg


def load_config_dict(path: str | Path) -> dict:
    """Read a YAML file into a dict, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid YAML file ({exc.__class__.__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return data


def load_config(path: str | Path | None = None) -> ModelConfig:
    """The model config from an official-layout YAML file; None gives the official 576 configuration."""
    path = DEFAULT_CONFIG_PATH if path is None else Path(path)
    return ModelConfig.from_dict(load_config_dict(path), source=str(path))
