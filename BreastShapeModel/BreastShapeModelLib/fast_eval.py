"""Fast inference for one shape code.

For a fixed code, every member's input is [xyz - origin_k, code_k] with a constant code part, so the first
layer and the skip layer reduce to a 3-column (first) and an 8-column (skip: 5 features + xyz) matmul plus a
bias computed once per code. The anchor MLP also runs once. Each member then runs only on the points where
its normalised blending weight exceeds `skip_weight` (1e-7: the omitted contribution is below 1e-7 x |SDF|),
in cache-sized blocks, without ever materialising the 195-wide member inputs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .network import LocalEnsembleSDF, blend_weights


class FoldedSDF:
    """SDF of one shape code with the code folded into the weights; call it on points [M, 3] -> [M]."""

    def __init__(self, net: LocalEnsembleSDF, code: torch.Tensor, block: int | None = None,
                 skip_weight: float = 1e-7):
        cfg = net.cfg
        self.cfg = cfg
        device = next(net.parameters()).device
        # On CPU, a couple of thousand points per block keep the activations in cache (~2x over large chunks);
        # accelerators prefer large batches.
        self.block = block or (2048 if device.type == "cpu" else 65536)
        self.skip_weight = skip_weight
        if device.type == "cpu":
            torch.set_flush_denormal(True)   # softplus(beta=100) underflows into denormals: 2x slower without
        with torch.no_grad():
            code = code.reshape(1, -1).to(next(net.parameters()))
            self.anchors = net.predict_anchors(code)[0]                                    # [A, 3]
            origins = torch.cat([self.anchors, torch.zeros_like(self.anchors[:1])])        # [E, 3]
            glob = code[0, :cfg.global_latent_dim]
            local = code[0, cfg.global_latent_dim:].reshape(cfg.ensemble_size, cfg.local_latent_dim)
            lat = torch.cat([glob.expand(cfg.ensemble_size, -1), local], dim=-1)           # [E, G+L]
            ens = net.ensembled_deep_sdf
            self.skip = ens.skip
            self.weights, self.biases = [], []
            for i, lin in enumerate(ens.layers()):
                W, b = lin.weight, lin.bias                                               # [E, out, in], [E, out]
                if i == 0 or i == ens.skip:
                    scale = 1.0 if i == 0 else 1.0 / math.sqrt(2.0)
                    n_prev = W.shape[2] - cfg.member_input_dim                              # 0 for the first layer
                    W_prev = W[:, :, :n_prev]
                    W_xyz = W[:, :, n_prev:n_prev + 3]
                    W_lat = W[:, :, n_prev + 3:]
                    b = b + scale * (torch.einsum("eoi,ei->eo", W_lat, lat) - torch.einsum("eoi,ei->eo", W_xyz, origins))
                    W = scale * torch.cat([W_prev, W_xyz], dim=2)
                self.weights.append(W.transpose(1, 2).contiguous())                          # [E, in, out]
                self.biases.append(b.contiguous())                                           # [E, out]

    @torch.no_grad()
    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        if points.shape[0] <= self.block:
            return self._block(points)
        return torch.cat([self._block(points[i:i + self.block]) for i in range(0, points.shape[0], self.block)])

    def _block(self, points: torch.Tensor) -> torch.Tensor:
        xyz = points.to(self.weights[0]).reshape(-1, 3)
        w = blend_weights(xyz.unsqueeze(0), self.anchors.unsqueeze(0), self.cfg.sigma, self.cfg.const)[0]
        out = torch.zeros(xyz.shape[0], dtype=xyz.dtype, device=xyz.device)
        background = self.cfg.ensemble_size - 1
        for k in range(self.cfg.ensemble_size):
            idx = None if k == background or self.skip_weight <= 0 else (w[:, k] > self.skip_weight).nonzero()[:, 0]
            pts = xyz if idx is None else xyz[idx]
            if pts.shape[0] == 0:
                continue
            x = torch.addmm(self.biases[0][k], pts, self.weights[0][k])
            for i in range(1, len(self.weights)):
                x = F.softplus(x, beta=100)
                if i == self.skip:
                    x = torch.cat([x, pts], dim=-1)
                x = torch.addmm(self.biases[i][k], x, self.weights[i][k])
            if idx is None:
                out += w[:, k] * x[:, 0]
            else:
                out.index_add_(0, idx, w[idx, k] * x[:, 0])
        return out


def evaluate_chunked(fn, points: torch.Tensor, chunk_size: int, on_chunk=None) -> torch.Tensor:
    """Apply `fn` to `points` [M, 3] in chunks; `on_chunk(n_done)` is called after each chunk."""
    out = torch.empty(points.shape[0], dtype=torch.float32, device=points.device)
    for start in range(0, points.shape[0], chunk_size):
        stop = min(start + chunk_size, points.shape[0])
        out[start:stop] = fn(points[start:stop])
        if on_chunk is not None:
            on_chunk(stop - start)
    return out
