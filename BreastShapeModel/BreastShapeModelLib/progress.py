"""One progress protocol for every long task: tqdm bars for people, JSON lines for Slicer.

JSON mode writes one object per line on stdout, e.g.
  {"type": "progress", "stage": "mesh", "fraction": 0.42, "message": "sample 1/3"}
  {"type": "log", "message": "..."}      {"type": "result", "files": [...]}      {"type": "error", "message": "..."}
  {"type": "warning", "message": "..."}
so a parent process can parse each line on its own.
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager

MODES = ("bar", "json", "none")


class Progress:
    def __init__(self, mode: str = "bar", stream=None):
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.stream = stream
        self._last_emit = 0.0
        out = self._out()
        # bars redraw this often even without news (1 s on a terminal; 10 s into a log file, to keep it short)
        self.tick_seconds = 1.0 if hasattr(out, "isatty") and out.isatty() else 10.0

    def _out(self):
        return self.stream or (sys.stdout if self.mode == "json" else sys.stderr)

    def event(self, type: str, **fields) -> None:
        """Emit one JSON event (JSON mode only)."""
        if self.mode == "json":
            print(json.dumps({"type": type, **fields}), file=self._out(), flush=True)

    def log(self, message: str) -> None:
        if self.mode == "json":
            self.event("log", message=message)
        elif self.mode == "bar":
            from tqdm import tqdm
            tqdm.write(message, file=self._out())

    def summary(self, message: str) -> None:
        """A command's closing line: printed in every mode (`--progress none` included; JSON: a log event)."""
        if self.mode == "json":
            self.event("log", message=message)
        elif self.mode == "bar":
            from tqdm import tqdm
            tqdm.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        """A warning a person must see, in every mode: `warning: ...` on stderr (JSON: a warning event)."""
        if self.mode == "json":
            self.event("warning", message=message)
        elif self.mode == "bar":
            from tqdm import tqdm
            tqdm.write("warning: " + message, file=sys.stderr)
        else:
            print("warning: " + message, file=sys.stderr, flush=True)

    def result(self, **fields) -> None:
        self.event("result", **fields)

    @contextmanager
    def sequence(self):
        """Stages one after another, never nested: yields `begin(name, total, unit) -> update`, which closes the
        stage before it (e.g. the fit's bar ends when meshing starts)."""
        current = []

        def close():
            if current:
                current.pop().__exit__(None, None, None)

        def begin(name: str, total: float = 1.0, unit: str = "it"):
            close()
            cm = self.stage(name, total, unit)
            update = cm.__enter__()
            current.append(cm)
            return update
        try:
            yield begin
        finally:
            close()

    @contextmanager
    def stage(self, name: str, total: float = 1.0, unit: str = "it"):
        """A stage with a bar (or JSON events); yields `update(done, message="")` taking absolute progress."""
        if self.mode == "bar":
            import threading
            from tqdm import tqdm
            counted = float(total).is_integer() and total > 1          # frames, iterations: whole numbers
            amount = "{n:.0f}/{total:.0f}" if counted else "{percentage:3.0f}%"
            bar = tqdm(total=int(total) if counted else total, desc=name, unit=unit, file=self._out(), leave=True,
                       bar_format="{l_bar}{bar}| " + amount + " [{elapsed}<{remaining}{postfix}]")
            stop = threading.Event()

            def tick():                    # the elapsed time moves even while a library gives no progress (SfM)
                while not stop.wait(self.tick_seconds):
                    bar.refresh()
            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()

            def update(done: float, message: str = ""):
                if message:
                    bar.set_postfix_str(message, refresh=False)
                bar.update(min(done, total) - bar.n)      # tqdm rate-limits the redraws
            try:
                yield update
            finally:
                stop.set()
                ticker.join()
                bar.close()
            return

        def update(done: float, message: str = ""):
            now = time.monotonic()
            if self.mode == "json" and (now - self._last_emit > 0.2 or done >= total):
                self._last_emit = now
                self.event("progress", stage=name, fraction=round(min(1.0, done / total if total else 1.0), 4),
                           message=message)
        update(0.0)
        yield update
        update(total)
