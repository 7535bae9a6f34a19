"""Sweep results as Parquet, one file per trial, under ``<storage>/<sweep>/``: the one writer and the one reader.

``trials/<trial_id>.parquet`` holds one row per trial (``TRIALS_SCHEMA``), ``epochs/<trial_id>.parquet``
one row per epoch (``EPOCHS_SCHEMA``: the epoch record of ``cycleseg.model.records`` behind the trial's
identifiers). Every file has its folder's one schema, so each folder reads as a dataset with no extra
step: ``pd.read_parquet(dir / "trials")``, ``pyarrow.dataset``, DuckDB ``read_parquet('dir/trials/*.parquet')``,
Polars. Files are written atomically, the epochs file before the trials file: a trial file means done.
``read_sweeps`` is how report and best-config read them.
"""

from __future__ import annotations

import functools
import io
import json
import subprocess
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ...model.config import RAMPED_LAMBDAS, TrialConfig, complete
from ...model.data import dataset_info
from ...model.errors import UserError
from ...model.records import effective_column, epoch_schema, epoch_table, selected_epoch
from .. import storage
from ..planning.spec import configuration_key

TRIALS_DIR = "trials"
EPOCHS_DIR = "epochs"
STATUSES = ("completed", "early_stopped", "diverged", "failed")


def _arrow_type(tp: Any) -> pa.DataType:
    while typing.get_origin(tp) is typing.Annotated or isinstance(tp, types.UnionType) \
            or typing.get_origin(tp) is typing.Union:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
        else:  # X | None: a nullable X
            (tp,) = (a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is typing.Literal:
        return pa.string()
    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}[tp]


_HINTS = typing.get_type_hints(TrialConfig, include_extras=True)
CONFIG_COLUMNS: tuple[pa.Field, ...] = tuple(pa.field(name, _arrow_type(tp)) for name, tp in _HINTS.items())
ID_FIELDS: tuple[pa.Field, ...] = (
    pa.field("sweep", pa.string()),
    pa.field("trial_id", pa.string()),
    pa.field("config_hash", pa.string()),
)

TRIALS_SCHEMA = pa.schema(
    [
        *ID_FIELDS,
        pa.field("group_hash", pa.string()),  # hash without the seed: replicates share it
        pa.field("variant", pa.string()),
        pa.field("status", pa.string()),
        *CONFIG_COLUMNS,
        pa.field("config_json", pa.string()),
        # the reported epoch, chosen on val by the config's `select` (records.selected_epoch), and its metrics
        pa.field("selected_epoch", pa.int64()),
        pa.field("val_miou", pa.float64()),
        pa.field("val_class_iou", pa.list_(pa.float64())),
        pa.field("test_miou", pa.float64()),
        pa.field("test_pixel_acc", pa.float64()),
        pa.field("test_class_iou", pa.list_(pa.float64())),
        pa.field("best_val_miou", pa.float64()),  # the best val mIoU of any epoch, and that epoch
        pa.field("best_epoch", pa.int64()),
        pa.field("final_val_miou", pa.float64()),  # the last epoch's
        pa.field("final_test_miou", pa.float64()),
        pa.field("class_names", pa.list_(pa.string())),
        pa.field("epochs_run", pa.int64()),
        # the budget the trial ran (equal across methods at equal dataset, fraction, seed, epochs, batch)
        pa.field("steps", pa.int64()),
        pa.field("labeled_images_seen", pa.int64()),
        pa.field("unlabeled_images_seen", pa.int64()),
        pa.field("wall_seconds", pa.float64()),
        pa.field("gpu_seconds", pa.float64()),
        pa.field("checkpoint_path", pa.string()),
        pa.field("error", pa.string()),
        pa.field("cycleseg_version", pa.string()),
        pa.field("torch_version", pa.string()),
        pa.field("ray_version", pa.string()),
        pa.field("git_commit", pa.string()),
    ]
)
EPOCHS_SCHEMA = epoch_schema(ID_FIELDS)


# ----------------------------------------------------------------------------------------------
# Rows


