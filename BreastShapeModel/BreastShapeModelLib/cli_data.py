"""Data commands: `synth` (synthetic torsos or a contact sheet), `preprocess` (scans -> HDF5), `anchors`."""
from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .errors import UserError
from .fileio import atomic_path
from .progress import MODES, Progress


def add_parsers(sub) -> None:
    p = sub.add_parser("synth", help="synthetic anatomically calibrated torsos (meshes, landmarks, ground truth)",
                       description="Generate N synthetic torsos into --output_dir as <name>.ply (mm), "
                                   "landmarks/<name>.txt and <name>.json (parameters and ground truth), or, with "
                                   "--sheet, a contact sheet PNG of random torsos. Finished torsos are skipped "
                                   "on re-runs.")
    p.add_argument("num", type=int, nargs="?", default=None, help="number of torsos (sheet: default 12)")
    p.add_argument("--output_dir", type=Path, default=None, help="where to write the torsos")
    p.add_argument("--seed", type=int, default=0, help="random seed; torso i depends only on (seed, i) (0)")
    p.add_argument("--start", type=int, default=0, help="index of the first torso (0)")
    p.add_argument("--sheet", type=Path, default=None, help="write a contact sheet PNG of random torsos instead")
    p.add_argument("--spacing", type=float, default=2.5, help="marching-cubes spacing in mm (2.5)")
    p.add_argument("--mean", action="store_true", help="write the mean-parameter torso (named mean_torso)")
    p.add_argument("--source", choices=("generator", "anny", "mix"), default="generator",
                   help="anatomy source: our procedural generator (default), the Anny body model (pip install "
                        "anny), or a mix (even torsos generator, odd torsos Anny)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes (all cores)")
    p.add_argument("--progress", choices=MODES, default="bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("preprocess", help="watertight scans + landmarks -> training HDF5 (method's layout)",
                       description="Scale each .ply/.obj scan into [-0.5, 0.5]^3 (bounding-box centre, padding), "
                                   "sample surface points and normals, and store them with the landmarks read "
                                   "from <dir>/landmarks/<name>.txt. Unusable scans are skipped and listed.")
    p.add_argument("dataset_dir", type=Path)
    p.add_argument("--output", type=Path, default=Path("dataset.hdf5"), help="HDF5 file (dataset.hdf5)")
    p.add_argument("--padding", type=float, default=0.1, help="padding inside the unit cube (0.1)")
    p.add_argument("--num_points", type=int, default=100_000, help="surface points per scan (100000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--progress", choices=MODES, default="bar")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("anchors", help="average anchors of a dataset (mean landmarks x 2, model units)")
    p.add_argument("dataset", type=Path, help="HDF5 from `preprocess`")
    p.add_argument("--output", type=Path, default=Path("average_anchors.npy"), help=".npy, .pt or .txt")
    p.add_argument("--progress", choices=MODES, default="bar")
    p.set_defaults(func=cmd_anchors)


def _synth_one(job):
    from . import synth
    index, seed, out_dir, spacing, source = job
    name = synth.torso_name(index)
    if synth.is_done(out_dir, name):
        return name, "skipped"
    try:
        t = synth.generate(index, seed, spacing, source=source)
    except RuntimeError as exc:                    # one impossible torso must not stop a long batch
        return name, f"failed: {exc}"
    synth.write_torso(t, out_dir, name)
    return name, "written"


def _pool_map(fn, jobs, workers: int, update):
    """Run jobs in processes (or inline for one worker), reporting each finished one."""
    results = []
    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            results.append(fn(job))
            update(i + 1)
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i, r in enumerate(pool.map(fn, jobs)):
            results.append(r)
            update(i + 1)
    return results


def cmd_synth(args, progress: Progress) -> int:
    from . import synth
    if args.spacing <= 0.5 or args.spacing > 10:
        raise UserError(f"--spacing must be in (0.5, 10] mm, got {args.spacing}")
    if args.sheet is not None:
        return _sheet(args, progress)
    if args.output_dir is None:
        raise UserError("synth needs --output_dir (or --sheet out.png)")
    if args.mean:
        if args.source == "mix":
            raise UserError("--mean needs one source: --source generator or --source anny")
        t = synth.mean_torso(args.spacing, args.source)
        files = synth.write_torso(t, args.output_dir, "mean_torso")
        progress.result(files=[str(f) for f in files])
        return 0
    if args.num is None or args.num < 1:
        raise UserError(f"number of torsos must be at least 1, got {args.num}")
    if args.source != "generator":
        from . import anny_source
        anny_source.model()                  # the one clear message when anny is missing, before any work
    jobs = [(args.start + i, args.seed, args.output_dir, args.spacing, args.source) for i in range(args.num)]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with progress.stage("synth", total=len(jobs), unit="torso") as update:
        results = _pool_map(_synth_one, jobs, args.workers, update)
    written = sum(1 for _, s in results if s == "written")
    failed = [f"{n}: {s}" for n, s in results if s.startswith("failed")]
    for line in failed:
        print(line, file=sys.stderr)
    progress.summary(f"{written} torsos written, {len(results) - written - len(failed)} already there, "
                 f"{len(failed)} failed, to {args.output_dir} ({time.perf_counter() - t0:.1f} s)")
    progress.result(output_dir=str(args.output_dir), written=written, failed=failed)
    if failed:
        raise UserError(f"{len(failed)} of {len(results)} torsos could not be built (listed above); "
                        f"re-run to retry, or use another --seed")
    return 0


def _sheet(args, progress: Progress) -> int:
    from . import render, synth
    n = args.num or 12
    tiles, labels = [], []
    with progress.stage("sheet", total=n, unit="torso") as update:
        for i in range(n):
            t = synth.generate(args.start + i, args.seed, max(args.spacing, 3.0), source=args.source)
            c = t.mesh.vertices.mean(0)
            ext = (c - 300, c + 300)
            tiles += render.mesh_views(t.mesh, size=200, samples=120_000, extent=ext)
            v = t.truth["breast_volume_ml"]
            if hasattr(t.params, "breasts"):
                grades = [t.params.breasts[s].ptosis_grade for s in ("left", "right")]
                second = f"ptosis L{grades[0]} R{grades[1]}"
            else:
                second = "Anny, cup L{left:.2f} R{right:.2f}".format(**t.params.cup)
            labels += [f"#{args.start + i} L{v['left']:.0f} R{v['right']:.0f} ml", second]
            update(i + 1)
    render.save_png(render.sheet(tiles, columns=8, labels=labels), args.sheet)
    progress.summary(f"wrote {args.sheet}")
    progress.result(files=[str(args.sheet)])
    return 0


def _process_one(job):
    from .dataset import process_scan
    path, padding, num_points, seed = job
    try:
        return process_scan(path, padding, num_points, seed)
    except UserError as exc:
        return str(exc)


def cmd_preprocess(args, progress: Progress) -> int:
    from .dataset import find_scans, write_hdf5
    if not 0 <= args.padding < 1:
        raise UserError(f"--padding must be in [0, 1), got {args.padding}")
    if args.num_points < 100:
        raise UserError(f"--num_points must be at least 100, got {args.num_points}")
    scans = find_scans(args.dataset_dir)
    jobs = [(p, args.padding, args.num_points, args.seed + i) for i, p in enumerate(scans)]
    with progress.stage("preprocess", total=len(jobs), unit="scan") as update:
        results = _pool_map(_process_one, jobs, args.workers, update)
    shapes = [r for r in results if not isinstance(r, str)]
    skipped = [r for r in results if isinstance(r, str)]
    if not shapes:
        raise UserError(f"{args.dataset_dir}: no usable scans ({len(skipped)} skipped: {'; '.join(skipped[:3])})")
    write_hdf5(args.output, shapes, args.padding)
    for reason in skipped:                         # always listed, whatever the progress mode
        print(f"skipped {reason}", file=sys.stderr)
        progress.event("log", message=f"skipped {reason}")
    scale = float(np.mean([s.scale for s in shapes]))
    progress.summary(f"wrote {len(shapes)} shapes to {args.output}; {len(skipped)} skipped; "
                 f"mm per model unit {1 / (2 * scale):.2f}")
    progress.result(files=[str(args.output)], shapes=len(shapes), skipped=skipped)
    return 0


def cmd_anchors(args, progress: Progress) -> int:
    from .dataset import read_hdf5
    data = read_hdf5(args.dataset)
    anchors = data.average_anchors()
    suffix = args.output.suffix.lower()
    with atomic_path(args.output) as tmp:
        if suffix == ".npy":
            np.save(tmp, anchors)
        elif suffix in (".pt", ".pth"):
            import torch
            torch.save(torch.from_numpy(anchors), tmp)
        elif suffix in (".txt", ".csv"):
            sep = "," if suffix == ".csv" else " "
            tmp.write_text("".join(sep.join(f"{v:.8f}" for v in row) + "\n" for row in anchors))
        else:
            raise UserError(f"{args.output}: unknown anchors format (use .npy, .pt, .txt or .csv)")
    progress.summary(f"average anchors of {len(data)} shapes -> {args.output}")
    progress.result(files=[str(args.output)], anchors=anchors.round(6).tolist())
    print(json.dumps({"shapes": len(data), "average_anchors": anchors.round(6).tolist()}))
    return 0
