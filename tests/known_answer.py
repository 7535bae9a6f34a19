"""A method whose val mIoU is a known function of lambda_2, the labeled fraction, the seed and the epoch,
for tests of searches and early stopping (a plugin: ``CYCLESEG_PLUGINS=tests.known_answer``).

It trains nothing: ``optimize_parameters`` only counts steps, and each split's confusion matrix is built
to have exactly ``known_miou`` (two classes with IoU v each). Per cell the optimum is at
``OPTIMUM[fraction]``; every 10 % value lies below every 20 % value, so a scheduler that ranked the
two cells together would stop the whole 10 % cell.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cycleseg.model.methods import METHODS, Batch, Partial
from cycleseg.model.metrics import ConfusionMatrix

OPTIMUM = {0.1: 0.01, 0.2: 0.1}  # lambda_2 with the best score, per labeled fraction
PEAK = {0.1: 0.3, 0.2: 0.7}  # the score there at the last epoch
CURVATURE = 0.05  # loss per squared decade away from the optimum


def known_miou(lambda_2: float, fraction: float, seed: int, epoch: int, epochs: int) -> float:
    """The score: a parabola in log10(lambda_2) around the cell's optimum, rising with the epoch, + 0.002 · seed."""
    f = round(fraction, 6)
    distance = math.log10(lambda_2) - math.log10(OPTIMUM[f])
    return (PEAK[f] - CURVATURE * distance**2) * (0.5 + 0.5 * epoch / epochs) + 0.002 * seed


@METHODS.register("known_answer")
class KnownAnswer(Partial):
    """``partial``'s networks, untouched; its splits score ``known_miou`` at the current epoch."""

    def optimize_parameters(self, batch: Batch) -> dict[str, Tensor]:
        self.iteration += 1
        zero = torch.zeros((), device=self.device)
        return {"S_gen": zero, "G_total": zero}

    def confusion_matrix(self, images: np.ndarray, masks: np.ndarray, batch_size: int) -> ConfusionMatrix:
        epoch = round(self.iteration * self.cfg.epochs / self.total_iters)
        v = known_miou(self.cfg.lambda_2, self.cfg.labeled_fraction, self.cfg.seed, epoch, self.cfg.epochs)
        a = 1_000_000
        cm = ConfusionMatrix(self.info.num_classes, self.device)
        cm.mat[0, 0] = cm.mat[1, 1] = a  # IoU of each class: a / (a + 2b) = v
        cm.mat[0, 1] = cm.mat[1, 0] = round(a * (1 - v) / (2 * v))
        return cm


def result_for(cfg: dict[str, Any], epoch: int) -> dict[str, Any]:
    """What a trial of ``cfg`` reports in ``epoch`` (for driving a scheduler or searcher without Ray)."""
    v = known_miou(cfg["lambda_2"], cfg["labeled_fraction"], cfg["seed"], epoch, cfg["epochs"])
    return {"epoch": epoch, "val_miou": v}
