"""`measure` and `compare`: what a surgeon measures on a surface, and what changed between two visits."""
from __future__ import annotations

from pathlib import Path

from .options import CHEST_WALL_CHOICES
from .progress import MODES, Progress


def add_parsers(sub) -> None:
    p = sub.add_parser("measure", help="volumes, footprints, tape distances and symmetry of a surface (mm)",
                       description="Measure a breast surface in millimetres: per-side footprint and volume against an "
                                   "estimated chest wall, distances straight and along the skin, symmetry, each "
                                   "with a 90 % interval.")
    p.add_argument("surface", type=Path, help="mesh in mm (.ply, .obj, .stl, .off, .vtk)")
    p.add_argument("--landmarks", type=Path, default=None,
                   help="six landmarks on it (default: the anchors our reconstruction wrote beside it)")
    for side in ("left", "right"):
        p.add_argument(f"--footprint_{side}", type=Path, default=None, metavar="CURVE",
                       help=f"the {side} breast's footprint as a closed curve on the surface (.mrk.json or .csv, "
                            f"e.g. footprint_{side}.mrk.json edited in Slicer) instead of the automatic one")
    p.add_argument("--chest_wall", choices=CHEST_WALL_CHOICES, default=CHEST_WALL_CHOICES[0],
                   help="the wall behind the breasts: footprint_plane (a plane through each footprint's outline), "
                        "envelope_pspline (a smooth lower envelope of the skin), chest_model (the chest wall "
                        "predicted from the skin by a model learned from generator and Anny torsos; from the skin the "
                        "input saw when much of the surface is filled in, as on video results: the closest wall on "
                        "exact synthetic surfaces, scan fits and video results, 6 %%, 8 %% and 12.5 %% MAE against "
                        "the plane's 17 %%, 14 %% and 14.3 %%) or auto (the chest model when its wall fits the skin, "
                        "off the breasts too, else the plane); default: %(default)s")
    p.add_argument("--output_dir", type=Path, default=Path("."), help="where to write the results (default: .)")
    p.add_argument("--progress", choices=MODES, default="bar", help="bar, json (for Slicer) or none")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("compare", help="before/after: distance map, volume change per side, distance changes",
                       description="Register AFTER onto BEFORE on the regions breast surgery does not change, then "
                                   "write the signed distance map, the volume change per side and every distance's "
                                   "change. Surfaces of two different people do not register: that is an error.")
    p.add_argument("before", type=Path, help="the earlier surface (mm)")
    p.add_argument("after", type=Path, help="the later surface (mm)")
    p.add_argument("--before_landmarks", type=Path, default=None, help="default: the anchors beside BEFORE")
    p.add_argument("--after_landmarks", type=Path, default=None,
                   help="default: the anchors beside AFTER, else registered from the surfaces alone")
    p.add_argument("--output_dir", type=Path, default=Path("."), help="where to write the results (default: .)")
    p.add_argument("--progress", choices=MODES, default="bar", help="bar, json (for Slicer) or none")
    p.set_defaults(func=cmd_compare)


def cmd_measure(args, progress: Progress) -> int:
    from .api import run_measure
    from .measure.report import summary_lines
    result = run_measure(args.surface, args.output_dir, args.landmarks, progress,
                         {"left": args.footprint_left, "right": args.footprint_right}, args.chest_wall)
    for line in summary_lines(result.report):
        progress.summary(line)
    progress.result(files=[str(f) for f in result.files])
    return 0


def cmd_compare(args, progress: Progress) -> int:
    from .api import run_compare
    result = run_compare(args.before, args.after, args.output_dir, args.before_landmarks, args.after_landmarks,
                         progress)
    r = result.report
    progress.summary(f"volume change left {r['volume_change_ml']['left']:+.0f} ml, right "
                 f"{r['volume_change_ml']['right']:+.0f} ml; registration residual "
                 f"{r['registration_residual_mm']:.2f} mm")
    progress.result(files=[str(f) for f in result.files])
    return 0
