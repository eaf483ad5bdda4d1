"""The liRBSM network: a local ensemble of DeepSDFs anchored at six landmarks, blended with Gaussian weights.

This is the plain, differentiable path used for training and as the reference for `fast_eval`. Parameter
names match the official checkpoints (`ensembled_deep_sdf.lin0..`, `anchor_mlp.0/2/4`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class EnsembleLinear(nn.Module):
    """`E` independent linear layers applied at once: x [E, M, in] -> [E, M, out]."""

    def __init__(self, ensemble_size: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, out_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class EnsembleDeepSDF(nn.Module):
    """DeepSDF members with Softplus(beta=100) and one skip connection that re-feeds the input / sqrt(2)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d_in = cfg.member_input_dim
        dims = [d_in] + [cfg.hidden_dim] * cfg.num_layers + [cfg.output_dim]
        self.skip = cfg.skip_layer
        self.num_linear = len(dims) - 1
        for i in range(self.num_linear):
            out = dims[i + 1] - d_in if i + 1 == self.skip else dims[i + 1]
            setattr(self, f"lin{i}", EnsembleLinear(cfg.ensemble_size, dims[i], out))
        self.activation = nn.Softplus(beta=100)

    def layers(self) -> list[EnsembleLinear]:
        return [getattr(self, f"lin{i}") for i in range(self.num_linear)]

    def forward(self, member_input: torch.Tensor) -> torch.Tensor:
        """member_input [E, M, d_in] -> [E, M, out]."""
        x = member_input
        for i, lin in enumerate(self.layers()):
            if i == self.skip:
                x = torch.cat([x, member_input], dim=-1) / math.sqrt(2.0)
            x = lin(x)
            if i < self.num_linear - 1:
                x = self.activation(x)
        return x


def blend_weights(points: torch.Tensor, anchors: torch.Tensor, sigma: float, const: float) -> torch.Tensor:
    """Normalised Gaussian blending weights [B, N, A+1]; the last column is the constant background member."""
    d2 = ((points.unsqueeze(2) - anchors.unsqueeze(1)).norm(dim=-1) + 1e-5) ** 2
    logits = torch.cat([-d2, torch.full_like(d2[..., :1], -const)], dim=-1) / sigma ** 2
    w = logits.exp()
    return w / (w.sum(dim=-1, keepdim=True) + 1e-6)


