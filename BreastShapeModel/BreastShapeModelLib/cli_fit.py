"""`reconstruct`: fit the model to a scan or point cloud with six landmarks (the command line of `api.run_scan`)."""
from __future__ import annotations

from pathlib import Path

from .cloud_io import CLOUD_SUFFIXES
from .options import ModelOptions, ScanOptions, add_options, from_args
from .progress import Progress


def add_parser(sub, model_options, output_options) -> None:
    p = sub.add_parser("reconstruct", help="fit the model to a point cloud or scan (six landmarks optional)",
                       description="Normalise the input, similarity-align its landmarks to the model's average "
                                   "anchors (without landmarks: find the torso by matching the model's mean "
                                   "torso onto it, in any orientation), optimise a shape code, mesh it and map it "
                                   "back to the input frame (or to millimetres with --metrical). Re-running with "
                                   "the same inputs and options reuses the result (--force: fit again).")
    p.add_argument("input", type=Path, help="point cloud or mesh: " + ", ".join(CLOUD_SUFFIXES))
    p.add_argument("--landmarks", type=Path, default=None,
                   help="six landmarks in the input's frame (.mrk.json, .fcsv, .pp, .csv, .txt, .ply, .npy); "
                        "without them the torso is found by its shape (see --orientation)")
    p.add_argument("--force", action="store_true", help="fit again even if this output folder holds the result")
    add_options(p, ScanOptions, "fit and meshing")
    model_options(p)
    output_options(p)
    p.set_defaults(func=cmd_reconstruct)


def cmd_reconstruct(args, progress: Progress) -> int:
    from .api import run_scan
    result = run_scan(args.input, args.output_dir, args.landmarks, from_args(ScanOptions, args),
                      from_args(ModelOptions, args), progress, force=args.force)
    rep = result.report
    r = rep["residuals"]
    verb = "reused the earlier fit" if result.skipped else f"fit in {rep['fit_seconds']:.1f} s"
    progress.summary(f"{verb}; input-to-surface residual mean {r['mean_mm']:.2f} mm, 95th pct {r['p95_mm']:.2f} mm; "
                 f"wrote {args.output_dir}")
    progress.result(files=[str(p) for p in result.files] or [str(result.workspace.reconstruction)], residuals=r)
    return 0
