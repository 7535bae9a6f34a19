"""``cycleseg best-config``: the best configuration of a sweep as a YAML that runs unchanged.

Ranking is on val, never on test (choose on val, report on test), and seed-aware: configurations
(``group_hash``, the config hash without the seed) are ranked by the mean of the metric over their
seeds, so one lucky seed does not win; ``--per-seed`` ranks single trials. Only completed trials
count. The YAML holds every config field plus a ``_source`` provenance mapping, which
``load_config_file`` ignores (keys starting with ``_``), so it works with ``cycleseg debug --config``
and as a search space's ``base:``.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cycleseg.model.config import FIELD_NAMES, config_to_yaml
from cycleseg.model.errors import UserError
from cycleseg.model.io import atomic_write_text
from cycleseg.model.records import TEST_PREFIX
from cycleseg.model.registry import suggest
from cycleseg.model.resolve import resolve_config
from cycleseg.sweep import results as res


def rank_configs(df: pd.DataFrame, metric: str, mode: str, *, per_seed: bool) -> pd.DataFrame:
    """Configurations (or, ``per_seed``, single trials) best first: key, mean, std, n.

    Ties go to more seeds, then the smaller key, so the order is deterministic.
    """
    key = "trial_id" if per_seed else "group_hash"
    stats = df.groupby(key)[metric].agg(["mean", "std", "count"]).reset_index()
    stats = stats.rename(columns={"count": "n"}).fillna({"std": 0.0})
    return stats.sort_values(["mean", "n", key], ascending=[mode == "min", False, True], ignore_index=True)


def choice_columns(df: pd.DataFrame) -> list[str]:
    """The trials/ columns a choice may rank on: numeric results, never a test metric or a config field."""
    return [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
            and c not in FIELD_NAMES and not is_test_column(c)]


def is_test_column(column: str) -> bool:
    return column.startswith(TEST_PREFIX) or column.startswith(f"final_{TEST_PREFIX}")


def check_choice_metric(df: pd.DataFrame, metric: str) -> None:
    """``metric`` must be a val (or other non-test) result column: choose on val, report on test."""
    if is_test_column(metric):
        raise UserError(f"'{metric}' is a test metric: tables report it, nothing chooses on it (choose on val, "
                        "report on test); rank on val_miou (the selected epoch's) or best_val_miou")
    if metric not in choice_columns(df):
        raise UserError(f"unknown metric '{metric}'{suggest(metric, choice_columns(df))}; choose one of: "
                        f"{', '.join(choice_columns(df))}")


def _plain(v: Any) -> Any:
    """numpy scalars → Python ones, for YAML."""
    return v.item() if hasattr(v, "item") else v


def export_best_config(
    results: str | Path,
    *,
    metric: str = "val_miou",
    mode: str = "max",
    where: str | None = None,
    trial_id: str | None = None,
    per_seed: bool = False,
    output: str | Path = "best.yaml",
) -> Path:
    """Write the chosen configuration to ``output`` (atomically) and return its path."""
    df = res.read_sweeps([results]).trials
    source: dict[str, Any] = {"sweep": str(df["sweep"].iloc[0]), "results": str(results)}
    if trial_id is not None:
        chosen = df[df["trial_id"] == trial_id]
        if chosen.empty:
            known = ", ".join(sorted(df["trial_id"])[:8])
            raise UserError(f"--trial '{trial_id}' is not in '{results}'; trials there include: {known}")
        row = chosen.iloc[0]
        source.update(selected="trial", trial_id=trial_id, status=row["status"], seed=_plain(row["seed"]))
        if metric in choice_columns(df) and pd.notna(row[metric]):
            source.update(metric=metric, value=_plain(row[metric]))
    else:
        check_choice_metric(df, metric)
        done = df[df["status"] == "completed"]
        if done.empty:
            raise UserError(f"no completed trials in '{results}' (statuses: {dict(df['status'].value_counts())})")
        if where:
            try:
                done = done.query(where)
            except Exception as e:  # pandas raises many kinds for a bad expression
                raise UserError(f"--where '{where}' is not a valid pandas query on trials/ ({type(e).__name__}: "
                                f"{e}); e.g. --where 'labeled_fraction == 0.2 and method == \"cyclegan\"'") from None
            if done.empty:
                raise UserError(f"--where '{where}' matches no completed trial in '{results}'")
        done = done[done[metric].notna()]
        if done.empty:
            raise UserError(f"no completed trial has a value for '{metric}'")
        best = rank_configs(done, metric, mode, per_seed=per_seed).iloc[0]
        key = "trial_id" if per_seed else "group_hash"
        members = done[done[key] == best[key]].sort_values("seed")
        row = members.iloc[0]  # replicates differ only in the seed: write the smallest
        source.update(
            selected="single trial" if per_seed else "mean over seeds",
            metric=metric, mode=mode, where=where,
            value=float(best["mean"]), std=float(best["std"]), n=int(best["n"]),
            seeds=[_plain(s) for s in members["seed"]], trial_ids=list(members["trial_id"]),
        )
    cfg = resolve_config(json.loads(row["config_json"]))
    source.update(group_hash=row["group_hash"], config_hash=cfg.hash(),
                  exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    header = (f"# cycleseg best-config from {results}: `cycleseg debug --config FILE` runs it; "
              "a search space takes it as `base: FILE`\n")
    text = config_to_yaml(cfg, header=header) + yaml.safe_dump({"_source": source}, sort_keys=False)
    out = Path(output)
    atomic_write_text(out, text)
    if trial_id:
        what = f"trial {trial_id}"
    else:
        what = f"{source['metric']} {source['value']:.4f} ({source['selected']}, n={source['n']})"
    print(f"wrote {out}: {what}, group {row['group_hash']}")
    return out
