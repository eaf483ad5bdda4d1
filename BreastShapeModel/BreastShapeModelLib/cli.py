"""Command line: `python -m BreastShapeModelLib <command> ...` (run with --help for every option).

Commands mirror the reference liRBSM tools: `sample` random shapes, `mean` shape, `interpolate` between two
codes, `info` about a checkpoint. User errors print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import errno
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from .errors import UserError
from .fileio import atomic_write_text, staged_set, staged_to_final
from .mesh_io import write_shape
from .progress import MODES, Progress
from .options import MeshOptions, ModelOptions, add_options, from_args

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def _model_options(p: argparse.ArgumentParser) -> None:
    add_options(p, ModelOptions, "model")


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output_dir", type=Path, default=Path("."), help="where to write the results (default: .)")
    p.add_argument("--progress", choices=MODES, default="bar",
                   help="bar (terminal), json (one JSON event per line on stdout, for Slicer) or none")


def _mesh_options(p: argparse.ArgumentParser) -> None:
    g = add_options(p, MeshOptions, "meshing")
    g.add_argument("--metrical", action="store_true",
                   help="write meshes and anchors in millimetres (model units x the model's mm per unit, "
                        "291.77 for the official model) instead of model units")
    _output_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m BreastShapeModelLib",
        description="liRBSM neural parametric breast shape model: sample, mesh and inspect shapes.",
        epilog="Outputs per shape: <name>.ply, <name>_anchors.mrk.json (Slicer markups), <name>_anchors.csv "
               "(one x,y,z row per landmark: sternal notch, belly button, left nipple, right nipple, left coracoid, "
               "right coracoid) and <name>_code.npy (the shape code).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True

    p = sub.add_parser("sample", help="random shapes: latent_mean + latent_std * N(0, 1)",
                       description="Sample N random shapes from the model and mesh them.")
    p.add_argument("num_samples", type=int, help="number of shapes to sample")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random; the one used is recorded)")
    _model_options(p)
    _mesh_options(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("mean", help="the mean shape (latent_mean)", description="Mesh the model's mean shape.")
    _model_options(p)
    _mesh_options(p)
    p.set_defaults(func=cmd_mean)

    p = sub.add_parser("interpolate", help="shapes along a straight line between two codes",
                       description="Linearly interpolate between two shape codes (random ones from --seed unless "
                                   "--code_a/--code_b give .npy files) and mesh each step.")
    p.add_argument("--steps", type=int, default=5, help="number of shapes including both ends (5)")
    p.add_argument("--code_a", type=Path, default=None, help="first code (.npy with latent_dim values)")
    p.add_argument("--code_b", type=Path, default=None, help="second code (.npy with latent_dim values)")
    p.add_argument("--seed", type=int, default=None, help="random seed for codes not given")
    _model_options(p)
    _mesh_options(p)
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("info", help="describe a checkpoint", description="Print what a checkpoint contains.")
    _model_options(p)
    p.set_defaults(func=cmd_info)

    from . import cli_data, cli_fit, cli_measure, cli_train
    cli_fit.add_parser(sub, _model_options, _output_options)
    cli_measure.add_parsers(sub)
    cli_data.add_parsers(sub)
    cli_train.add_parsers(sub)
    return parser


# ------------------------------------------------------------------ commands
def _load(args):
    return from_args(ModelOptions, args).load()


def _check_mesh_args(args) -> None:
    from_args(MeshOptions, args).check()


def _mesh_codes(model, codes: list[np.ndarray], names: list[str], args, progress: Progress,
                extra: dict) -> list[str]:
    """Mesh every code and write its files; returns the written paths."""
    units = "mm" if args.metrical else "model"
    written, shapes = [], []
    t0 = time.perf_counter()
    from .workspace import Workspace
    with Workspace(args.output_dir).lock(), staged_set(args.output_dir) as stage:   # one run; all shapes or none
        with progress.stage("meshing", total=len(codes), unit="shape") as update:
            for i, (code, name) in enumerate(zip(codes, names)):
                def on_grid(fraction, message, i=i):
                    update(i + fraction, f"{name}: {message}")
                t = time.perf_counter()
                mesh = model.mesh(code, args.voxel_resolution, args.chunk_size, units, args.meshing, on_grid)
                anchors = model.anchors(code, mm=args.metrical)
                written += write_shape(mesh, anchors, stage / name, code, units="mm")
                shapes.append({"name": name, "vertices": len(mesh.vertices), "faces": len(mesh.faces),
                               "watertight": bool(mesh.is_watertight), "seconds": round(time.perf_counter() - t, 3),
                               "anchors": np.asarray(anchors).round(6).tolist()})
                update(i + 1, name)
        summary = {"model": model.describe(), "units": units, "mm_per_unit": model.mm_per_unit,
                   "voxel_resolution": args.voxel_resolution, "meshing": args.meshing, "shapes": shapes,
                   "total_seconds": round(time.perf_counter() - t0, 3), **extra}
        written.append(atomic_write_text(stage / f"{args.command}_info.json", json.dumps(summary, indent=2)))
        written = staged_to_final(written, stage, args.output_dir)
    progress.summary(f"wrote {len(codes)} shape(s) to {args.output_dir} ({summary['total_seconds']:.1f} s)")
    progress.result(files=written)
    return written


def cmd_sample(args, progress: Progress) -> int:
    if args.num_samples < 1:
        raise UserError(f"number of samples must be at least 1, got {args.num_samples}")
    _check_mesh_args(args)
    model = _load(args)
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % (2 ** 31))
    rng = np.random.default_rng(seed)
    codes = [model.sample_code(rng) for _ in range(args.num_samples)]
    _mesh_codes(model, codes, [f"sample_{i}" for i in range(args.num_samples)], args, progress, {"seed": seed})
    return 0


def cmd_mean(args, progress: Progress) -> int:
    _check_mesh_args(args)
    model = _load(args)
    _mesh_codes(model, [model.mean_code], ["mean_shape"], args, progress, {})
    return 0


def _read_code(path: Path, dim: int) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"code file not found: {path}")
    try:
        code = np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)
    except Exception as exc:
        raise UserError(f"{path}: cannot read a shape code ({exc.__class__.__name__}: {exc})") from None
    if code.size != dim or not np.isfinite(code).all():
        raise UserError(f"{path}: expected {dim} finite values, got {code.size}")
    return code


def cmd_interpolate(args, progress: Progress) -> int:
    if args.steps < 2:
        raise UserError(f"--steps must be at least 2, got {args.steps}")
    _check_mesh_args(args)
    model = _load(args)
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % (2 ** 31))
    rng = np.random.default_rng(seed)
    a = _read_code(args.code_a, model.latent_dim) if args.code_a else model.sample_code(rng)
    b = _read_code(args.code_b, model.latent_dim) if args.code_b else model.sample_code(rng)
    ts = np.linspace(0.0, 1.0, args.steps)
    codes = [((1 - t) * a + t * b).astype(np.float32) for t in ts]
    _mesh_codes(model, codes, [f"interp_{k}" for k in range(args.steps)], args, progress,
                {"seed": seed, "t": ts.round(6).tolist()})
    return 0


def cmd_info(args, progress: Progress) -> int:
    model = _load(args)
    cfg = model.config
    info = {**model.describe(), "global_latent_dim": cfg.global_latent_dim, "local_latent_dim": cfg.local_latent_dim,
            "ensemble_size": cfg.ensemble_size, "hidden_dim": cfg.hidden_dim, "num_layers": cfg.num_layers,
            "sigma": cfg.sigma, "const": cfg.const, "average_anchors": model.average_anchors.round(6).tolist(),
            "parameters": int(sum(p.numel() for p in model.network.parameters()))}
    print(json.dumps(info, indent=2))
    return 0


class Cancelled(KeyboardInterrupt):
    """SIGTERM (what the Slicer modules' Cancel sends) is handled like Ctrl-C: a clean stop, finished steps kept."""


def _on_sigterm(signum, frame):
    raise Cancelled()


IO_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR}


