"""Which torch device a config's ``device`` names: its own place, so the trainer and the checkpoint reader
(which rebuilds a method for reports) both use it without importing each other."""

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
