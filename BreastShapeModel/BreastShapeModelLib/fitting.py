"""Fitting a shape code to points in model space: the method's latent optimisation.

Adam (lr 1e-2, halved every 200 iterations) on one code initialised at zero; each iteration draws
`points_per_iteration` input points; the loss is mean |SDF| over points whose |SDF| is under a shrinking cutoff
(0.1, then 0.05 after iteration 250, 0.0075 after 500) + latent_weight * ||z||^2 (divided by 3 after iteration 200
and by 10 after 600) + anchor_weight * mean squared distance of the predicted anchors to the landmarks. The
schedules switch on the same iterations as the official code (`i > 250`; the weight changes after step 200).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .network import LocalEnsembleSDF

CUTOFFS = ((0, 0.1), (251, 0.05), (501, 0.0075))
LATENT_DECAY = ((0, 1.0), (201, 1.0 / 3.0), (601, 1.0 / 10.0))


@dataclass
class FitSettings:
    iterations: int = 1000
    points_per_iteration: int = 1000
    lr: float = 1e-2
    lr_step: int = 200
    lr_gamma: float = 0.5
    latent_weight: float = 0.01
    anchor_weight: float = 0.0
    seed: int = 0
    sparse_threshold: float = 1e-4       # 0: evaluate every member everywhere (the plain path)


@dataclass
class FitResult:
    code: np.ndarray
    anchors: np.ndarray
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _schedule(table, it: int) -> float:
    value = table[0][1]
    for start, v in table:
        if it >= start:
            value = v
    return value


def fit_code(net: LocalEnsembleSDF, points: np.ndarray | torch.Tensor, landmarks: np.ndarray | None = None,
             settings: FitSettings | None = None, on_iteration=None, init_code=None,
             landmark_weights: np.ndarray | None = None, start_iteration: int = 0) -> FitResult:
    """Optimise a code so the model's zero level set passes through `points` [P, 3] (model units).

    `landmark_weights` [6] weight each landmark in the anchor term (a doubtful landmark counts less);
    `start_iteration` continues the cutoff, latent-weight and learning-rate schedules from there (a warm-started
    refit from `init_code`)."""
    s = settings or FitSettings()
    device = next(net.parameters()).device
    def tensor(x):           # numpy arrays, lists and tensors on any device
        return torch.as_tensor(x, dtype=torch.float32, device=device)

    pts = tensor(points)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ValueError(f"points must be [P, 3] with P > 0, got {tuple(pts.shape)}")
    lms = None if landmarks is None else tensor(landmarks)
    lw = torch.ones(6, device=device) if landmark_weights is None else \
        tensor(landmark_weights)
    lw = lw / lw.sum()
    gen = torch.Generator(device="cpu").manual_seed(int(s.seed))
    code = torch.zeros(1, net.cfg.latent_dim, device=device) if init_code is None else \
        tensor(init_code).reshape(1, -1).clone()
    code.requires_grad_(True)
    opt = torch.optim.Adam([code], lr=s.lr * s.lr_gamma ** (start_iteration // s.lr_step))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=s.lr_step, gamma=s.lr_gamma)
    was_training = net.training
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    # A GPU is launch-bound on 1000 points: there the plain batched forward (one matmul per layer for all
    # members) beats the per-member sparse path, and losses are read at the end instead of stalling the queue.
    on_cpu = device.type == "cpu"
    losses = []
    t0 = time.perf_counter()
    try:
        for step in range(s.iterations):
            it = step + start_iteration
            idx = torch.randint(len(pts), (min(s.points_per_iteration, len(pts)),), generator=gen).to(device)
            batch = pts[idx][None]
            sdf, anchors = net.forward_sparse(batch, code, s.sparse_threshold) if on_cpu else net(batch, code)
            a = sdf.abs()[0]
            keep = a < _schedule(CUTOFFS, it)
            loss = (a * keep).sum() / keep.sum().clamp(min=1)
            loss = loss + s.latent_weight * _schedule(LATENT_DECAY, it) * (code ** 2).sum()
            if lms is not None and s.anchor_weight > 0:
                loss = loss + s.anchor_weight * (((anchors[0] - lms) ** 2).sum(-1) * lw).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.detach())
            if on_iteration is not None and (on_cpu or (step + 1) % 50 == 0 or step + 1 == s.iterations):
                on_iteration(step + 1, float(losses[-1]))
    finally:
        for p in net.parameters():
            p.requires_grad_(True)
        net.train(was_training)
    losses = torch.stack(losses).cpu().tolist() if losses else []
    with torch.no_grad():
        anchors = net.predict_anchors(code)[0].cpu().numpy()
    return FitResult(code.detach().cpu().numpy()[0], anchors, losses, time.perf_counter() - t0)