class LocalEnsembleSDF(nn.Module):
    """codes [B, latent_dim] and points [B, N, 3] -> SDF [B, N] and predicted anchors [B, A, 3]."""

    def __init__(self, cfg: ModelConfig, average_anchors: torch.Tensor):
        super().__init__()
        self.cfg = cfg
        self.ensembled_deep_sdf = EnsembleDeepSDF(cfg)
        h = cfg.anchor_mlp_hidden_dim
        self.anchor_mlp = nn.Sequential(nn.Linear(cfg.global_latent_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                                        nn.Linear(h, 3 * cfg.num_anchors))
        self.register_buffer("average_anchors", torch.as_tensor(average_anchors, dtype=torch.float32).clone(),
                             persistent=False)

    def predict_anchors(self, codes: torch.Tensor) -> torch.Tensor:
        offsets = self.anchor_mlp(codes[:, :self.cfg.global_latent_dim]).reshape(-1, self.cfg.num_anchors, 3)
        return offsets + self.average_anchors.to(offsets)

    def member_inputs(self, points: torch.Tensor, codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """[E, B*N, 3 + global + local]: each member sees xyz relative to its anchor (background: global xyz)."""
        cfg = self.cfg
        B, N, _ = points.shape
        origins = torch.cat([anchors, torch.zeros_like(anchors[:, :1])], dim=1)          # [B, E, 3]
        xyz = points.unsqueeze(0) - origins.permute(1, 0, 2).unsqueeze(2)                 # [E, B, N, 3]
        glob = codes[:, :cfg.global_latent_dim]                                           # [B, G]
        local = codes[:, cfg.global_latent_dim:].reshape(B, cfg.ensemble_size, cfg.local_latent_dim)
        lat = torch.cat([glob.unsqueeze(1).expand(-1, cfg.ensemble_size, -1), local], dim=-1)  # [B, E, G+L]
        lat = lat.permute(1, 0, 2).unsqueeze(2).expand(-1, -1, N, -1)                    # [E, B, N, G+L]
        return torch.cat([xyz, lat], dim=-1).reshape(cfg.ensemble_size, B * N, -1)

    def forward_sparse(self, points: torch.Tensor, codes: torch.Tensor,
                       threshold: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward` for training and fitting: differentiable in points, codes and weights, but cheaper.

        Each member runs only on the points whose normalised blend weight exceeds `threshold` (a point far from
        an anchor gets nothing from that member; dropped terms change the SDF by at most `threshold` times a
        member's value), and the 192 code inputs of the first and the skip layer are multiplied once per
        shape instead of once per point. `threshold=0` computes every member everywhere (same function as
        `forward`)."""
        cfg = self.cfg
        B, N, _ = points.shape
        E, G, d = cfg.ensemble_size, cfg.global_latent_dim, cfg.input_dim
        anchors = self.predict_anchors(codes)
        w = blend_weights(points, anchors, cfg.sigma, cfg.const).reshape(B * N, E)
        origins = torch.cat([anchors, torch.zeros_like(anchors[:, :1])], dim=1)              # [B, E, 3]
        local = codes[:, G:].reshape(B, E, cfg.local_latent_dim)
        lat = torch.cat([codes[:, :G].unsqueeze(1).expand(-1, E, -1), local], dim=-1)        # [B, E, C]
        flat = points.reshape(B * N, 3)
        # Per-point rows of per-shape values: broadcast for one shape (fitting), index_select otherwise. Plain
        # advanced indexing would back-propagate through a serial accumulate (a third of the fit's time).
        shape_of = None if B == 1 else torch.arange(B, device=points.device).repeat_interleave(N)

        def per_point(values: torch.Tensor, sel: torch.Tensor | None) -> torch.Tensor:
            if shape_of is None:
                return values
            return values.index_select(0, shape_of if sel is None else shape_of.index_select(0, sel))

        ens = self.ensembled_deep_sdf
        layers = ens.layers()
        inv_sqrt2 = 1.0 / math.sqrt(2.0)
        k = layers[ens.skip].weight.shape[2] - lat.shape[2] - d          # features fed into the skip layer
        # The code's share of the first and the skip layer, for all members at once: [B, E, hidden].
        code_bias = [torch.einsum("bec,eoc->beo", lat * scale, lin.weight[:, :, first:]) + lin.bias
                     for lin, first, scale in ((layers[0], d, 1.0), (layers[ens.skip], k + d, inv_sqrt2))]
        out = torch.zeros(B * N, dtype=points.dtype, device=points.device)
        for e in range(E):
            sel = (w[:, e] > threshold).nonzero().squeeze(1) if threshold > 0 else None
            if sel is not None and sel.numel() == 0:
                continue
            xyz = (flat if sel is None else flat.index_select(0, sel)) - per_point(origins[:, e], sel)
            x = xyz
            for i, lin in enumerate(layers):
                wt, b = lin.weight[e], lin.bias[e]
                if i == 0:
                    x = F.linear(xyz, wt[:, :d], per_point(code_bias[0][:, e], sel))
                elif i == ens.skip:
                    x = F.linear(torch.cat([x, xyz], dim=-1) * inv_sqrt2, wt[:, :k + d],
                                 per_point(code_bias[1][:, e], sel))
                else:
                    x = F.linear(x, wt, b)
                if i < len(layers) - 1:
                    x = ens.activation(x)
            we = w[:, e] if sel is None else w[:, e].index_select(0, sel)
            term = we * x[:, 0]
            out = out + term if sel is None else out.index_add(0, sel, term)
        return out.reshape(B, N), anchors

    def forward(self, points: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, N, _ = points.shape
        anchors = self.predict_anchors(codes)
        member_sdf = self.ensembled_deep_sdf(self.member_inputs(points, codes, anchors))  # [E, B*N, 1]
        member_sdf = member_sdf[..., 0].reshape(self.cfg.ensemble_size, B, N).permute(1, 2, 0)
        w = blend_weights(points, anchors, self.cfg.sigma, self.cfg.const)
        return (w * member_sdf).sum(dim=-1), anchors


@torch.no_grad()
def geometric_init(net: LocalEnsembleSDF, radius: float = 0.5) -> LocalEnsembleSDF:
    """Initialise every member so that, at code zero, it approximates the SDF of a sphere of `radius` about
    its own origin (Atzmon & Lipman's geometric init, adapted to the skip layer). Members are then blended
    into a smooth, well-behaved SDF: a sound starting point for training and a realistic test model."""
    ens = net.ensembled_deep_sdf
    layers = ens.layers()
    d_in = net.cfg.member_input_dim
    for i, lin in enumerate(layers):
        out_dim, in_dim = lin.weight.shape[1:]
        if i == len(layers) - 1:
            nn.init.normal_(lin.weight, mean=math.sqrt(math.pi) / math.sqrt(in_dim), std=1e-4)
            nn.init.constant_(lin.bias, -radius)
            continue
        nn.init.constant_(lin.bias, 0.0)
        nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0) / math.sqrt(out_dim))
        if i == 0:
            lin.weight[:, :, 3:] = 0.0                                  # ignore the code at init
        if i == ens.skip:
            lin.weight[:, :, -(d_in - 3):] = 0.0                       # ignore the re-fed code at init
    nn.init.zeros_(net.anchor_mlp[-1].weight)
    nn.init.zeros_(net.anchor_mlp[-1].bias)
    return net
