"""Which torch device a config's ``device`` names, and the memory layout used there: their own place, so the
trainer, the methods and the checkpoint reader (which rebuilds a method for reports) use them without importing
each other."""

from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when torch sees a GPU, else CPU; ``cuda`` without a GPU is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("device 'cuda' asked for but torch sees no GPU; use --device cpu or auto")
    return torch.device(name)


def resolve_memory_format(channels_last: bool | None, device: torch.device) -> torch.memory_format:
    """The layout of images and weights: None (auto) = channels_last on CUDA (cuDNN's fast NHWC kernels), contiguous
    elsewhere (on CPU, instance norm returns NCHW, so channels_last pays a layout copy around every one)."""
    if channels_last is None:
        channels_last = device.type == "cuda"
    return torch.channels_last if channels_last else torch.contiguous_format
