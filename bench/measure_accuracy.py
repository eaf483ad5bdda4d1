"""Measurement accuracy against ground truth: breast volume per side, nipple-to-fold, nipple-to-midline, and the
geodesic (along the skin) distances, with the coverage of the stated 90 % intervals; both chest-wall estimators
side by side.

    python bench/measure_accuracy.py [--num 8] [--sources generator anny] [--scans [--work DIR]] [--videos runs/bench_batch [--video_runs out auto]]
                                     [--true_wall] [--no_exact]

(a) on the exact ground-truth surface with the true landmarks (held-out generator seed, and Anny bodies when
    `anny` is installed); the geodesic check measures the same landmarks on a mesh of the same torso at half the
    spacing (generator only);
(b) `--scans`: on reconstructions fitted by `run_scan` from 20,000 surface points with 1 mm noise and six landmarks
    moved 3 mm, the true nipple distance given (metric output);
(c) `--videos DIR [DIR...] [--video_runs out auto]`: on finished video runs of bench/batch_throughput.py
    (DIR/out_*/<subject>/1 with the truth in DIR/videos/<subject>/truth) or of bench/video_pipeline.py and
    bench/auto_landmarks_video.py (DIR/<name>_<seed> with the truth in DIR/video_<seed>/truth).
Per measure: mean error, mean absolute error (and %), 95 % limits of agreement, coverage of the intervals.
Volumes against two truths: `volume` is the source's own (generator: tissue in a box round each breast; Anny: the
signed volume change of the faces within 190 mm of each nipple), `volume_side` all tissue standing out of its chest
wall on that side (the generator's fold blend reaches beyond the box on some torsos; Anny's cup size pulls the skin
below the breast in, which its own truth subtracts).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastShapeModel"))
from BreastShapeModelLib import synth  # noqa: E402
from BreastShapeModelLib.measure.measurements import measure_surface  # noqa: E402
from BreastShapeModelLib.options import CHEST_WALL_CHOICES  # noqa: E402

HELD_OUT_SEED = 777_005


def side_volumes(params) -> dict:
    """All tissue standing out of the generator's chest wall on each side of the midline (ml). The generator's
    own truth counts only a box round each breast and leaves out the far part of the smooth fold blend."""
    from BreastShapeModelLib.synth import BACK_PLANE_Z, Torso, _evaluate, _grid, _occupancy
    torso, h = Torso(params), 3.0
    _, pts = _grid(np.array([-260.0, torso.y_bottom, BACK_PLANE_Z]), np.array([260.0, torso.y_top, 220.0]), h)
    occ = np.clip(_occupancy(_evaluate(torso.field, pts), h) - _occupancy(_evaluate(torso.chest_field, pts), h), 0,
                  None)
    return {side: float(occ[(pts[..., 0] * sign) > 0].sum() * h ** 3 / 1000.0)
            for side, sign in (("left", 1), ("right", -1))}


def anny_side_volumes(t) -> dict:
    """Anny's counterpart of `side_volumes`: all tissue standing out of its chest wall (the same body with cup size
    0, cut alike) on each side of the midline (ml), on rays every degree and 2 mm from a vertical axis inside the
    body. Anny's own truth sums the signed volume change of the faces within 190 mm of each nipple, so the skin
    that cup size pulls in below the breast subtracts from it."""
    from BreastShapeModelLib.measure.cylinder import radius_map
    from BreastShapeModelLib.measure.frame import L_NIPPLE, R_NIPPLE, body_frame
    from BreastShapeModelLib.measure.measurements import _axis_z
    frame = body_frame(t.landmarks)
    skin, wall = t.mesh.copy(), t.chest_wall.copy()
    skin.vertices, wall.vertices = frame.to_body(t.mesh.vertices), frame.to_body(t.chest_wall.vertices)
    lmb = frame.to_body(t.landmarks)
    axis_z = _axis_z(skin, lmb, float(np.linalg.norm(lmb[L_NIPPLE] - lmb[R_NIPPLE])))
    lo, hi = float(skin.vertices[:, 1].min()), float(skin.vertices[:, 1].max())
    rm = radius_map(skin, frame, axis_z, lo, hi)
    w = radius_map(wall, frame, axis_z, lo, hi).r
    left = np.meshgrid(rm.theta, rm.y)[0] > 0
    return {"left": rm.volume_ml(w, left), "right": rm.volume_ml(w, ~left)}


def true_side(t, source: str) -> dict:
    return side_volumes(t.params) if source == "generator" else anny_side_volumes(t)


def truth_values(truth: dict, side: dict | None = None) -> dict:
    extra = {} if side is None else {"left_volume_side": side["left"], "right_volume_side": side["right"]}
    return {**extra, "left_volume": truth["breast_volume_ml"]["left"], "right_volume": truth["breast_volume_ml"]["right"],
            "left_nipple_to_fold": truth["nipple_to_fold_mm"]["left"],
            "right_nipple_to_fold": truth["nipple_to_fold_mm"]["right"],
            "left_nipple_to_midline": truth["nipple_to_midline_mm"]["left"],
            "right_nipple_to_midline": truth["nipple_to_midline_mm"]["right"]}


def measured_values(m) -> dict:
    out = {}
    for side in ("left", "right"):
        v = m.breast_volume_ml[side]
        out[f"{side}_volume"] = out[f"{side}_volume_side"] = (v["value"], v["interval"])
        for name in ("nipple_to_fold", "nipple_to_midline"):
            d = m.distances_mm.get(f"{side}_{name}")
            if d is not None:
                out[f"{side}_{name}"] = (d["straight"], d.get("interval_straight", d["interval"]))
    return out


def summarise(title: str, records: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'measure':>22} {'n':>3} {'mean err':>9} {'MAE':>8} {'MAE %':>7} {'95% LoA':>19} {'90% cover':>10}")
    keys = sorted({k for r in records for k in r})
    for kind in ("volume", "volume_side", "nipple_to_fold", "nipple_to_midline", "geodesic"):
        errs, rel, cover = [], [], []
        for r in records:
            for k in keys:
                if k.endswith(kind) and k in r:
                    est, lo_hi, true = r[k]
                    errs.append(est - true)
                    rel.append(abs(est - true) / max(abs(true), 1e-9))
                    if lo_hi is not None:
                        cover.append(lo_hi[0] <= true <= lo_hi[1])
        if not errs:
            continue
        e = np.asarray(errs)
        unit = "ml" if kind.startswith("volume") else "mm"
        loa = f"{e.mean() - 1.96 * e.std():+.1f} .. {e.mean() + 1.96 * e.std():+.1f}"
        cov = f"{100 * np.mean(cover):.0f} %" if cover else "-"
        print(f"{kind:>22} {len(e):>3} {e.mean():+8.1f}{unit} {np.abs(e).mean():7.1f}{unit} "
              f"{100 * np.mean(rel):6.1f}% {loa:>17}{unit} {cov:>10}")


def exact(sources, num, geodesic_check: int) -> None:
    recs = {m: [] for m in CHEST_WALL_CHOICES}
    geo = []
    t0 = time.perf_counter()
    for source in sources:
        for i in range(num):
            t = synth.generate(i, HELD_OUT_SEED, source=source)
            truth = truth_values(t.truth, true_side(t, source))
            for method in CHEST_WALL_CHOICES:
                m = measure_surface(t.mesh, t.landmarks, chest_wall=method)
                got = measured_values(m)
                recs[method].append({k: (*got[k], truth[k]) for k in truth if k in got})
            if source == "generator" and i < geodesic_check:
                fine = synth._mesh(synth.Torso(t.params), synth.MESH_SPACING_MM / 2)
                mf = measure_surface(fine, t.landmarks)
                m = measure_surface(t.mesh, t.landmarks)
                for name in ("sternal_notch_to_left_nipple", "nipple_to_nipple", "left_nipple_to_midline"):
                    geo.append({f"{name}_geodesic": (m.distances_mm[name]["surface"], m.distances_mm[name]["interval"],
                                                     mf.distances_mm[name]["surface"])})
            print(f"  {source} {i}: truth L/R {truth['left_volume']:.0f}/{truth['right_volume']:.0f} ml (box), "
                  f"{truth.get('left_volume_side', float('nan')):.0f}/{truth.get('right_volume_side', float('nan')):.0f} "
                  f"ml (side), measured " + ", ".join(f"{recs[m][-1]['left_volume'][0]:.0f}/"
                                                      f"{recs[m][-1]['right_volume'][0]:.0f} ml ({m})"
                                                      for m in CHEST_WALL_CHOICES), flush=True)
    for method in CHEST_WALL_CHOICES:
        summarise(f"(a) exact surfaces, {'+'.join(sources)}, chest wall {method} ({time.perf_counter() - t0:.0f} s)",
                  recs[method])
    if geo:
        summarise("(a) geodesic on the 2.5 mm mesh against the 1.25 mm mesh of the same torso", geo)


def scans(sources, num, work: Path | None = None) -> None:
    """(b); with `work` the fits are kept there and a re-run resumes them (the scans are drawn the same)."""
    from BreastShapeModelLib.api import run_measure, run_scan
    from BreastShapeModelLib.landmarks import write_landmarks
    from BreastShapeModelLib.options import ScanOptions
    recs = {m: [] for m in CHEST_WALL_CHOICES}
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = work or scratch
        for source in sources:
            for i in range(num):
                t = synth.generate(i, HELD_OUT_SEED, source=source)
                pts = trimesh.sample.sample_surface(t.mesh, 20000, seed=i)[0] + rng.normal(0, 1.0, (20000, 3))
                lms = t.landmarks + rng.normal(0, 3.0 / np.sqrt(3), (6, 3))
                d = Path(tmp) / f"{source}{i}"
                d.mkdir(parents=True, exist_ok=True)
                np.save(d / "cloud.npy", pts)
                write_landmarks(lms, d / "lm.csv")
                n2n = float(np.linalg.norm(t.landmarks[2] - t.landmarks[3]))
                r = run_scan(d / "cloud.npy", d / "fit", d / "lm.csv", ScanOptions(nipple_to_nipple_dist=n2n))
                truth = truth_values(t.truth, true_side(t, source))
                for method in CHEST_WALL_CHOICES:
                    m = run_measure(r.workspace.reconstruction, d / method, chest_wall=method).report
                    got = {}
                    for side in ("left", "right"):
                        v = m["breast_volume_ml"][side]
                        got[f"{side}_volume"] = got[f"{side}_volume_side"] = (v["value"], v["interval"])
                        for name in ("nipple_to_fold", "nipple_to_midline"):
                            dd = m["distances_mm"].get(f"{side}_{name}")
                            if dd:
                                got[f"{side}_{name}"] = (dd["straight"], dd.get("interval_straight", dd["interval"]))
                    recs[method].append({k: (*got[k], truth[k]) for k in truth if k in got})
                print(f"  scan {source} {i}: truth L/R {truth['left_volume']:.0f}/{truth['right_volume']:.0f} ml "
                      f"(box), {truth['left_volume_side']:.0f}/{truth['right_volume_side']:.0f} ml (side), measured "
                      + ", ".join(f"{recs[m][-1]['left_volume'][0]:.0f}/{recs[m][-1]['right_volume'][0]:.0f} ml ({m})"
                                  for m in CHEST_WALL_CHOICES), flush=True)
    for method in CHEST_WALL_CHOICES:
        summarise(f"(b) reconstructions from 20k-point scans ({'+'.join(sources)}), chest wall {method}", recs[method])


def _video_runs(root: Path, names: list[str]):
    """(label, reconstruction, truth folder) of finished video runs under `root`: batch_throughput's layout
    (out_*/<subject>/1, truth in videos/<subject>/truth) and video_pipeline's (<name>_<seed>, truth in
    video_<seed>/truth), each video once per run name."""
    seen = set()
    for out in sorted(root.glob("out_*/*/1/reconstruction.ply")):
        subject = out.parent.parent.name
        if subject not in seen and (root / "videos" / subject / "truth").is_dir():
            seen.add(subject)
            yield subject, out, root / "videos" / subject
    for name in names:
        for out in sorted(root.glob(f"{name}_*/reconstruction.ply")):
            seed = out.parent.name.rsplit("_", 1)[-1]
            if (root / f"video_{seed}" / "truth").is_dir():
                yield out.parent.name, out, root / f"video_{seed}"


def videos(roots: list[Path], names: list[str]) -> None:
    """(c) every chest wall on finished video runs, against the video's own truth and the side truth of its torso
    (made again from the video's seed and settings); per folder, then pooled over all folders."""
    pooled = {m: [] for m in CHEST_WALL_CHOICES}
    for root in roots:
        recs = _video_folder(root, names)
        for method in CHEST_WALL_CHOICES:
            summarise(f"(c) video reconstructions in {root}, chest wall {method}", recs[method])
            pooled[method] += recs[method]
    if len(roots) > 1:
        for method in CHEST_WALL_CHOICES:
            summarise(f"(c) video reconstructions in all {len(roots)} folders, chest wall {method}", pooled[method])


def _video_folder(root: Path, names: list[str]) -> dict:
    from BreastShapeModelLib.api import run_measure
    recs = {m: [] for m in CHEST_WALL_CHOICES}
    for label, out, video in _video_runs(root, names):
        doc = json.loads((video / "truth" / "torso.json").read_text())
        side = None
        summary = video / "video.json"
        if summary.is_file():
            v = json.loads(summary.read_text())
            s = v["settings"]
            t = synth.generate(v.get("torso_index", 0), s["seed"], s["torso_spacing_mm"], source=s["source"])
            side = true_side(t, s["source"])
        truth = truth_values(doc.get("truth", doc), side)
        line = []
        for method in CHEST_WALL_CHOICES:
            with tempfile.TemporaryDirectory() as tmp:
                m = run_measure(out, tmp, chest_wall=method).report
            got = {}
            for sd in ("left", "right"):
                vol = m["breast_volume_ml"][sd]
                got[f"{sd}_volume"] = got[f"{sd}_volume_side"] = (vol["value"], vol["interval"])
            recs[method].append({k: (*got[k], truth[k]) for k in truth if k in got})
            line.append(f"{got['left_volume'][0]:.0f}/{got['right_volume'][0]:.0f} ml ({method})")
        side_txt = f", {side['left']:.0f}/{side['right']:.0f} ml (side)" if side else ""
        print(f"  video {label}: truth L/R {truth['left_volume']:.0f}/{truth['right_volume']:.0f} ml (own)"
              f"{side_txt}, measured " + ", ".join(line), flush=True)
    return recs


def true_wall(num: int) -> None:
    """What the chest wall costs: volumes of generator torsos with their *true* chest wall (the torso without its
    breasts, on the same radius map), once with the automatic footprint and once with the true one (skin standing
    0.5 mm out of the true wall on that side), against the side truth."""
    from BreastShapeModelLib.measure.chest_model import wall_radius
    from BreastShapeModelLib.measure.chest_wall import estimate_chest_wall, footprint_curve, footprint_region
    from BreastShapeModelLib.measure.cylinder import radius_map
    from BreastShapeModelLib.measure.frame import L_CORACOID, L_NIPPLE, NAVEL, R_CORACOID, R_NIPPLE, body_frame
    from BreastShapeModelLib.measure.measurements import _axis_z
    recs = {"true wall, automatic footprint": [], "true wall, true footprint": []}
    for i in range(num):
        t = synth.generate(i, HELD_OUT_SEED)
        truth = side_volumes(t.params)
        frame = body_frame(t.landmarks)
        body = t.mesh.copy()
        body.vertices = frame.to_body(t.mesh.vertices)
        lmb = frame.to_body(t.landmarks)
        n2n = float(np.linalg.norm(lmb[L_NIPPLE] - lmb[R_NIPPLE]))
        rm = radius_map(body, frame, _axis_z(body, lmb, n2n), float(lmb[NAVEL, 1]) * 0.95, 30.0)
        wall = wall_radius(synth.Torso(t.params).chest_field, frame.rotation, frame.origin, rm.axis_z, rm.theta, rm.y)
        cw = estimate_chest_wall(rm, lmb[[L_NIPPLE, R_NIPPLE]], lmb[[L_CORACOID, R_CORACOID]])
        left = np.meshgrid(rm.theta, rm.y)[0] > 0
        for side, mask in (("left", left), ("right", ~left)):
            auto = footprint_region(rm, footprint_curve(rm, cw.regions[side]))
            recs["true wall, automatic footprint"].append(
                {f"{side}_volume_side": (rm.volume_ml(wall, auto), None, truth[side])})
            recs["true wall, true footprint"].append(
                {f"{side}_volume_side": (rm.volume_ml(wall, (rm.r - wall > 0.5) & mask), None, truth[side])})
        print(f"  generator {i}: side truth L/R {truth['left']:.0f}/{truth['right']:.0f} ml", flush=True)
    for name, r in recs.items():
        summarise(f"(a) exact surfaces, generator, {name}", r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num", type=int, default=8)
    ap.add_argument("--sources", nargs="+", default=["generator"])
    ap.add_argument("--geodesic_check", type=int, default=2)
    ap.add_argument("--scans", action="store_true")
    ap.add_argument("--no_exact", action="store_true")
    ap.add_argument("--work", type=Path, default=None, help="keep the (b) scan fits here; a re-run resumes them")
    ap.add_argument("--videos", type=Path, nargs="+", default=None,
                    help="folders of finished video runs ((c)); several are summarised each and pooled")
    ap.add_argument("--video_runs", nargs="+", default=["out"],
                    help="run folders <name>_<seed> measured under --videos (video_pipeline's layout)")
    ap.add_argument("--true_wall", action="store_true", help="also measure with each torso's true chest wall")
    args = ap.parse_args()
    if not args.no_exact:
        exact(args.sources, args.num, args.geodesic_check)
    if args.true_wall:
        true_wall(args.num)
    if args.scans:
        scans(args.sources, args.num, args.work)
    if args.videos:
        videos(args.videos, args.video_runs)


if __name__ == "__main__":
    main()
