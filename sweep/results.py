"""Sweep results as Parquet, one file per trial, under ``<storage>/<sweep>/``.

``trials/<trial_id>.parquet`` holds one row per trial, ``epochs/<trial_id>.parquet`` one row per
epoch; every file is written with the one schema below (``TRIALS_SCHEMA`` / ``EPOCHS_SCHEMA``), so
each folder reads as a dataset with no extra step: ``pd.read_parquet(dir / "trials")``,
``pyarrow.dataset.dataset(...)``, DuckDB ``read_parquet('dir/trials/*.parquet')``, Polars.
Files are written atomically, the epochs file before the trials file: a trial file means done.
"""

from __future__ import annotations

import functools
import io
import json
import math
import subprocess
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from model.config import TrialConfig
from model.io import atomic_write, atomic_write_bytes

TRIALS_DIR = "trials"
EPOCHS_DIR = "epochs"
STATUSES = ("completed", "early_stopped", "diverged", "failed")
# Every loss term a method logs (ARCHITECTURE.md, "Loss-term keys"); a method logs a subset.
LOSS_KEYS = (
    "S_gen", "I_gen", "S_cycle", "I_cycle", "S_adv_G", "I_adv_G", "G_total", "S_adv_D", "I_adv_D", "D_total",
    "adv_G", "semi_adv_G", "semi_G",
)  # fmt: skip


def _arrow_type(tp: Any) -> pa.DataType:
    if isinstance(tp, types.UnionType):
        (tp,) = (a for a in tp.__args__ if a is not type(None))
    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}[tp]


_HINTS = typing.get_type_hints(TrialConfig)
CONFIG_COLUMNS: tuple[pa.Field, ...] = tuple(pa.field(f.name, _arrow_type(_HINTS[f.name])) for f in fields(TrialConfig))

