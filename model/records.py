"""The per-epoch record: what ``run_trial`` reports each epoch, its one Parquet schema, and the epoch a trial reports.

A record is a dict with the keys of ``EPOCH_FIELDS`` (the ``<λ>_effective`` ones only from methods
that weight terms by λ2…λ5) plus ``loss_<term>`` for each loss term the
method logged that epoch (``Method.LOSS_TERMS``; the epoch mean). ``debug`` writes records to
``metrics.parquet`` and a sweep to ``epochs/<trial_id>.parquet`` (with the trial's identifiers in
front), both through ``epoch_table``, so the two files have the same columns.

Choose on val, report on test: each record holds both splits' metrics, ``selected_epoch`` picks the
reported epoch by val alone (config ``select``), and ``for_choices`` strips every test metric from a
record before anything that makes a choice (Tune's schedulers and searchers) can see it.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from .config import RAMPED_LAMBDAS, SELECT_RULES
from .methods import loss_terms

SPLITS = ("val", "test")  # evaluated after every epoch
TEST_PREFIX = "test_"
EPOCH_FIELDS: tuple[pa.Field, ...] = (
    pa.field("epoch", pa.int64()),  # 1-based
    *(f for split in SPLITS for f in (
        pa.field(f"{split}_miou", pa.float64()),
        pa.field(f"{split}_pixel_acc", pa.float64()),
        pa.field(f"{split}_class_iou", pa.list_(pa.float64())),
    )),
    pa.field("lr", pa.float64()),  # the generators' lr during the epoch
    pa.field("epoch_seconds", pa.float64()),  # training + evaluation
    pa.field("diverged", pa.bool_()),  # a loss became NaN/inf: the run stopped after this epoch
    # the budget so far (equal for every method at the same dataset, fraction, seed, epochs, batch size)
    pa.field("steps", pa.int64()),  # optimizer steps (each updates the generators, and the discriminators if any)
    pa.field("labeled_images_seen", pa.int64()),
    pa.field("unlabeled_images_seen", pa.int64()),
    # the λ2…λ5 acting in the epoch after the warm-up and ramp-up (cyclegan; null for methods without them)
    *(pa.field(f"{lam}_effective", pa.float64()) for lam in RAMPED_LAMBDAS),
)


def effective_column(lam: str) -> str:
    """The epoch record's column of λ ``lam`` as it acted in the epoch (``lambda_4`` → ``lambda_4_effective``)."""
    if lam not in RAMPED_LAMBDAS:
        raise ValueError(f"{lam} is not warmed up or ramped; those are {', '.join(RAMPED_LAMBDAS)}")
    return f"{lam}_effective"


def loss_column(term: str) -> str:
    return f"loss_{term}"


def epoch_schema(prefix: tuple[pa.Field, ...] = ()) -> pa.Schema:
    """``prefix`` columns, the record's fields, then one float column per loss term of any registered method."""
    return pa.schema([*prefix, *EPOCH_FIELDS, *(pa.field(loss_column(t), pa.float64()) for t in loss_terms())])


def epoch_table(history: list[dict[str, Any]], prefix: dict[str, Any] | None = None,
                prefix_fields: tuple[pa.Field, ...] = ()) -> pa.Table:
    """Records as a table of ``epoch_schema(prefix_fields)``; ``prefix`` holds the values of those columns.

    A loss key that no registered method declares is a contract break and raises.
    """
    schema = epoch_schema(prefix_fields)
    known = set(schema.names)
    rows = []
    for m in history:
        unknown = {k for k in m if k.startswith("loss_")} - known
        if unknown:
            raise ValueError(f"loss terms {sorted(unknown)} are not declared in any method's LOSS_TERMS")
        rows.append({**(prefix or {}), **{k: m.get(k) for k in schema.names if k not in (prefix or {})}})
    return pa.Table.from_pylist(rows, schema=schema)


def is_finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def choice_metrics() -> tuple[str, ...]:
    """The per-epoch numbers a scheduler or searcher may rank on: every numeric one but the test metrics."""
    numeric = (pa.types.is_floating, pa.types.is_integer)
    base = [f.name for f in EPOCH_FIELDS if any(t(f.type) for t in numeric) and not f.name.startswith(TEST_PREFIX)]
    return (*base, *(loss_column(t) for t in loss_terms()))


def for_choices(record: dict[str, Any]) -> dict[str, Any]:
    """The record without its test metrics: what schedulers, searchers and exports may read."""
    return {k: v for k, v in record.items() if not k.startswith(TEST_PREFIX)}


def selected_epoch(history: list[dict[str, Any]], select: str) -> dict[str, Any] | None:
    """The record a trial reports, chosen on val alone: the best val mIoU (the earliest on a tie), or the
    last epoch; None when no epoch has a finite val mIoU (for ``final``: when the last one has none)."""
    if select not in SELECT_RULES:
        raise ValueError(f"select must be one of {SELECT_RULES}, got {select!r}")
    scored = [m for m in history if is_finite(m.get("val_miou"))]
    if select == "final":
        return history[-1] if history and history[-1] in scored else None
    return max(scored, key=lambda m: m["val_miou"]) if scored else None
