"""Options as dataclasses: every default defined once, here, and turned into command-line flags, batch-manifest
columns and child-process arguments by the same three functions (`add_options`, `from_args`, `to_args`).

A field's metadata carries its help text (and `type`/`choices` where the default does not tell them). Torch-free,
so the Slicer modules import it before torch is installed.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from .errors import UserError

BUNDLED_MODEL_NAME = "lirbsm_synthetic_576.pth"
CHEST_WALL_MODEL_NAME = "chest_wall_pca.npz"     # measure/chest_model.py, beside the bundled model
CHEST_WALL_METHODS = ("footprint_plane", "envelope_pspline", "chest_model")   # the estimators (measure/)
CHEST_WALL_AUTO = "auto"          # the chest model where the skin is like the torsos it learned from, else the plane
CHEST_WALL_CHOICES = (CHEST_WALL_AUTO,) + CHEST_WALL_METHODS   # the first is the default (bench/measure_accuracy.py:
                                  # on exact surfaces, scan fits and video results the chest model is the closest wall)
DEFAULT_CHUNK_SIZE = 65536
MAX_VOXEL_RESOLUTION = 1024


def option(default: Any, help: str, *, type=None, choices=None, cli: bool = True):
    """A dataclass field that is also a `--name` flag (`cli=False`: API only)."""
    return field(default=default, metadata={"help": help, "type": type, "choices": choices, "cli": cli})


def _value_type(f) -> type:
    t = f.metadata.get("type")
    return t if t is not None else type(f.default)


def option_fields(cls_or_obj, skip=()) -> list:
    return [f for f in fields(cls_or_obj) if "help" in f.metadata and f.metadata.get("cli", True)
            and f.name not in skip]


def add_options(parser, cls, title: str | None = None, skip=(), defaults: dict | None = None):
    """Add one `--<field>` flag per option of `cls` (booleans as --x/--no-x) to `parser` (in a group `title`)."""
    g = parser.add_argument_group(title) if title else parser
    defaults = defaults or {}
    for f in option_fields(cls, skip):
        default = defaults.get(f.name, f.default)
        kw: dict = {"default": default, "help": f.metadata["help"]}
        t = _value_type(f)
        if t is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = t
            if f.metadata.get("choices"):
                kw["choices"] = f.metadata["choices"]
            if default is not None:
                kw["help"] += f" (default: {default})"
        g.add_argument(f"--{f.name}", **kw)
    return g


def from_args(cls, args: argparse.Namespace, **extra):
    """The `cls` options a parsed command line holds (fields it lacks keep their defaults)."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **extra})


def to_args(obj) -> list[str]:
    """Command-line flags for the options of `obj` (nested dataclasses included) that differ from the defaults."""
    out: list[str] = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            out += to_args(value)
            continue
        if "help" not in f.metadata or not f.metadata.get("cli", True) or value == f.default or value is None:
            continue
        if isinstance(value, bool):
            out.append(f"--{f.name}" if value else f"--no-{f.name}")
        else:
            out += [f"--{f.name}", str(value)]
    return out


def _convert(f, text: str, where: str):
    t = _value_type(f)
    try:
        if t is bool:
            low = text.strip().lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(text)
            value = low in ("1", "true", "yes", "on")
        elif t is Path:
            value = Path(text)
        else:
            value = t(text)
    except ValueError:
        raise UserError(f"{where}: '{text}' is not a valid {t.__name__} for option {f.name}") from None
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise UserError(f"{where}: option {f.name} must be one of {', '.join(map(str, choices))}, got '{text}'")
    return value


def option_names(obj) -> set[str]:
    names = set()
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            names |= option_names(value)
        elif "help" in f.metadata and f.metadata.get("cli", True):
            names.add(f.name)
    return names