def dispatch(args, interrupted: str = "interrupted; finished outputs are kept") -> int:
    """Run a parsed command: user errors as one line (exit 2), Ctrl-C as exit 130 and SIGTERM as exit 143, each
    with a JSON `error` event (`cancelled: true` for the two signals); shared by both CLIs. Temporary files are
    removed on the way out (every write goes through a temporary sibling)."""
    import signal
    import threading
    progress = Progress(getattr(args, "progress", "bar"))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
        # Ctrl-C stops cleanly even when started from a parent that ignores SIGINT (a background job inherits
        # SIG_IGN, and Python then installs no KeyboardInterrupt handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if hasattr(args, "voxel_resolution") and hasattr(args, "meshing"):
            from .options import MeshOptions
            note = MeshOptions(args.voxel_resolution, getattr(args, "chunk_size", 65536), args.meshing)
            note.check()
            if (text := note.memory_warning()) is not None:
                progress.warn(text)
        return args.func(args, progress)
    except UserError as exc:
        progress.event("error", message=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Cancelled)
        progress.event("error", message="cancelled" if terminated else "interrupted", cancelled=True)
        print(("cancelled; " + interrupted.split("; ", 1)[-1]) if terminated else interrupted, file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except BrokenPipeError:                     # e.g. `info | head`: the reader left; nothing more to say
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:                      # disk full, read-only, not a folder...: one line, nothing lost
        if exc.errno not in IO_ERRNOS:
            raise
        message = (f"cannot read or write {exc.filename or 'the output folder'}: {exc.strerror}; earlier complete "
                   f"results are kept")
        progress.event("error", message=message)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser().parse_args(argv))
