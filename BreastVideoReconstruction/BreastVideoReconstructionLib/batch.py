"""Cohorts on Dask: `python -m BreastVideoReconstructionLib batch MANIFEST.csv --output_dir DIR`.

Every subject visit runs `run_video` or `run_scan` in its own folder `DIR/<subject>/<visit>/` as one Dask task, on
a `LocalCluster` sized to the machine (default) or on an existing scheduler (`--scheduler tcp://host:8786`, e.g. a
dask-jobqueue SLURM cluster). A subject's failure is recorded and never stops the others; a finished subject is
recorded in its folder (`batch_status.json`), so a re-run, or one after a crash, redoes only unfinished subjects
(and inside each, only unfinished steps). Results: `cohort.csv` (one row per subject visit), `cohort.json`, and
`pairs.csv` for subjects with several visits.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from BreastShapeModelLib.api import LazyModel, model_key
from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.fileio import atomic_write_text
from BreastShapeModelLib.options import ModelOptions, ScanOptions, as_dict, from_args
from BreastShapeModelLib.progress import MODES, Progress
from BreastShapeModelLib.results import LANDMARK_DISTANCES
from BreastShapeModelLib.workspace import Workspace, file_key, stamp_of

from .manifest import Subject, read_manifest, subject_options
from .options import VideoOptions

STATUS_FILE = "batch_status.json"
LOG_FILE = "batch_log.jsonl"                  # the subject's progress events and warnings
COHORT_CSV, COHORT_JSON, PAIRS_CSV = "cohort.csv", "cohort.json", "pairs.csv"
BASE_COLUMNS = ("subject", "visit", "status", "error", "kind", "input", "reused", "seconds", "scale_mm_per_unit",
                "scale_source", "residual_mean_mm", "residual_p95_mm", "self_check_passed", "warnings",
                "worker_peak_rss_mb", "output_dir")
EXIT_SOME_FAILED = 4
THREADS_PER_SUBJECT = 1                      # torch and COLMAP threads per task (more cores: more workers)
WORKER_MEMORY_GB = 1.5                       # peak resident memory of a worker running a 1080p video: about 1.1 GB


# ----------------------------------------------------------------------------------------------- sizing
def plan_workers(cores: int, subjects: int, workers: int | None = None, threads: int | None = None,
                 memory_gb: float | None = None) -> tuple[int, int]:
    """(worker processes, threads per subject): one subject per worker at a time, cores shared out so torch and
    COLMAP do not oversubscribe. bench/batch_throughput.py on 2 cores: 2 workers x 1 thread gave 1.23x the
    subjects per hour of 1 worker x 2 threads, so one thread per subject and as many workers as cores, as far as
    memory allows (about WORKER_MEMORY_GB each)."""
    if workers is None:
        workers = max(1, cores // (threads or THREADS_PER_SUBJECT))
        if memory_gb is not None:
            workers = max(1, min(workers, int(memory_gb // WORKER_MEMORY_GB)))
    workers = max(1, min(workers, subjects))
    if threads is None:
        threads = max(1, cores // workers)
    return workers, threads


def machine_memory_gb() -> float | None:
    try:
        import psutil
        return psutil.virtual_memory().total / 2 ** 30
    except ImportError:
        return None


# ----------------------------------------------------------------------------------------------- one subject (worker)
@dataclass
class Task:
    subject: Subject
    options: object                          # VideoOptions or ScanOptions
    model: ModelOptions
    out_dir: str
    threads: int
    key: str
    force: bool = False


_MODELS: dict = {}                           # per worker process: model key -> loaded model


def _model(options: ModelOptions) -> LazyModel:
    key = model_key(options)
    if key not in _MODELS:
        _MODELS[key] = LazyModel(options)
    return _MODELS[key]


def run_subject(task: Task) -> dict:
    """Run one subject visit (in a worker); never raises for the subject's own problems: returns its row."""
    import resource
    import torch
    from .api import run_scan, run_video
    torch.set_num_threads(task.threads)
    s, out = task.subject, Path(task.out_dir)
    row = {"subject": s.subject, "visit": s.visit, "kind": s.kind, "input": str(s.input), "output_dir": str(out),
           "reused": False}
    t = time.perf_counter()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / LOG_FILE, "a", encoding="utf-8") as log:
            progress = Progress("json", stream=log)
            if s.kind == "video":
                opts = task.options
                opts.sfm.sfm_threads = task.threads
                result = run_video(s.input, out, s.landmarks, opts, _model(task.model), progress, task.force)
            else:
                result = run_scan(s.input, out, s.landmarks, task.options, _model(task.model), progress, task.force)
        row.update(status="ok", error="", **summary_columns(result.report))
    except UserError as exc:
        row.update(status="failed", error=str(exc))
    except Exception as exc:                                   # a bug or a crash inside: keep the others going
        (out / "batch_error.log").write_text(traceback.format_exc(), encoding="utf-8")
        row.update(status="failed", error=f"internal error {exc.__class__.__name__}: {exc} (traceback in "
                                          f"{out / 'batch_error.log'})")
    row["seconds"] = round(time.perf_counter() - t, 2)
    row["worker_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if row["status"] == "ok":
        atomic_write_text(out / STATUS_FILE, json.dumps({"key": task.key, "row": row}, indent=1))
    elif (out / STATUS_FILE).exists():
        (out / STATUS_FILE).unlink()
    return row


def summary_columns(report: dict) -> dict:
    """What a cohort row carries from a run's report: scale, residuals, self-check, warnings, measurements."""
    r = report.get("residuals") or {}
    cols = {"scale_mm_per_unit": report.get("scale_mm_per_unit"), "scale_source": report.get("scale_source"),
            "residual_mean_mm": _round(r.get("mean_mm")), "residual_p95_mm": _round(r.get("p95_mm")),
            "self_check_passed": (report.get("self_check") or {}).get("passed"),
            "warnings": " | ".join(report.get("warnings") or [])}
    for name, value in (report.get("measurements") or {}).items():
        if name != "units":
            cols[f"{name}_{(report.get('measurements') or {}).get('units', '')}".rstrip("_")] = value
    return cols


def _round(v, n=3):
    return None if v is None else round(float(v), n)


# ----------------------------------------------------------------------------------------------- the cohort
def subject_key(s: Subject, opts, model: ModelOptions) -> str:
    return stamp_of("batch", {"input": file_key(s.input), "landmarks": file_key(s.landmarks),
                              "options": as_dict(opts), "model": model_key(model)})


def finished_row(out_dir: Path, key: str) -> dict | None:
    """The recorded row of a subject finished with the same inputs and options, else None."""
    try:
        rec = json.loads((out_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if rec.get("key") != key or rec.get("row", {}).get("status") != "ok":
        return None
    return {**rec["row"], "reused": True}


def open_client(scheduler: str | None, workers: int, progress: Progress):
    """(client, local cluster or None, dashboard available): on the given scheduler, or on a LocalCluster of
    `workers` processes (one task each; its dashboard only when bokeh is installed)."""
    from dask.distributed import Client, LocalCluster
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
            return client, None, True
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
    try:
        import bokeh  # noqa: F401   (the dashboard needs it)
        dashboard = ":0"
    except ImportError:
        dashboard = None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=dashboard,
                           silence_logs=logging.ERROR)
    return Client(cluster), cluster, dashboard is not None


def run_batch(manifest: str | Path, output_dir: str | Path, video_defaults: VideoOptions | None = None,
              scan_defaults: ScanOptions | None = None, model: ModelOptions | None = None,
              scheduler: str | None = None, workers: int | None = None, threads: int | None = None,
              force: bool = False, progress: Progress | None = None) -> list[dict]:
    """Run every subject visit of `manifest`; returns the cohort rows (also written to cohort.csv/.json)."""
    progress = progress or Progress("none")
    model = model or ModelOptions()
    subjects = read_manifest(manifest, video_defaults, scan_defaults)
    out = Path(output_dir)
    with Workspace(out).lock():                 # one batch per cohort folder (each visit also locks its own)
        return _run_batch(subjects, out, video_defaults, scan_defaults, model, scheduler, workers, threads, force,
                          progress, manifest)


def _run_batch(subjects, out: Path, video_defaults, scan_defaults, model, scheduler, workers, threads, force,
               progress, manifest) -> list[dict]:
    from dask.distributed import as_completed
    t0 = time.perf_counter()
    rows: dict[str, dict] = {}
    tasks = []
    n_workers, n_threads = plan_workers(os.cpu_count() or 1, len(subjects), workers, threads, machine_memory_gb())
    for s in subjects:
        opts = subject_options(s, video_defaults or VideoOptions(), scan_defaults or ScanOptions())
        key = subject_key(s, opts, model)
        sdir = out / s.subject / s.visit
        done = None if force else finished_row(sdir, key)
        if done is not None:
            rows[s.name] = done
        else:
            tasks.append(Task(s, opts, model, str(sdir), n_threads, key, force))
    info = {"manifest": str(Path(manifest).resolve()), "subjects": len(subjects), "reused": len(rows),
            "scheduler": scheduler or "local", "workers": n_workers if not scheduler else None,
            "threads_per_subject": n_threads}
    progress.log(f"{len(subjects)} subject visit(s): {len(rows)} finished before, {len(tasks)} to run")

    def record(row):
        rows[f"{row['subject']}/{row['visit']}"] = row
        write_cohort(out, subjects, rows, info)
        verdict = "ok" if row["status"] == "ok" else f"FAILED: {row['error']}"
        progress.log(f"{row['subject']}/{row['visit']}: {verdict} ({row.get('seconds', 0):.0f} s)")

    if tasks:
        client, cluster, dashboard = open_client(scheduler, n_workers, progress)
        try:
            if dashboard:
                progress.log(f"Dask dashboard: {client.dashboard_link}")
            futures = {client.submit(run_subject, t, pure=False, key=f"subject-{t.subject.subject}-"
                                     f"{t.subject.visit}-{t.key}"): t for t in tasks}
            with progress.stage("subjects", total=len(tasks), unit="subject") as update:
                for k, fut in enumerate(as_completed(futures), start=1):
                    t = futures[fut]
                    try:
                        row = fut.result()
                    except Exception as exc:          # the task itself died (killed worker, out of memory)
                        row = {"subject": t.subject.subject, "visit": t.subject.visit, "kind": t.subject.kind,
                               "input": str(t.subject.input), "output_dir": t.out_dir, "reused": False,
                               "status": "failed",
                               "error": f"the worker running it died ({exc.__class__.__name__}: {exc}); re-run "
                                        f"the batch to retry"}
                    record(row)
                    update(k, f"{t.subject.name} {row['status']}")
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    info["seconds"] = round(time.perf_counter() - t0, 2)
    return write_cohort(out, subjects, rows, info)


def visit_pairs(subjects: list[Subject], rows: dict[str, dict]) -> list[dict]:
    """Consecutive visits (manifest order) of each subject that both succeeded: the change of every measurement.

    The surface comparison (volume change, distance map) plugs in here once `compare` exists (issue 12)."""
    by_subject: dict[str, list[dict]] = {}
    for s in subjects:
        row = rows.get(s.name)
        if row and row.get("status") == "ok":
            by_subject.setdefault(s.subject, []).append(row)
    pairs = []
    for subject, visits in by_subject.items():
        for a, b in zip(visits, visits[1:]):
            pair = {"subject": subject, "before": a["visit"], "after": b["visit"]}
            for col, va in a.items():
                if col.rsplit("_", 1)[0] in LANDMARK_DISTANCES and isinstance(va, (int, float)) \
                        and isinstance(b.get(col), (int, float)):
                    pair[f"change_{col}"] = round(b[col] - va, 2)
            pair["surface_comparison"] = "not available yet (the compare command of issue 12 plugs in here)"
            pairs.append(pair)
    return pairs


def _csv(rows: list[dict], first: tuple) -> str:
    cols = list(first) + sorted({k for r in rows for k in r} - set(first))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return buf.getvalue()


def write_cohort(out: Path, subjects: list[Subject], rows: dict[str, dict], info: dict) -> list[dict]:
    """cohort.csv and cohort.json (rows in manifest order, finished ones only) and pairs.csv."""
    ordered = [rows[s.name] for s in subjects if s.name in rows]
    pairs = visit_pairs(subjects, rows)
    atomic_write_text(out / COHORT_CSV, _csv(ordered, BASE_COLUMNS))
    atomic_write_text(out / PAIRS_CSV, _csv(pairs, ("subject", "before", "after")))
    counts = {"ok": sum(r["status"] == "ok" for r in ordered), "failed": sum(r["status"] == "failed" for r in ordered)}
    atomic_write_text(out / COHORT_JSON, json.dumps({**info, **counts, "rows": ordered, "pairs": pairs}, indent=1,
                                                    default=str))
    return ordered


# ----------------------------------------------------------------------------------------------- command line
def add_parser(sub) -> None:
    from .cli import add_video_options
    p = sub.add_parser("batch", help="a cohort from a manifest CSV, on Dask (local cluster or a scheduler)",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("manifest", type=Path, help="CSV: subject,visit,input,landmarks,nipple_to_nipple_mm[,options]")
    p.add_argument("--output_dir", type=Path, required=True, help="one folder per subject visit inside")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (tcp://host:8786)")
    where.add_argument("--workers", type=int, default=None,
                       help=f"local worker processes (default: one per {THREADS_PER_SUBJECT} core(s), at most one per "
                            f"{WORKER_MEMORY_GB} GB of memory)")
    p.add_argument("--threads", type=int, default=None, help="torch and COLMAP threads per subject "
                                                             "(default: cores / workers)")
    p.add_argument("--force", action="store_true", help="redo every subject and step")
    add_video_options(p)
    p.add_argument("--progress", choices=MODES, default="bar",
                   help="bar (terminal), json (one JSON event per line on stdout) or none")
    p.set_defaults(func=cmd_batch)


def cmd_batch(args, progress: Progress) -> int:
    from .cli import video_options
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    video = video_options(args)
    scan = ScanOptions()             # scans: the `reconstruct` defaults; per-row options in manifest columns
    rows = run_batch(args.manifest, args.output_dir, video, scan, from_args(ModelOptions, args), args.scheduler,
                     args.workers, args.threads, args.force, progress)
    ok = sum(r["status"] == "ok" for r in rows)
    failed = [r for r in rows if r["status"] != "ok"]
    progress.log(f"{ok} ok, {len(failed)} failed; {args.output_dir / COHORT_CSV}")
    for r in failed:
        progress.warn(f"{r['subject']}/{r['visit']} failed: {r['error']}")
    progress.result(files=[str(args.output_dir / f) for f in (COHORT_CSV, COHORT_JSON, PAIRS_CSV)])
    return EXIT_SOME_FAILED if failed else 0
