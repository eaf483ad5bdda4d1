"""Our shape-model code against the official liRBSM algorithm, on the same checkpoint and the same points, in one
process: SDF points/s (near the surface and uniform), mesh 128^3 / 256^3 time, a 1000-iteration fit (one thread
and all cores), and the largest differences. Ratios are printed next to the times, so a loaded machine still gives
comparable figures.

    python bench/vs_reference.py [--device cpu|cuda] [--fit_iterations 1000] [--quick] [--write_readme]

The reference is re-implemented here, plainly, from the published algorithm (official tensor layout: the code is
repeated for every point, every member runs on every point as one batched matmul, chunks of 100,000 points, dense
grid for meshing, and the official fitting loop with boolean cutoffs and `randperm` sampling). Models: the bundled
model, and the same weights written in the official checkpoint layout and read back (the official-format path).
`--write_readme` replaces the table between the `speed-table` markers in README.md (`speed-table-cuda` for a GPU).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastShapeModel"))
from BreastShapeModelLib import ShapeModel, synth  # noqa: E402
from BreastShapeModelLib.alignment import umeyama  # noqa: E402
from BreastShapeModelLib.devices import resolve_device  # noqa: E402
from BreastShapeModelLib.fitting import fit_code  # noqa: E402
from BreastShapeModelLib.meshing import extract_mesh  # noqa: E402
from BreastShapeModelLib.network import LocalEnsembleSDF  # noqa: E402
from BreastShapeModelLib.options import FitOptions  # noqa: E402
from BreastShapeModelLib.reconstruct import compose, normalisation  # noqa: E402

REFERENCE_CHUNK = 100_000          # the official evaluation chunk


# ------------------------------------------------------------------ the reference algorithm, written plainly
def reference_forward(net: LocalEnsembleSDF, points: torch.Tensor, codes: torch.Tensor):
    """points [1, N, 3], codes [1, N, latent] (one code repeated per point) -> SDF [1, N], anchors [1, 6, 3]."""
    cfg = net.cfg
    _, N, _ = points.shape
    E, G = cfg.ensemble_size, cfg.global_latent_dim
    anchors = net.anchor_mlp(codes[:, 0, :G]).reshape(-1, cfg.num_anchors, 3) + net.average_anchors
    origins = torch.cat([anchors, torch.zeros_like(anchors[:, :1])], dim=1)           # [1, E, 3]
    xyz = (points.unsqueeze(2) - origins.unsqueeze(1)).permute(2, 0, 1, 3)            # [E, 1, N, 3]
    glob = codes[:, :, :G].unsqueeze(2).expand(-1, -1, E, -1)
    local = codes[:, :, G:].reshape(1, N, E, cfg.local_latent_dim)
    lat = torch.cat([glob, local], dim=-1).permute(2, 0, 1, 3)                        # [E, 1, N, 192]
    inp = torch.cat([xyz, lat], dim=-1).reshape(E, N, -1)
    x = inp
    layers = net.ensembled_deep_sdf.layers()
    for i, lin in enumerate(layers):
        if i == net.ensembled_deep_sdf.skip:
            x = torch.cat([x, inp], dim=-1) / math.sqrt(2.0)
        x = torch.bmm(lin.weight, x.permute(0, 2, 1)).permute(0, 2, 1) + lin.bias.unsqueeze(1)
        if i < len(layers) - 1:
            x = torch.nn.functional.softplus(x, beta=100)
    member = x.reshape(E, 1, N, 1).permute(1, 2, 0, 3)                                 # [1, N, E, 1]
    d2 = -((anchors.unsqueeze(1) - points.unsqueeze(2)).norm(dim=3) + 1e-5) ** 2
    d2 = torch.cat([d2, torch.full_like(d2[:, :, :1], -cfg.const)], dim=-1)
    w = (d2 / cfg.sigma ** 2).exp()
    w = w / (w.sum(dim=2, keepdim=True) + 1e-6)
    return (w.unsqueeze(-1) * member).sum(dim=2)[..., 0], anchors


@torch.no_grad()
def reference_sdf(net: LocalEnsembleSDF, points: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    out = []
    for chunk in torch.split(points, REFERENCE_CHUNK):
        codes = code.reshape(1, 1, -1).repeat(1, len(chunk), 1)
        out.append(reference_forward(net, chunk[None], codes)[0][0])
    return torch.cat(out)


def reference_fit(net: LocalEnsembleSDF, points: torch.Tensor, iterations: int, latent_weight: float,
                  seed: int = 0) -> np.ndarray:
    """The official latent optimisation (Adam 1e-2, StepLR 200/0.5, boolean cutoffs, latent weight /3 after 200
    and /10 after 600; the default has no anchor term). The 1000 points of each iteration are drawn as our fit
    draws them (same generator, same seed), so the two fits see the same points and differ only in arithmetic."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for p in net.parameters():
        p.requires_grad_(False)
    code = torch.zeros(1, 1, net.cfg.latent_dim, device=points.device, requires_grad=True)
    opt = torch.optim.Adam([code], lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=200, gamma=0.5)
    for i in range(iterations):
        opt.zero_grad()
        sub = points[torch.randint(len(points), (min(1000, len(points)),), generator=gen).to(points.device)][None]
        sdf, anchors = reference_forward(net, sub, code.repeat(1, sub.shape[1], 1))
        loss = sdf.abs()
        loss = loss[loss < 0.1]
        if i > 250:
            loss = loss[loss < 0.05]
        if i > 500:
            loss = loss[loss < 0.0075]
        total = loss.mean() + latent_weight * (code.norm(dim=-1) ** 2).mean()
        if i == 200:
            latent_weight /= 3.0
        if i == 600:
            latent_weight /= 10.0
        total.backward()
        opt.step()
        sched.step()
    for p in net.parameters():
        p.requires_grad_(True)
    return code.detach()[0, 0].cpu().numpy()


