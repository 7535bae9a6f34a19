"""Splits: which training images are labeled, and train/val splits a dataset does not ship."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cycleseg.model.errors import UserError


def labeled_indices(n_train: int, labeled_fraction: float, seed: int) -> np.ndarray:
    """Indices of the labeled training images: the first round(fraction·n) (≥ 1) of one permutation.

    One permutation per seed makes the subsets nested: for the same seed the 10 % subset lies
    inside the 20 % one, so a fraction sweep adds labels rather than drawing new ones.
    Rounding is half up. Returns sorted int64.
    """
    if n_train < 1:
        raise UserError("the dataset has no training images; check data_root and the split lists")
    if not (0.0 < labeled_fraction <= 1.0):
        raise UserError(f"labeled_fraction must be in (0, 1], got {labeled_fraction}")
    k = min(n_train, max(1, math.floor(labeled_fraction * n_train + 0.5)))
    perm = np.random.default_rng(seed).permutation(n_train)
    return np.sort(perm[:k]).astype(np.int64)


VAL_SHARE = 0.25  # ACDC: the paper's 75 exams train, 25 val


def split_patients(patients: Sequence[str], seed: int) -> tuple[list[str], list[str]]:
    """(train, val) patients, 3:1 by a permutation from ``seed``; at least one on each side."""
    if len(patients) < 2:
        raise UserError(f"ACDC needs at least 2 patients to split train/val by patient, found {len(patients)}")
    order = sorted(patients)
    perm = np.random.default_rng(seed).permutation(len(order))
    n_val = min(len(order) - 1, max(1, math.floor(len(order) * VAL_SHARE + 0.5)))
    val = sorted(order[i] for i in perm[:n_val])
    train = sorted(order[i] for i in perm[n_val:])
    return train, val
