"""One job runner: heavy work in a child process that prints one JSON event per line (see `progress`).

Qt-free so that the Slicer modules, the tests and scripts share it: `Job.start()`, then `poll()` from a timer
for events, `cancel()` to stop the whole process tree, `returncode` when done.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

LIB_PARENT = Path(__file__).resolve().parent.parent     # the folder that contains BreastShapeModelLib


def python_executable() -> str:
    """PythonSlicer inside Slicer (its Python with Slicer's packages), else this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def module_command(module: str, *args: str, python: str | None = None) -> list[str]:
    """An argument list running `python -m module args...` (never a shell string)."""
    return [python or python_executable(), "-m", module, *map(str, args)]


def child_env(extra_paths: list[str | Path] = ()) -> dict:
    """This environment with the Libs importable in the child."""
    env = dict(os.environ)
    paths = [str(p) for p in (*extra_paths, LIB_PARENT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Job:
    """A child process whose stdout carries JSON events; stderr is kept (tail) and forwarded as log events."""

    def __init__(self, args: list[str], cwd: str | Path | None = None, env: dict | None = None):
        if isinstance(args, str):
            raise TypeError("Job takes an argument list, not a shell string")
        self.args = list(args)
        self.cwd = cwd
        self.env = env or child_env()
        self.process: subprocess.Popen | None = None
        self.events: queue.Queue = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self.last_error: str | None = None
        self.cancelled = False
        self._threads: list[threading.Thread] = []

    def start(self) -> "Job":
        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True            # its own process group: cancel reaches grandchildren
        self.process = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                                        encoding="utf-8", errors="replace", **kwargs)
        for stream, handler in ((self.process.stdout, self._on_stdout), (self.process.stderr, self._on_stderr)):
            t = threading.Thread(target=self._read, args=(stream, handler), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    @staticmethod
    def _read(stream, handler) -> None:
        for line in iter(stream.readline, ""):
            handler(line.rstrip("\n"))
        stream.close()

    def _on_stdout(self, line: str) -> None:
        if not line.strip():
            return
        try:
            event = json.loads(line)
            if not isinstance(event, dict) or "type" not in event:
                raise ValueError
        except ValueError:
            event = {"type": "log", "message": line}
        if event["type"] == "error":
            self.last_error = event.get("message")
        self.events.put(event)

    def _on_stderr(self, line: str) -> None:
        if line.strip():
            self.stderr_tail.append(line)
            self.events.put({"type": "log", "message": line, "stream": "stderr"})

    def poll(self) -> list[dict]:
        """Events received since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        code = self.process.wait(timeout)
        for t in self._threads:
            t.join(timeout=5)
        return code

    def cancel(self, grace: float = 3.0) -> None:
        """Stop the child and everything it started: terminate, then kill after `grace` seconds."""
        if not self.running:
            return
        self.cancelled = True
        pid = self.process.pid
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True)
        else:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(pid, signal.SIGKILL)     # also reaps grandchildren that ignored SIGTERM
            except ProcessLookupError:
                pass
        self.wait(timeout=10)

    def error_message(self) -> str:
        """The child's own error line, else the end of its stderr."""
        if self.last_error:
            return self.last_error
        return "\n".join(list(self.stderr_tail)[-5:]) or f"exit status {self.returncode}"