def check_reference(device) -> None:
    """The re-implementation must reproduce the values the official code computed for the reference checkpoint."""
    ref_dir = ROOT.parent / "shared" / "reference"
    if not (ref_dir / "official_format_random.pth").is_file():
        print(f"(no {ref_dir}: the reference re-implementation is not checked against the official values)")
        return
    model = ShapeModel.load(ref_dir / "official_format_random.pth", device=str(device))
    expected = np.load(ref_dir / "official_format_random_expected.npz")
    pts = torch.as_tensor(expected["points"], dtype=torch.float32, device=device).reshape(-1, 3)
    worst = 0.0
    for i in (0, 1):
        code = torch.as_tensor(expected[f"latent_{i}"], dtype=torch.float32, device=device).reshape(-1)
        with torch.no_grad():
            sdf, anchors = reference_forward(model.network, pts[None], code.reshape(1, 1, -1).repeat(1, len(pts), 1))
        worst = max(worst, float(np.abs(sdf.cpu().numpy().reshape(-1) - expected[f"sdf_{i}"].reshape(-1)).max()),
                    float(np.abs(anchors.cpu().numpy().reshape(-1) - expected[f"anchors_{i}"].reshape(-1)).max()))
    print(f"reference re-implementation against the official code's values: max diff {worst:.1e}")
    if worst > 1e-4:
        raise SystemExit("the reference re-implementation does not reproduce the official values")


# ------------------------------------------------------------------ measuring
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, device, repeat: int = 2):
    out, best = None, float("inf")
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def fit_problem(model: ShapeModel, device):
    """A held-out generator torso (seed 777001), 20,000 surface points, aligned by its true landmarks, in model
    units."""
    import trimesh
    t = synth.generate(0, 777_001, spacing=3.0)
    pts, _ = trimesh.sample.sample_surface(t.mesh, 20000, seed=0)
    norm = normalisation(pts)
    to_model = compose(umeyama(norm.apply(t.landmarks), model.average_anchors), norm)
    return (torch.as_tensor(to_model.apply(pts), dtype=torch.float32, device=device),
            torch.as_tensor(to_model.apply(t.landmarks), dtype=torch.float32, device=device))