TRIALS_SCHEMA = pa.schema(
    [
        pa.field("sweep", pa.string()),
        pa.field("trial_id", pa.string()),
        pa.field("config_hash", pa.string()),
        pa.field("group_hash", pa.string()),  # hash without the seed: replicates share it
        pa.field("variant", pa.string()),
        pa.field("status", pa.string()),
        *CONFIG_COLUMNS,
        pa.field("config_json", pa.string()),
        pa.field("best_val_miou", pa.float64()),
        pa.field("final_val_miou", pa.float64()),
        pa.field("best_epoch", pa.int64()),
        pa.field("best_class_iou", pa.list_(pa.float64())),
        pa.field("final_class_iou", pa.list_(pa.float64())),
        pa.field("final_pixel_acc", pa.float64()),
        pa.field("class_names", pa.list_(pa.string())),
        pa.field("epochs_run", pa.int64()),
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

EPOCHS_SCHEMA = pa.schema(
    [
        pa.field("sweep", pa.string()),
        pa.field("trial_id", pa.string()),
        pa.field("config_hash", pa.string()),
        pa.field("epoch", pa.int64()),
        pa.field("val_miou", pa.float64()),
        pa.field("val_pixel_acc", pa.float64()),
        pa.field("lr", pa.float64()),
        pa.field("epoch_seconds", pa.float64()),
        *(pa.field(f"loss_{k}", pa.float64()) for k in LOSS_KEYS),
    ]
)


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


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


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
    """The ``trials/`` row of one finished trial from its per-epoch metrics (the trainer's history)."""
    from model.datasets import dataset_info

    scored = [m for m in history if _finite(m.get("val_miou"))]
    best = max(scored, key=lambda m: m["val_miou"]) if scored else None
    final = history[-1] if history else None
    return {
        "sweep": sweep,
        "trial_id": trial_id,
        "config_hash": cfg.hash(),
        "group_hash": cfg.hash(exclude=("seed",)),
        "variant": variant,
        "status": trial_status(cfg, history, error),
        **cfg.to_dict(),
        "config_json": json.dumps(cfg.to_dict(), sort_keys=True),
        "best_val_miou": best["val_miou"] if best else None,
        "final_val_miou": final["val_miou"] if final else None,
        "best_epoch": best["epoch"] if best else None,
        "best_class_iou": list(best["val_class_iou"]) if best else None,
        "final_class_iou": list(final["val_class_iou"]) if final else None,
        "final_pixel_acc": final["val_pixel_acc"] if final else None,
        "class_names": list(dataset_info(cfg).class_names),
        "epochs_run": int(final["epoch"]) if final else 0,
        "wall_seconds": wall_seconds,
        "gpu_seconds": wall_seconds * gpus,
        "checkpoint_path": checkpoint_path,
        "error": error,
        **versions,
    }


def epoch_rows(sweep: str, trial_id: str, cfg: TrialConfig, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``epochs/`` rows; a loss key outside ``LOSS_KEYS`` is a contract change and raises."""
    rows = []
    for m in history:
        losses = {k[5:]: v for k, v in m.items() if k.startswith("loss_")}
        unknown = set(losses) - set(LOSS_KEYS)
        if unknown:
            raise ValueError(f"loss terms {sorted(unknown)} are not in sweep.results.LOSS_KEYS; add them there")
        rows.append(
            {
                "sweep": sweep,
                "trial_id": trial_id,
                "config_hash": cfg.hash(),
                "epoch": int(m["epoch"]),
                "val_miou": m.get("val_miou"),
                "val_pixel_acc": m.get("val_pixel_acc"),
                "lr": m.get("lr"),
                "epoch_seconds": m.get("epoch_seconds"),
                **{f"loss_{k}": losses.get(k) for k in LOSS_KEYS},
            }
        )
    return rows


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
# Files: a local folder (atomic temp file + rename) or a URI (s3://, gs://: one PUT is atomic)


def is_uri(location: str | Path) -> bool:
    return "://" in str(location) and not str(location).startswith("file://")


def local_path(location: str | Path) -> Path:
    s = str(location)
    return Path(s[len("file://") :] if s.startswith("file://") else s)


def write_bytes(dest: str, data: bytes | None = None, *, table: pa.Table | None = None) -> None:
    """Write ``data`` (or ``table`` as Parquet) to ``dest``, a local path or a URI, all or nothing."""
    if not is_uri(dest):
        if table is not None:
            atomic_write(local_path(dest), lambda p: pq.write_table(table, p))
        else:
            atomic_write_bytes(local_path(dest), data or b"")
        return
    import pyarrow.fs as pafs

    if table is not None:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        data = buf.getvalue()
    fs, path = pafs.FileSystem.from_uri(dest)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data or b"")


def read_bytes(src: str) -> bytes | None:
    """The content of ``src`` (local path or URI), None if it does not exist."""
    if not is_uri(src):
        p = local_path(src)
        return p.read_bytes() if p.is_file() else None
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(src)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as f:
        return f.read()


def write_trial(sweep_dir: str | Path, row: dict[str, Any], epochs: list[dict[str, Any]]) -> None:
    """Write ``epochs/<id>.parquet`` then ``trials/<id>.parquet`` (the latter marks the trial done)."""
    base = str(sweep_dir).rstrip("/")
    tid = row["trial_id"]
    write_bytes(f"{base}/{EPOCHS_DIR}/{tid}.parquet", table=pa.Table.from_pylist(epochs, schema=EPOCHS_SCHEMA))
    write_bytes(f"{base}/{TRIALS_DIR}/{tid}.parquet", table=pa.Table.from_pylist([row], schema=TRIALS_SCHEMA))


def trial_ids(sweep_dir: str | Path) -> set[str]:
    """Trials whose file has landed."""
    if is_uri(sweep_dir):
        import pyarrow.fs as pafs

        fs, path = pafs.FileSystem.from_uri(f"{str(sweep_dir).rstrip('/')}/{TRIALS_DIR}")
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        names = [i.base_name for i in infos]
    else:
        d = local_path(sweep_dir) / TRIALS_DIR
        names = [p.name for p in d.iterdir()] if d.is_dir() else []
    return {n[: -len(".parquet")] for n in names if n.endswith(".parquet") and not n.startswith(".")}


def read_table(sweep_dir: str | Path, which: str = TRIALS_DIR) -> pa.Table:
    """All ``trials`` (or ``epochs``) files of a sweep as one table; empty (with the schema) if none."""
    schema = TRIALS_SCHEMA if which == TRIALS_DIR else EPOCHS_SCHEMA
    if not trial_ids(sweep_dir):
        return schema.empty_table()
    import pyarrow.dataset as ds

    loc = f"{str(sweep_dir).rstrip('/')}/{which}"
    return ds.dataset(loc if is_uri(loc) else str(local_path(loc)), schema=schema, format="parquet").to_table()
