"""Mask conventions shared by data, losses, metrics and pictures: class indices, 255 = no label.

``IGNORE`` marks pixels without a label (VOC object boundaries, Cityscapes void, the rim of a digit):
they count in no loss and no metric. Ground-truth masks enter G_SI and the discriminators as one-hot
maps (C channels, paper §3.1), where an ignored pixel is the all-zero vector.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE = 255


def one_hot(mask: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(B, H, W) class indices → (B, C, H, W) one-hot; ignored (255) pixels become all-zero vectors."""
    valid = mask != IGNORE
    index = torch.where(valid, mask, torch.zeros_like(mask)).unsqueeze(1)
    out = torch.zeros(mask.shape[0], num_classes, *mask.shape[1:], dtype=dtype, device=mask.device)
    return out.scatter_(1, index, valid.unsqueeze(1).to(dtype))


def predicted_classes(logits: Tensor) -> Tensor:
    """(B, C, H, W) scores → (B, H, W) class of the highest score, the first on ties (what ``argmax(1)`` gives).
    ``max(1).indices`` because on a contiguous (NCHW) tensor CPU's ``argmax`` over dim 1 is ~3.7× slower, a fifth
    of a tiny model's evaluation (channels_last puts the classes innermost, where both are fast)."""
    return logits.max(dim=1).indices
