"""Epoch records as ``run_trial`` reports them (``cycleseg.model.records.EPOCH_FIELDS``), for tests that
write results without training.

``test_miou`` defaults to ``1 − val_miou``: a test split that ranks trials the opposite way from val,
so anything that chose on test would pick a different winner than a choice on val.
"""

from __future__ import annotations

import math
from typing import Any

from cycleseg.model.config import RAMPED_LAMBDAS
from cycleseg.model.records import EPOCH_FIELDS, effective_column

STEPS_PER_EPOCH = 10
BATCH = 5


def epoch_record(
    epoch: int,
    val_miou: float,
    *,
    test_miou: float | None = None,
    n_classes: int = 11,
    diverged: bool = False,
    losses: dict[str, float] | None = None,
    unlabeled: bool = True,
    steps_per_epoch: int = STEPS_PER_EPOCH,
    val_class_iou: list[float] | None = None,
    test_class_iou: list[float] | None = None,
    effective: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One complete record; class IoUs default to the split's mIoU for every class; ``effective`` the λ2…λ5
    acting in the epoch (None: a method without them)."""
    test = 1.0 - val_miou if test_miou is None and math.isfinite(val_miou) else test_miou
    test = math.nan if test is None else test
    steps = epoch * steps_per_epoch
    rec = {
        "epoch": epoch,
        "val_miou": val_miou,
        "val_pixel_acc": 0.5 + epoch / 100,
        "val_class_iou": val_class_iou if val_class_iou is not None else [val_miou] * n_classes,
        "test_miou": test,
        "test_pixel_acc": 0.4 + epoch / 100,
        "test_class_iou": test_class_iou if test_class_iou is not None else [test] * n_classes,
        "lr": 2e-4 / epoch,
        "epoch_seconds": 1.5,
        "diverged": diverged,
        "steps": steps,
        "labeled_images_seen": steps * BATCH,
        "unlabeled_images_seen": steps * BATCH if unlabeled else 0,
        **{effective_column(lam): (effective or {}).get(lam) for lam in RAMPED_LAMBDAS},
        **{f"loss_{k}": v for k, v in (losses or {"S_gen": 1.0 / epoch, "G_total": 2.0 / epoch}).items()},
    }
    missing = {f.name for f in EPOCH_FIELDS} - set(rec)
    assert not missing, f"tests/records.py lacks the record field(s) {missing}"
    return rec