def peak_mb() -> float:
    import resource
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2 ** 20


def with_threads(n: int, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def bench_model(label: str, model: ShapeModel, device, args, fit_threads: list[int]) -> list[tuple]:
    """Rows (measure, reference, ours, ratio, note) for one model."""
    net = model.network
    rng = np.random.default_rng(0)
    rows = []
    codes = {"mean code": torch.as_tensor(model.mean_code, device=device),
             "sample code": torch.as_tensor(model.sample_code(1), device=device)}
    n_eval = args.points or (20_000 if args.quick else 50_000 if device.type == "cpu" else 1_000_000)
    for cname, code in codes.items():
        surface = model.mesh(code.cpu().numpy(), 128)
        near = surface.vertices[rng.choice(len(surface.vertices), n_eval)] + rng.normal(0, 0.01, (n_eval, 3))
        uniform = rng.uniform(-1, 1, (n_eval, 3))
        for where, pts_np in (("near the surface", near), ("uniform in the cube", uniform)):
            pts = torch.as_tensor(pts_np, dtype=torch.float32, device=device)
            model.sdf(pts[:2000], code)
            reference_sdf(net, pts[:2000], code)
            t_ref, ref = best_time(lambda: reference_sdf(net, pts, code), device)
            t_our, our = best_time(lambda: model.sdf(pts, code), device, 3)
            diff = float((ref - our).abs().max())
            rows.append((f"SDF points/s, {where}, {cname}", f"{n_eval / t_ref:,.0f}", f"{n_eval / t_our:,.0f}",
                         t_ref / t_our, f"max diff {diff:.1e}"))
            if where.startswith("uniform"):
                uniform_rate = n_eval / t_ref
        for res in (128, 256):
            t_mesh, mesh = best_time(lambda: model.mesh(code.cpu().numpy(), res), device, 1)
            t_ref_dense = res ** 3 / uniform_rate
            note = f"{len(mesh.vertices):,} vertices; reference = dense grid at its uniform rate"
            if res == 128 and args.check_dense:
                grid = model.volume(code.cpu().numpy(), res, method="dense", fast=False)
                v_dense, _ = extract_mesh(grid)
                from scipy.spatial import cKDTree
                gap = cKDTree(np.asarray(mesh.vertices)).query(v_dense)[0].max()
                note += f"; max vertex gap to the dense plain mesh {gap:.1e}"
            rows.append((f"mesh {res}^3, {cname}", f"{t_ref_dense:.1f} s (extrapolated)", f"{t_mesh:.2f} s",
                         t_ref_dense / t_mesh, note))
    points, _ = fit_problem(model, device)
    its = args.fit_iterations
    probe = points[::10]
    mm = model.mm_per_unit
    settings = FitOptions().settings(FitOptions().latent_weight, with_landmarks=False)   # the CLI's defaults
    settings.iterations = its
    spread_settings = FitOptions().settings(FitOptions().latent_weight, with_landmarks=False)
    spread_settings.iterations, spread_settings.seed = its, settings.seed + 1
    other_draws = model.sdf(probe, fit_code(net, points, None, spread_settings).code)
    for n in fit_threads:
        repeat = 2 if n > 1 else 1            # best of two where the machine's other load matters most
        t_ref, ref_code = with_threads(n, lambda: best_time(
            lambda: reference_fit(net, points, its, settings.latent_weight, settings.seed), device, repeat))
        t_our, fit = with_threads(n, lambda: best_time(lambda: fit_code(net, points, None, settings), device,
                                                       repeat))
        ours_sdf = model.sdf(probe, fit.code)
        gap = float((reference_sdf(net, probe, torch.as_tensor(ref_code, device=device)) - ours_sdf).abs().mean())
        spread = float((other_draws - ours_sdf).abs().mean())
        what = f"fit {its} iterations" + (f", {n} thread{'s' if n > 1 else ''}" if device.type == "cpu" else "")
        rows.append((what, f"{t_ref:.1f} s", f"{t_our:.1f} s", t_ref / t_our,
                     f"fitted surfaces differ by {gap * mm:.2f} mm mean at the input points (ours with other point "
                     f"draws: {spread * mm:.2f} mm); residual {float(ours_sdf.abs().mean()) * mm:.2f} mm"))
    t_mesh, mesh = best_time(lambda: model.mesh(fit.code, 256), device, 1)
    rows.append(("mesh 256^3, fitted code", f"{256 ** 3 / uniform_rate:.1f} s (extrapolated)", f"{t_mesh:.2f} s",
                 256 ** 3 / uniform_rate / t_mesh, f"{len(mesh.vertices):,} vertices"))
    return [(label,) + r for r in rows]


def markdown(rows, header) -> str:
    lines = [header, "",
             "| model | measure | reference algorithm | ours | ours faster | note |",
             "|---|---|---|---|---|---|"]
    for label, what, ref, our, ratio, note in rows:
        lines.append(f"| {label} | {what} | {ref} | {our} | ×{ratio:.1f} | {note} |")
    return "\n".join(lines)


def write_readme(table: str, block: str) -> None:
    """Replace the README's `<!-- block -->` ... `<!-- /block -->` section (one block per device type)."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    pattern = re.compile(rf"(<!-- {block} -->\n).*?(<!-- /{block} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {block} --> ... <!-- /{block} --> block")
    readme.write_text(pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text))
    print(f"wrote the table into {readme}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ckpt", type=Path, default=None, help="a model checkpoint (default: the bundled model)")
    ap.add_argument("--fit_iterations", type=int, default=1000)
    ap.add_argument("--points", type=int, default=None,
                    help="points per SDF rate (default 50,000 on a CPU, 1,000,000 on a GPU, which 50,000 leaves idle)")
    ap.add_argument("--quick", action="store_true", help="20,000 points per rate; the official-format copy skipped")
    ap.add_argument("--check_dense", action="store_true", help="also mesh 128^3 densely on the plain path")
    ap.add_argument("--write_readme", action="store_true")
    args = ap.parse_args()
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_flush_denormal(True)       # both sides: the reference gets the same denormal treatment
    load_before = os.getloadavg()
    model = ShapeModel.load(args.ckpt, device=str(device))
    print(f"model: {model.source}\ndevice: {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average before {load_before[0]:.2f}", flush=True)
    check_reference(device)
    all_threads = torch.get_num_threads()
    threads = sorted({1, all_threads}) if device.type == "cpu" else [all_threads]
    rows = bench_model("bundled" if args.ckpt is None else args.ckpt.name, model, device, args, threads)
    if not args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            path = model.save(Path(tmp) / "official_layout.pth", official=True)
            anchors = Path(tmp) / "average_anchors.npy"          # the official layout keeps only the weights
            np.save(anchors, model.average_anchors)
            official = ShapeModel.load(path, anchors=anchors, device=str(device))
            official.mm_per_unit = model.mm_per_unit
            probe = np.random.default_rng(1).uniform(-1, 1, (20_000, 3)).astype(np.float32)
            same = np.abs(official.sdf(probe, official.mean_code) - model.sdf(probe, model.mean_code)).max()
            print(f"official-layout copy (weights + average anchors) reads back: max SDF diff {same:.1e}", flush=True)
            rows += bench_model("official layout", official, device, args, [all_threads])
    print(f"peak memory of the whole bench: {peak_mb():.0f} MB")
    load_after = os.getloadavg()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()}-core CPU"
    header = (f"`python bench/vs_reference.py{' --device cuda' if device.type == 'cuda' else ''}` on a {name} "
              f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
              f"{time.strftime('%Y-%m-%d')}):")
    table = markdown(rows, header)
    print("\n" + table)
    if args.write_readme:
        write_readme(table, "speed-table" if device.type == "cpu" else f"speed-table-{device.type}")


if __name__ == "__main__":
    main()
