"""The batch manifest: a CSV with one subject visit per row, checked as a whole before anything runs.

    subject,visit,input,landmarks,nipple_to_nipple_mm[,<option>...]
    p001,pre,p001/pre.mp4,p001/pre_landmarks.json,192.5
    p001,post,p001/post.mp4,p001/post_landmarks.json,
    p002,1,scans/p002.ply,scans/p002_landmarks.mrk.json,

Paths are relative to the manifest's folder; `landmarks` and `nipple_to_nipple_mm` may be empty (a video needs
landmarks); further columns set options by their command-line name (e.g. `iterations`, `num_frames`), per row.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.options import ScanOptions, with_overrides

from .api import input_kind
from .options import VideoOptions

REQUIRED_COLUMNS = ("subject", "visit", "input", "landmarks", "nipple_to_nipple_mm")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Subject:
    """One row: a subject visit, its input (a video or a scan), landmarks, measured distance, options."""
    subject: str
    visit: str
    input: Path
    kind: str                                  # "video" or "scan"
    landmarks: Path | None
    nipple_to_nipple_mm: float | None
    options: dict = field(default_factory=dict)   # option name -> text, from the extra columns
    row: int = 0

    @property
    def name(self) -> str:
        return f"{self.subject}/{self.visit}"


def subject_options(s: Subject, video_defaults: VideoOptions, scan_defaults: ScanOptions, where: str = ""):
    """The row's options: the batch defaults, its extra columns, and its measured distance."""
    values = {**s.options}
    if s.nipple_to_nipple_mm is not None:
        values["nipple_to_nipple_dist"] = str(s.nipple_to_nipple_mm)
    base = video_defaults if s.kind == "video" else scan_defaults
    opts = with_overrides(base, values, where or f"row {s.row} ({s.name})")
    opts.check()
    return opts


def read_manifest(path: str | Path, video_defaults: VideoOptions | None = None,
                  scan_defaults: ScanOptions | None = None) -> list[Subject]:
    """Every row checked; all problems reported together, naming row and column, before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"manifest not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = [h.strip() for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read the manifest as CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise UserError(f"{path}: the header lacks {', '.join(missing)} (expected {','.join(REQUIRED_COLUMNS)}, "
                        f"then optional option columns)")
    if not rows:
        raise UserError(f"{path}: no subjects (only a header)")
    video_defaults = video_defaults or VideoOptions()
    scan_defaults = scan_defaults or ScanOptions()
    base = path.resolve().parent
    problems, subjects, seen = [], [], set()
    for i, row in enumerate(rows, start=2):           # row 1 is the header
        where = f"{path.name} row {i}"
        try:
            s = _subject(row, i, base, where)
            if s.name in seen:
                raise UserError(f"{where}: {s.name} appears twice")
            seen.add(s.name)
            subject_options(s, video_defaults, scan_defaults, where)
            subjects.append(s)
        except UserError as exc:
            problems.append(str(exc))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise UserError(f"{len(problems)} bad row(s) in the manifest, nothing was run: {shown}")
    return subjects


def _subject(row: dict, i: int, base: Path, where: str) -> Subject:
    text = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
    if None in row:
        raise UserError(f"{where}: more values than columns")
    subject, visit = text["subject"], text["visit"] or "1"
    for col, value in (("subject", subject), ("visit", visit)):
        if not SAFE_NAME.match(value):
            raise UserError(f"{where}: {col} '{value}' must be letters, digits, '.', '_' or '-' (it names a folder)")
    if not text["input"]:
        raise UserError(f"{where}: input is empty")
    inp = (base / text["input"]).resolve()
    if not inp.is_file():
        raise UserError(f"{where}: input not found: {inp}")
    kind = input_kind(inp)
    lm = None
    if text["landmarks"]:
        lm = (base / text["landmarks"]).resolve()
        if not lm.is_file():
            raise UserError(f"{where}: landmark file not found: {lm}")
    elif kind == "video":
        raise UserError(f"{where}: a video needs a landmark file (six x,y rows on one of its frames)")
    n2n = None
    if text["nipple_to_nipple_mm"]:
        try:
            n2n = float(text["nipple_to_nipple_mm"])
        except ValueError:
            raise UserError(f"{where}: nipple_to_nipple_mm '{text['nipple_to_nipple_mm']}' is not a number") from None
    extra = {k: v for k, v in text.items() if k not in REQUIRED_COLUMNS and v != ""}
    return Subject(subject, visit, inp, kind, lm, n2n, extra, i)