def trial_status(cfg: TrialConfig, history: list[dict[str, Any]], error: str | None) -> str:
    """failed (raised) > diverged (NaN/inf loss) > early_stopped (fewer epochs than asked) > completed."""
    if error is not None:
        return "failed"
    if history and history[-1].get("diverged"):
        return "diverged"
    if not history or int(history[-1]["epoch"]) < cfg.epochs:
        return "early_stopped"
    return "completed"


def trial_row(
    *,
    sweep: str,
    trial_id: str,
    cfg: TrialConfig,
    variant: str | None,
    history: list[dict[str, Any]],
    error: str | None,
    wall_seconds: float,
    gpus: float,
    checkpoint_path: str | None,
    versions: dict[str, str | None],
) -> dict[str, Any]:
    """The ``trials/`` row of one finished trial from its per-epoch records (the trainer's history)."""
    chosen = selected_epoch(history, cfg.select)
    best = selected_epoch(history, "best_val")
    final = history[-1] if history else None

    def at(record: dict[str, Any] | None, key: str) -> Any:
        value = record.get(key) if record is not None else None
        return list(value) if isinstance(value, list | tuple) else value

    return {
        "sweep": sweep,
        "trial_id": trial_id,
        "config_hash": cfg.hash(),
        "group_hash": configuration_key(cfg),
        "variant": variant,
        "status": trial_status(cfg, history, error),
        **cfg.to_dict(),
        "config_json": json.dumps(cfg.to_dict(), sort_keys=True),
        "selected_epoch": at(chosen, "epoch"),
        **{k: at(chosen, k) for k in ("val_miou", "val_class_iou", "test_miou", "test_pixel_acc", "test_class_iou")},
        "best_val_miou": at(best, "val_miou"),
        "best_epoch": at(best, "epoch"),
        "final_val_miou": at(final, "val_miou"),
        "final_test_miou": at(final, "test_miou"),
        "class_names": list(dataset_info(cfg).class_names),
        "epochs_run": int(final["epoch"]) if final else 0,
        **{k: int(final[k]) if final else 0 for k in ("steps", "labeled_images_seen", "unlabeled_images_seen")},
        "wall_seconds": wall_seconds,
        "gpu_seconds": wall_seconds * gpus,
        "checkpoint_path": checkpoint_path,
        "error": error,
        **versions,
    }


@functools.cache
def software_versions() -> dict[str, str | None]:
    """Versions of cycleseg, torch and ray, and the git commit of this checkout (None outside git)."""
    from importlib.metadata import PackageNotFoundError, version

    import ray
    import torch

    try:
        own = version("cycleseg")
    except PackageNotFoundError:
        own = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "cycleseg_version": own,
        "torch_version": torch.__version__,
        "ray_version": ray.__version__,
        "git_commit": commit,
    }


# ----------------------------------------------------------------------------------------------
# Writing


