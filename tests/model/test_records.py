"""The epoch record: one Parquet schema for debug's metrics.parquet and a sweep's epochs/, derived from the methods."""

import pyarrow as pa
import pytest

from cycleseg.model.methods import METHODS
from cycleseg.model.records import EPOCH_FIELDS, epoch_schema, epoch_table


def record(epoch, **losses):
    return {"epoch": epoch, "val_miou": 0.5, "val_pixel_acc": 0.9, "val_class_iou": [0.1, float("nan")], "lr": 1e-3,
            "epoch_seconds": 2.0, "diverged": False, **{f"loss_{k}": v for k, v in losses.items()}}


@pytest.mark.parametrize("method", METHODS.names())
def test_every_declared_loss_term_has_a_column(method):
    names = epoch_schema().names
    assert all(f"loss_{t}" in names for t in METHODS.get(method).LOSS_TERMS)


def test_table_has_the_record_fields_then_losses_and_keeps_nan():
    t = epoch_table([record(1, S_gen=1.5, G_total=2.0), record(2, S_gen=0.5, G_total=1.0)])
    assert t.schema.names[: len(EPOCH_FIELDS)] == [f.name for f in EPOCH_FIELDS]
    rows = t.to_pylist()
    assert [r["loss_S_gen"] for r in rows] == [1.5, 0.5] and rows[0]["loss_I_gen"] is None
    assert rows[0]["val_class_iou"][0] == 0.1 and rows[0]["val_class_iou"][1] != rows[0]["val_class_iou"][1]


def test_prefix_columns_come_first():
    prefix = (pa.field("trial_id", pa.string()),)
    t = epoch_table([record(1, S_gen=1.0)], {"trial_id": "t7"}, prefix)
    assert t.schema.names[0] == "trial_id" and t.column("trial_id").to_pylist() == ["t7"]


def test_a_loss_no_method_declares_is_a_contract_error():
    with pytest.raises(ValueError, match="mystery"):
        epoch_table([record(1, S_gen=1.0, mystery=2.0)])
