"""How a module widget drives a background job, without Qt: one controller both Slicer modules share.

The widget gives callbacks (progress 0-100, status line, log line, running changed, error dialog) and calls
`poll()` from its timer; the controller starts the task, routes the child's JSON events, cancels it, and on the
end calls the task's `on_done` (load the results) and reports the outcome. Tested with real jobs under pytest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import UserError


@dataclass
class JobCallbacks:
    progress: Callable[[int], object]
    status: Callable[[str], object]
    log: Callable[[str], object]
    running_changed: Callable[[bool], object]
    error: Callable[[str], object]


def describe_event(event: dict) -> tuple[str | None, str | None, int | None]:
    """(log line, status line, percent) for one progress-protocol event; None where it has none."""
    kind = event.get("type")
    if kind == "progress":
        stage, message = event.get("stage", ""), event.get("message", "")
        return None, f"{stage}: {message}" if stage else message, int(100 * float(event.get("fraction", 0) or 0))
    if kind == "step":
        seconds = f" ({event['seconds']:.0f} s)" if "seconds" in event else ""
        return f"{event.get('name')}: {event.get('status')}{seconds}", None, None
    if kind == "warning":
        return "WARNING: " + event.get("message", ""), None, None
    if kind in ("log", "error"):
        return event.get("message", ""), None, None
    return None, None, None


class JobControl:
    """One background task at a time: `start(make_task, on_done)`, `poll()` from a timer, `cancel()`.

    A task is what `ShapeJob`/`FitJob`/`VideoJob` are: `.job` (the runner), `.cleanup()`; `on_done(task)` loads
    its results and returns the line to show (a UserError there is shown as a failure)."""

    def __init__(self, callbacks: JobCallbacks):
        self.ui = callbacks
        self.task = None
        self.on_done: Callable | None = None
        self.last_message = ""
        self.last_ok: bool | None = None

    @property
    def running(self) -> bool:
        return self.task is not None

    def start(self, make_task: Callable[[], object], on_done: Callable[[object], str]) -> bool:
        """Build and start a task; a UserError (bad input) goes to the error dialog and nothing starts."""
        if self.task is not None:
            self.ui.error("A job is already running: cancel it first.")
            return False
        try:
            task = make_task()
        except UserError as exc:
            self.ui.error(str(exc))
            return False
        self.task, self.on_done = task, on_done
        self.ui.progress(0)
        self.ui.log("Started: " + " ".join(task.job.args[1:]))
        self.ui.running_changed(True)
        return True

    def poll(self) -> bool | None:
        """Route new events; None while the task runs, else True (succeeded) or False."""
        if self.task is None:
            return None
        for event in self.task.job.poll():
            line, status, percent = describe_event(event)
            if percent is not None:
                self.ui.progress(percent)
            if status is not None:
                self.ui.status(status)
            if line:
                self.ui.log(line)
        if self.task.job.running:
            return None
        ok = self.task.job.returncode == 0
        if ok:
            try:
                message = self.on_done(self.task)
            except UserError as exc:
                ok, message = False, f"Failed: {exc}"
        else:
            message = f"Failed: {self.task.job.error_message()}"
        self._finish(message, ok)
        return ok

    def cancel(self, message: str = "Cancelled.") -> None:
        if self.task is not None:
            self._finish(message, False)

    def _finish(self, message: str, ok: bool) -> None:
        task, self.task = self.task, None
        task.cleanup()
        self.last_message, self.last_ok = message, ok
        self.ui.status(message.splitlines()[0] if message else "")
        self.ui.log(message)
        self.ui.running_changed(False)


def widget_callbacks(ui, running_changed: Callable[[bool], object], error: Callable[[str], object]) -> JobCallbacks:
    """Callbacks onto a module UI's `progressBar`, `statusLabel` and `logTextEdit` (both modules' widget names)."""
    return JobCallbacks(progress=lambda v: setattr(ui.progressBar, "value", v),
                        status=lambda text: setattr(ui.statusLabel, "text", text),
                        log=ui.logTextEdit.appendPlainText, running_changed=running_changed, error=error)