def with_overrides(obj, values: dict[str, str], where: str = "options"):
    """A copy of `obj` with options given as text (e.g. batch-manifest columns); empty text keeps the value.
    Names are searched in nested dataclasses too; an unknown name is a user error naming it."""
    unknown = [k for k, v in values.items() if v not in (None, "") and k not in option_names(obj)]
    if unknown:
        raise UserError(f"{where}: unknown option(s) {', '.join(sorted(unknown))}")
    changes = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            changes[f.name] = with_overrides(value, {k: v for k, v in values.items() if k in option_names(value)},
                                             where)
        elif f.name in values and values[f.name] not in (None, "") and "help" in f.metadata:
            changes[f.name] = _convert(f, str(values[f.name]), where)
    return replace(obj, **changes)


def as_dict(obj) -> dict:
    """Plain JSON-able values, for reports and step stamps."""
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = as_dict(v) if is_dataclass(v) else (str(v) if isinstance(v, Path) else v)
    return out


def from_dict(obj, data: dict):
    """A copy of `obj` with the values `as_dict` wrote (e.g. read back from a saved scene); names it does not know
    (an older or newer version's) are ignored."""
    changes = {}
    for f in fields(obj):
        if f.name not in (data or {}):
            continue
        value = getattr(obj, f.name)
        changes[f.name] = from_dict(value, data[f.name]) if is_dataclass(value) else data[f.name]
    return replace(obj, **changes)


def check_range(name: str, value, lo=None, hi=None) -> None:
    """A user error naming the option when `value` is outside [lo, hi]."""
    if value is None:
        return
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        where = f"between {lo} and {hi}" if lo is not None and hi is not None else \
            (f"at least {lo}" if lo is not None else f"at most {hi}")
        raise UserError(f"--{name} must be {where}, got {value}")


# ----------------------------------------------------------------------------------------------- shared options
@dataclass
class ModelOptions:
    """Which shape model, on which device."""
    ckpt: Path | None = option(None, f"checkpoint: an official liRBSM .pth or one of ours (default: the bundled "
                                     f"model, {BUNDLED_MODEL_NAME})", type=Path)
    config: Path | None = option(None, "model config YAML in the official layout (default: embedded in our "
                                       "checkpoints; the official local_ensembled_deep_sdf_576 for official "
                                       "checkpoints)", type=Path)
    anchors: Path | None = option(None, "average anchors (.pt as in the official artifacts/, .npy, or .txt/.csv "
                                        "with 6 rows x y z; default: embedded, or the official average anchors)",
                                  type=Path)
    device: str = option("auto", "cpu, cuda, cuda:N, mps or auto (cuda if available, else mps, else cpu)")

    def load(self):
        from .shape_model import ShapeModel
        return ShapeModel.load(self.ckpt, self.config, self.anchors, self.device)


def mesh_memory_mb(resolution: int, meshing: str = "narrow_band") -> float:
    """Peak memory of meshing one shape, measured (2-core CPU, bundled model): narrow band 0.59 GB at 256,
    2.4 GB at 512, 16.4 GB at 1024 (about 350 MB + 15 bytes per voxel); dense 0.40 GB at 256 (8 bytes taken)."""
    per_voxel = 15.0 if meshing == "narrow_band" else 8.0
    return 350.0 + per_voxel * resolution ** 3 / 2 ** 20


def physical_memory_mb() -> float | None:
    """This machine's memory, or None where the system does not say."""
    import os
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 20
    except (ValueError, OSError, AttributeError):
        return None


@dataclass
class MeshOptions:
    """How a shape code becomes a mesh."""
    voxel_resolution: int = option(256, "marching-cubes grid size per axis")
    chunk_size: int = option(DEFAULT_CHUNK_SIZE, "points per SDF evaluation call")
    meshing: str = option("narrow_band", "narrow_band (fast, same surface) or dense (evaluate every grid point, as "
                                         "the reference)", choices=("narrow_band", "dense"))

    def check(self) -> None:
        check_range("voxel_resolution", self.voxel_resolution, 8, MAX_VOXEL_RESOLUTION)
        check_range("chunk_size", self.chunk_size, 1)
        need, total = mesh_memory_mb(self.voxel_resolution, self.meshing), physical_memory_mb()
        if total and need > 0.9 * total:
            fits = max(r for r in (64, 128, 192, 256, 384, 512, 768, 1024)
                       if r == 64 or mesh_memory_mb(r, self.meshing) <= 0.9 * total)
            raise UserError(f"--voxel_resolution {self.voxel_resolution} needs about {need / 1024:.1f} GB of memory "
                            f"({self.meshing} meshing) and this machine has {total / 1024:.1f} GB; use "
                            f"--voxel_resolution {fits} or less")

    def memory_warning(self) -> str | None:
        """A note for the command line when meshing will take much memory (a third of this machine or more)."""
        need, total = mesh_memory_mb(self.voxel_resolution, self.meshing), physical_memory_mb()
        if need >= 2048 or (total and need > total / 3):
            return (f"--voxel_resolution {self.voxel_resolution} needs about {need / 1024:.1f} GB of memory "
                    f"({self.meshing} meshing" + (f"; this machine has {total / 1024:.1f} GB)" if total else ")"))
        return None


