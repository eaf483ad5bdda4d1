"""A result folder: the one place that names its files, and the step stamps that make re-runs resume.

Each step records a stamp (hash of its inputs and options) in `.steps/<step>.json`, written only after all of its
outputs, so a re-run skips finished steps and an interrupted step starts again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError
from .fileio import atomic_write_text


def file_key(path: Path | None) -> str | None:
    """Identity of an input file: path, size and modification time (cheap, changes when the file does)."""
    if path is None:
        return None
    p = Path(path)
    st = p.stat()
    return f"{p.resolve()}:{st.st_size}:{int(st.st_mtime_ns)}"


def stamp_of(step: str, inputs: dict) -> str:
    return hashlib.sha256(json.dumps({"step": step, **inputs}, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Workspace:
    """The files of one reconstruction (a scan fit); the video workspace adds the pipeline's files."""

    RECONSTRUCTION = "reconstruction.ply"
    ANCHORS = "reconstruction_anchors"          # + .mrk.json / .csv: where the fitted model puts the landmarks
    LANDMARKS = "reconstruction_landmarks"      # + .mrk.json / .csv: the user's (or video's) landmarks, same frame
    FOUND_LANDMARKS = "landmarks_found.mrk.json"  # no landmarks given: those found, in the input's own frame
    CODE = "reconstruction_code.npy"
    SUPPORT = "reconstruction_support.npy"      # per vertex: distance to the nearest input point
    FIT_REPORT = "fit_report.json"
    REPORT = "report.json"                      # the whole run's summary (the batch reads it)
    MEASUREMENTS = "measurements.json"          # + .csv, .png, .pdf; footprint_<side>.*, chest_wall.ply

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def __fspath__(self) -> str:
        return str(self.root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    @property
    def reconstruction(self) -> Path:
        return self.root / self.RECONSTRUCTION

    @property
    def fit_report(self) -> Path:
        return self.root / self.FIT_REPORT

    @property
    def report(self) -> Path:
        return self.root / self.REPORT

    def create(self) -> "Workspace":
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"the output folder {self.root} is a file; choose a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the output folder {self.root}: {exc.strerror or exc}") from None
        if not self.root.is_dir():
            raise UserError(f"the output folder {self.root} is not a folder")
        return self

    def check_space(self, need_mb: float, what: str) -> None:
        """Refuse before the work when the output folder's disk has clearly too little room for it."""
        free_mb = shutil.disk_usage(self.create().root).free / 2 ** 20
        if free_mb < need_mb:
            raise UserError(f"{self.root}: only {free_mb:.0f} MB free on its disk, and {what} needs about "
                            f"{need_mb:.0f} MB; free some space or choose another output folder")

    # --------------------------------------------------------------------------------------- one run at a time
    LOCK = ".lock"

    @contextmanager
    def lock(self):
        """Hold the folder for this process: a second run on it is refused, naming the holder; a lock left by a
        process that no longer exists (on this host) is taken over. Re-entrant within one process."""
        self.create()
        path = self.root / self.LOCK
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv[:3]),
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    holder = {}
                if holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
                    yield                                   # this process holds it already
                    return
                if holder.get("host") == me["host"] and not _alive(holder.get("pid")):
                    path.unlink(missing_ok=True)             # stale: its process is gone
                    continue
                if not holder:                               # being written by its owner right now
                    time.sleep(0.2)
                    continue
                raise UserError(f"{self.root} is in use by process {holder.get('pid')} on {holder.get('host')} since "
                                f"{holder.get('since')} ({holder.get('command')}); wait for it to finish or stop it "
                                f"(if that process is gone, delete {path})") from None
            except OSError as exc:
                raise UserError(f"cannot write in the output folder {self.root}: {exc.strerror or exc}") from None
            else:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(me, f)
                break
        else:
            raise UserError(f"{self.root}: cannot take its lock {path}")
        try:
            yield
        finally:
            try:
                if json.loads(path.read_text(encoding="utf-8")).get("pid") == me["pid"]:
                    path.unlink()
            except (OSError, ValueError):
                pass

    # --------------------------------------------------------------------------------------- step stamps
    def _stamp(self, step: str) -> Path:
        return self.root / ".steps" / f"{step}.json"

    def _record(self, step: str) -> dict:
        try:
            return json.loads(self._stamp(step).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _fingerprint(self, output: str) -> int | None:
        """What a stamp remembers of an output: a file's size, a folder's number of entries (None: missing)."""
        path = self.root / output
        if path.is_dir():
            return sum(1 for _ in path.iterdir())
        return path.stat().st_size if path.is_file() else None

    def is_done(self, step: str, key: str) -> bool:
        """Finished with these inputs, and its outputs are still as the step left them (none missing, truncated
        or, for a folder, with files missing): otherwise the step runs again."""
        rec = self._record(step)
        if rec.get("key") != key:
            return False
        sizes = rec.get("sizes") or {f: None for f in rec.get("outputs", [])}
        return all(self._fingerprint(f) is not None and (size is None or self._fingerprint(f) == size)
                   for f, size in sizes.items())

    def mark_done(self, step: str, key: str, outputs: list[str], report: dict) -> None:
        """Stamp a step done, only once its outputs exist (files, or folders: whole)."""
        sizes = {f: self._fingerprint(f) for f in outputs}
        missing = [f for f, size in sizes.items() if size is None]
        if missing:
            raise RuntimeError(f"step {step} did not write {', '.join(missing)}")
        atomic_write_text(self._stamp(step), json.dumps({"key": key, "outputs": outputs, "sizes": sizes,
                                                         "report": report}, indent=1, default=str))

    def step_report(self, step: str) -> dict:
        return self._record(step).get("report", {})

    def step_key(self, step: str) -> str:
        key = self._record(step).get("key")
        if key is None:
            raise UserError(f"{self.root}: the {step} step has not been run yet")
        return key

    def has_step(self, step: str) -> bool:
        return self._stamp(step).exists()

    def forget(self, *steps: str) -> None:
        """Remove the stamps of `steps`, so they run again."""
        for s in steps:
            if self._stamp(s).exists():
                self._stamp(s).unlink()


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
