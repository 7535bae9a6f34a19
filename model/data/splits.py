"""Splits: which training images are labeled, and the train / val / test splits.

Every dataset has three splits. ``train`` is what methods learn from (a ``labeled_fraction`` of it with
masks); ``val`` is used for every choice a sweep makes (best epoch, early stopping, the λ search,
best-config); ``test`` is what tables report and is never used for a choice. Where a dataset ships
only two splits, the shipped evaluation split becomes ``test`` and ``val`` is held out from the
shipped training split (``val_fraction`` of it, drawn with ``split_seed``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import UserError

TEST_SHARE = 0.25  # ACDC: the paper's 25 of 100 exams, now the test patients


def _count(n: int, share: float) -> int:
    """round(share · n), half up."""
    return math.floor(share * n + 0.5)


def labeled_count(n_train: int, labeled_fraction: float) -> int:
    """How many of ``n_train`` images are labeled: round(fraction·n), half up, at least 1."""
    return min(n_train, max(1, _count(n_train, labeled_fraction)))


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
    perm = np.random.default_rng(seed).permutation(n_train)
    return np.sort(perm[: labeled_count(n_train, labeled_fraction)]).astype(np.int64)


def hold_out_count(n: int, val_fraction: float) -> int:
    """How many of ``n`` items ``hold_out`` holds out: round(val_fraction·n), at least 1, leaving at least 1."""
    return min(n - 1, max(1, _count(n, val_fraction)))


def hold_out(n: int, val_fraction: float, seed: int, what: str = "training images") -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of ``n`` items: round(val_fraction·n) (≥ 1) held out by a permutation from ``seed``.

    Both sides keep at least one item. Sorted int64.
    """
    if n < 2:
        raise UserError(f"{n} {what}: at least 2 are needed to hold out a validation split; add data")
    k = hold_out_count(n, val_fraction)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]).astype(np.int64), np.sort(perm[:k]).astype(np.int64)


def split_patients(patients: Sequence[str], seed: int, val_fraction: float) -> tuple[list[str], list[str], list[str]]:
    """(train, val, test) patients: ``TEST_SHARE`` of them for test, then ``val_fraction`` of the rest for val.

    One permutation from ``seed``; no patient on two sides; at least one on each.
    """
    if len(patients) < 3:
        raise UserError(f"ACDC needs at least 3 patients to split train/val/test by patient, found {len(patients)}")
    order = sorted(patients)
    perm = np.random.default_rng(seed).permutation(len(order))
    n_test = min(len(order) - 2, max(1, _count(len(order), TEST_SHARE)))
    rest = perm[n_test:]
    train_i, val_i = hold_out(len(rest), val_fraction, seed + 1, "training patients")
    test = sorted(order[i] for i in perm[:n_test])
    return sorted(order[i] for i in rest[train_i]), sorted(order[i] for i in rest[val_i]), test
