"""The per-epoch record: what ``run_trial`` reports each epoch, and its one Parquet schema.

A record is a dict with the keys of ``EPOCH_FIELDS`` plus ``loss_<term>`` for each loss term the
method logged that epoch (``Method.LOSS_TERMS``; the epoch mean). ``debug`` writes records to
``metrics.parquet`` and a sweep to ``epochs/<trial_id>.parquet`` (with the trial's identifiers in
front), both through ``epoch_table``, so the two files have the same columns.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from cycleseg.model.methods import loss_terms

EPOCH_FIELDS: tuple[pa.Field, ...] = (
    pa.field("epoch", pa.int64()),  # 1-based
    pa.field("val_miou", pa.float64()),
    pa.field("val_pixel_acc", pa.float64()),
    pa.field("val_class_iou", pa.list_(pa.float64())),
    pa.field("lr", pa.float64()),  # the generators' lr during the epoch
    pa.field("epoch_seconds", pa.float64()),  # training + evaluation
    pa.field("diverged", pa.bool_()),  # a loss became NaN/inf: the run stopped after this epoch
)


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