def write_trial(sweep_dir: str | Path, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Write ``epochs/<id>.parquet`` then ``trials/<id>.parquet`` (the latter marks the trial done)."""
    tid = row["trial_id"]
    ids = {"sweep": row["sweep"], "trial_id": tid, "config_hash": row["config_hash"]}
    storage.write_bytes(storage.join(sweep_dir, EPOCHS_DIR, f"{tid}.parquet"),
                        table=epoch_table(history, ids, ID_FIELDS))
    storage.write_bytes(storage.join(sweep_dir, TRIALS_DIR, f"{tid}.parquet"),
                        table=pa.Table.from_pylist([row], schema=TRIALS_SCHEMA))


# ----------------------------------------------------------------------------------------------
# Reading


def read_trial(sweep_dir: str | Path, trial_id: str) -> dict[str, Any] | None:
    """The ``trials/`` row of one trial as a dict; None before its file has landed."""
    data = storage.read_bytes(storage.join(str(sweep_dir), TRIALS_DIR, f"{trial_id}.parquet"))
    return pq.read_table(io.BytesIO(data)).to_pylist()[0] if data else None


def trial_ids(sweep_dir: str | Path) -> set[str]:
    """Trials whose file has landed."""
    names = storage.list_files(storage.join(sweep_dir, TRIALS_DIR))
    return {n[: -len(".parquet")] for n in names if n.endswith(".parquet") and not n.startswith(".")}


# Columns added after results were on disk, with what a file written before them means: the config fields
# at their default (what those runs ran), the effective λ's as not recorded.
ADDED_COLUMNS: dict[str, Any] = {
    **complete({}), **{effective_column(lam): None for lam in RAMPED_LAMBDAS},
}


def _read_folder(folder: str, schema: pa.Schema) -> list[pa.Table]:
    """Every ``*.parquet`` file in ``folder`` (temp files of writers at work start with '.'), each checked."""
    tables = []
    for name in storage.list_files(folder):
        if not name.endswith(".parquet") or name.startswith("."):
            continue
        path = storage.join(folder, name)
        try:
            table = pq.read_table(io.BytesIO(storage.read_bytes(path) or b""))
        except (OSError, pa.ArrowException) as e:
            raise UserError(f"results file '{path}' is damaged ({str(e).splitlines()[0]}); delete it (its trial "
                            "then counts as not finished: run the sweep again with --resume)") from None
        for f in schema:  # a column added since the file was written: its value then (a default, or not recorded)
            if f.name not in table.column_names and f.name in ADDED_COLUMNS:
                table = table.append_column(f, pa.array([ADDED_COLUMNS[f.name]] * len(table), f.type))
        missing = [f.name for f in schema if f.name not in table.column_names]
        if missing:
            raise UserError(f"results file '{path}' lacks the column(s) {', '.join(missing[:5])}: it was not written "
                            "by this version of cycleseg (sweep/results/parquet.py); delete it or read it with that "
                            "version")
        tables.append(table.select(schema.names).cast(schema))
    return tables


@dataclass
class Sweeps:
    """The trials and epochs of one or more sweep folders, as DataFrames."""

    trials: pd.DataFrame
    epochs: pd.DataFrame
    sources: list[str]
    notes: list[str] = field(default_factory=list)


def read_sweeps(paths: list[str | Path]) -> Sweeps:
    """Read the trials/ and epochs/ files of every sweep folder in ``paths`` (local folders or URIs)."""
    if not paths:
        raise UserError("no results given; pass one or more sweep folders, e.g. runs/demo")
    sources = [str(p) for p in paths]
    notes: list[str] = []
    trials: list[pa.Table] = []
    epochs: list[pa.Table] = []
    for p in sources:
        if not storage.is_dir(storage.join(p, TRIALS_DIR)) and not storage.is_dir(storage.join(p, EPOCHS_DIR)):
            raise UserError(f"'{p}' is not a sweep folder (no {TRIALS_DIR}/ or {EPOCHS_DIR}/ inside); pass the "
                            "folder a sweep wrote, e.g. runs/demo")
        trials += _read_folder(storage.join(p, TRIALS_DIR), TRIALS_SCHEMA)
        epochs += _read_folder(storage.join(p, EPOCHS_DIR), EPOCHS_SCHEMA)
    if not trials:
        raise UserError(f"no finished trials yet in {', '.join(sources)} ({TRIALS_DIR}/ is empty); wait for the first "
                        "trial to finish or check the path")
    t = pa.concat_tables(trials).to_pandas()
    t["config_json"] = [json.dumps(complete(json.loads(c)), sort_keys=True) for c in t["config_json"]]
    before = len(t)
    t = t.drop_duplicates(subset=["sweep", "trial_id"], keep="last").reset_index(drop=True)
    if len(t) < before:
        notes.append(f"{before - len(t)} trial file(s) read twice (same sweep and trial_id) counted once")
    e = pa.concat_tables(epochs).to_pandas() if epochs else EPOCHS_SCHEMA.empty_table().to_pandas()
    e = e.drop_duplicates(subset=["sweep", "trial_id", "epoch"], keep="last").reset_index(drop=True)
    running = set(zip(e["sweep"], e["trial_id"], strict=True)) - set(zip(t["sweep"], t["trial_id"], strict=True))
    if running:
        notes.append(f"{len(running)} trial(s) have epochs but no result yet (still running or lost): not reported")
    return Sweeps(t, e, sources, notes)
