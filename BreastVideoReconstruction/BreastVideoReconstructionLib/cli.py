"""Command line of the video pipeline: `python -m BreastVideoReconstructionLib <command> ...`."""
from __future__ import annotations

import argparse
import sys

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m BreastVideoReconstructionLib",
        description="Video to metric 3D breast surface (frames, SfM, landmarks, alignment, liRBSM fit). "
                    "The pipeline commands are not available in this version yet.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("error: no pipeline command is available in this version yet (see --help)", file=sys.stderr)
    return 2
