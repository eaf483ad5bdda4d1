"""Choosing the torch device and using every CPU core."""
from __future__ import annotations

import os

import torch

from .errors import UserError


def default_device() -> str:
    """CUDA if available, else Apple's MPS, else CPU."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_device(name: str | None) -> torch.device:
    """`None`/'auto' picks the best available; an unavailable device is a clear user error."""
    if name in (None, "", "auto"):
        name = default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}' (expected cpu, cuda, cuda:N, mps or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but CUDA is not available here (use --device cpu)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"device '{name}' requested but Apple MPS is not available here (use --device cpu)")
    if device.type == "cpu":
        use_all_cores()
    return device


def use_all_cores() -> None:
    """Let torch use every core unless the user pinned a thread count."""
    if "OMP_NUM_THREADS" not in os.environ and "MKL_NUM_THREADS" not in os.environ:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
