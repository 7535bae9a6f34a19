"""The report's sample grid (paper Fig. 2/3) from each row's best trial checkpoint (best on val: the grid
is a choice too). Checkpoints on object storage are downloaded for the drawing."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pandas as pd

from ...model import checkpoint
from ...model.errors import UserError
from .. import storage
from .derive import CHOICE_METRIC, is_null, row_sort_key

SAMPLE_ROWS = 4


def _checkpoint_dir(v: Any) -> str | None:
    """The checkpoint folder or URI ``v`` when it holds a checkpoint that this machine can read."""
    if is_null(v) or not str(v):
        return None
    if storage.is_uri(v):
        try:
            return str(v) if checkpoint.STATE in storage.list_files(str(v)) else None
        except OSError:
            return None
    p = storage.local_path(v)
    return str(p) if (p / checkpoint.STATE).is_file() else None


def sample_grid(t: pd.DataFrame, block: str, fraction: float, path: Path) -> tuple[Path | None, list[str]]:
    """Paper Fig. 2/3: image | truth | each row's prediction (its best trial at ``fraction``; ``full``
    at 100 %) | G_SI(truth) from cyclegan. Returns (png or None, notes on what was missing)."""
    notes: list[str] = []
    g = t[
        (t["block"] == block)
        & (t["row"] != "")
        & t["choosable"]
        & ((t["fraction"] == fraction) | (t["method"] == "full"))
    ]
    picks: dict[str, str] = {}
    for row in sorted(g["row"].unique(), key=row_sort_key):
        r = g[g["row"] == row].sort_values(CHOICE_METRIC, ascending=False)
        ckpts = [
            (tid, _checkpoint_dir(c))
            for tid, c in zip(r["trial_id"], r.get("checkpoint_path", [None] * len(r)), strict=True)
        ]
        usable = [(tid, c) for tid, c in ckpts if c is not None]
        if not usable:
            notes.append(
                f"{row}: no checkpoint this machine can read (checkpoint_path of its trials missing or unreachable)"
            )
            continue
        if usable[0][0] != ckpts[0][0]:
            notes.append(f"{row}: best trial {ckpts[0][0]} has no local checkpoint; used {usable[0][0]}")
        picks[row] = usable[0][1]
    if not picks:
        return None, notes
    try:
        from ...model.data import prepare_dataset
        from ...model.visualize import save_sample_grid

        methods, generator, cfg0 = {}, None, None
        with contextlib.ExitStack() as stack:
            local = {row: stack.enter_context(storage.local_copy(ckpt)) for row, ckpt in picks.items()}
            loaded = {row: checkpoint.load_trial(folder) for row, folder in local.items()}
        for row, (cfg, method, _) in loaded.items():
            methods[row] = method
            cfg0 = cfg0 or cfg
            if generator is None and "G_SI" in method.networks:
                generator = method
        if generator is None:
            notes.append("no cyclegan checkpoint: the G_SI(ground truth) column is left out")
        save_sample_grid(path, methods, prepare_dataset(cfg0), generator=generator, n=SAMPLE_ROWS)
    except (UserError, OSError, RuntimeError, KeyError) as e:
        notes.append(f"sample grid not drawn: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return None, notes
    return path, notes