@dataclass
class FitOptions:
    """Fitting a code to points with six landmarks: the shared part of the scan and video fits."""
    latent_weight: float | None = option(0.05, "weight of ||z||^2, the pull towards the mean shape (scans without "
                                               "landmarks: AUTO_LATENT_WEIGHT unless set)", type=float)
    anchor_weight: float = option(-1.0, "weight of the predicted-anchor-to-landmark term; negative: none")
    nipple_to_nipple_dist: float | None = option(None, "measured straight-line nipple-to-nipple distance in mm: "
                                                       "metric scale from it (implies metrical output)", type=float)
    iterations: int = option(1000, "optimisation iterations")
    points_per_iteration: int = option(1000, "points drawn per iteration")
    seed: int = option(0, "random seed of the fit")

    def check(self) -> None:
        check_range("iterations", self.iterations, 1)
        check_range("points_per_iteration", self.points_per_iteration, 1)
        check_range("latent_weight", self.latent_weight, 0)
        if self.nipple_to_nipple_dist is not None and not 50 <= self.nipple_to_nipple_dist <= 500:
            raise UserError(f"--nipple_to_nipple_dist is in mm and must be within 50-500, got "
                            f"{self.nipple_to_nipple_dist}")

    def settings(self, latent_weight: float, with_landmarks: bool = True):
        """The optimiser's settings (torch-side dataclass)."""
        from .fitting import FitSettings
        return FitSettings(iterations=self.iterations, points_per_iteration=self.points_per_iteration,
                           latent_weight=latent_weight,
                           anchor_weight=max(self.anchor_weight, 0.0) if with_landmarks else 0.0, seed=self.seed)


AUTO_LATENT_WEIGHT = 0.01     # scans aligned without landmarks: a looser pull to the mean (bench/auto_landmarks.py)


@dataclass
class ScanOptions(FitOptions, MeshOptions):
    """`reconstruct` / `run_scan`: a scan or point cloud with six landmarks."""
    # bench/cross_source.py (held-out generator, Anny and official-mean torsos): 0.01 with the anchor term fits
    # 0.57 / 0.49 / 0.48 mm in the breast region; the reference tool's 0.05 without it 2.21 / 0.49 / 0.88 mm
    latent_weight: float | None = option(0.01, "weight of ||z||^2, the pull towards the mean shape (the reference "
                                               "tool's is 0.05)", type=float)
    anchor_weight: float = option(1.0, "weight of the predicted-anchor-to-landmark term; negative: none (the "
                                       "reference tool's default)")
    max_points: int = option(200_000, "points kept from the input / sampled on a mesh")
    metrical: bool = option(False, "write the result in millimetres in the model frame instead of the input frame")
    measure: bool = option(False, "also measure the result (millimetres): footprints, volumes, distances, symmetry "
                                  "-> measurements.json/.csv/.pdf (experimental, see the README)")
    orientation: str = option("auto", "without --landmarks: 'auto' finds the torso's pose, scale and position from "
                                      "the model's mean surface (any orientation; the fitted anchors are the "
                                      "landmarks found); 'as_is' takes the input as already in the model's "
                                      "orientation", choices=("auto", "as_is"))

    def check(self) -> None:
        FitOptions.check(self)
        MeshOptions.check(self)
        check_range("max_points", self.max_points, 10)
