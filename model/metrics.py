"""Segmentation metrics from one confusion matrix over the whole validation set.

The paper (§4.2) defines mIoU as TP / (TP + FP + FN) over the validation set. We count every class,
background included (the authors' code drops background for VOC, which inflates the score), and
ignore pixels whose target is 255. Accumulating counts, not per-batch IoUs, makes the result
independent of batch size and of how a set is sharded across DDP ranks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .masks import IGNORE, predicted_classes

LEARNED_IOU = 0.01  # a class with a lower IoU was not learned


def predicts_one_class(class_iou: Any) -> bool:
    """Whether at most one class reaches ``LEARNED_IOU``: the network predicts essentially one class (usually
    background), so its mIoU says nothing about what it learned."""
    return int(np.count_nonzero(np.nan_to_num(np.asarray(class_iou, float)) >= LEARNED_IOU)) <= 1


class ConfusionMatrix:
    """``mat[t, p]`` counts pixels of target class t predicted as class p (int64, on the inputs' device).

    IoU of class c = TP / (TP + FP + FN) with TP = mat[c, c], FP = column c minus TP, FN = row c
    minus TP. A class absent from both the targets and the predictions (TP + FP + FN = 0) has no
    defined IoU: ``class_iou`` reports it as NaN and ``miou`` averages over the other classes. A class
    present only in the predictions (or only in the targets) counts, with IoU 0.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch. ``pred``: class indices shaped like ``target``, or scores (B, C, H, W) whose
        argmax over dim 1 is taken; ``target``: class indices, 255 = ignore.
        """
        if pred.dim() == target.dim() + 1:
            pred = predicted_classes(pred)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}")
        c = self.num_classes
        target = target.to(device=self.mat.device, dtype=torch.int64)
        pred = pred.to(device=self.mat.device, dtype=torch.int64)
        # Ignored pixels go to bin C*C, out-of-range ones to C*C+1 (an error); both are dropped.
        ignore = target == IGNORE
        bad = ~ignore & ((target < 0) | (target >= c) | (pred < 0) | (pred >= c))
        idx = torch.where(ignore, c * c, torch.where(bad, c * c + 1, target * c + pred)).flatten()
        counts = torch.bincount(idx, minlength=c * c + 2)
        if counts[c * c + 1] > 0:
            raise ValueError(f"pred or target holds a class outside 0..{c - 1} (target {IGNORE} = ignore)")
        self.mat += counts[: c * c].view(c, c)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """A new matrix with both counts (e.g. per-rank matrices; under DDP all-reduce ``mat`` instead)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class counts into {self.num_classes}-class ones")
        out = ConfusionMatrix(self.num_classes, self.mat.device)
        out.mat = self.mat + other.mat.to(self.mat.device)
        return out

    __add__ = merge

    def _iou(self) -> torch.Tensor:
        m = self.mat.detach().to("cpu", torch.float64)
        tp = m.diagonal()
        union = m.sum(dim=0) + m.sum(dim=1) - tp  # TP + FP + FN
        return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, math.nan))

    def class_iou(self) -> list[float]:
        """IoU per class; NaN for a class absent from both targets and predictions."""
        return [float(v) for v in self._iou()]

    def miou(self) -> float:
        """Mean IoU over the classes that occur (in targets or predictions); NaN if none do."""
        iou = self._iou()
        present = ~torch.isnan(iou)
        return float(iou[present].mean()) if bool(present.any()) else math.nan

    def pixel_accuracy(self) -> float:
        """Correct / counted (non-ignored) pixels; NaN before any pixel was counted."""
        total = int(self.mat.sum())
        return int(self.mat.diagonal().sum()) / total if total else math.nan
