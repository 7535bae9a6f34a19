"""``cycleseg best-config``: the best configuration of a sweep as a YAML that runs unchanged.

Ranking is on val, never on test (choose on val, report on test), per grid cell, and seed-aware:
within each cell (configurations that differ only in the searched fields and the seed, e.g. the λ's
at one labeled fraction) configurations (``group_hash``, the config hash without the seed) are
ranked by the mean of the metric over their seeds, so one lucky seed does not win; ``--per-seed``
ranks single trials. A sweep with several cells gives one best configuration per cell: ``--where``
picks a cell, or ``-o`` a folder takes one file per cell. Only completed trials count. The YAML holds
every config field plus a ``_source`` provenance mapping, which ``load_config_file`` ignores (keys starting
with ``_``), so it works with ``cycleseg debug --config``
and as a search space's ``base:``.
"""

from __future__ import annotations

import ast
import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ...model.config import FIELD_NAMES, config_to_yaml
from ...model.errors import UserError
from ...model.io import atomic_write_text, check_output_dir
from ...model.metrics import LEARNED_IOU, predicts_one_class
from ...model.records import TEST_PREFIX
from ...model.registry import suggest
from ...model.resolve import resolve_config
from .. import storage as store
from ..planning.dry_run import varying_fields
from ..planning.plan import read_plan
from ..planning.spec import cell_key
from ..report.derive import slug
from . import parquet as res
from . import stats

DEFAULT_FILE, DEFAULT_FOLDER = "best.yaml", "best"  # -o's default: one cell, several cells
WHERE_FIELDS = frozenset(FIELD_NAMES) | {"variant"}


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


def check_where(where: str) -> None:
    """``--where`` picks configurations, so it may name only config fields: a filter on a result (a test metric
    above all) would choose on it, and would split a configuration's seeds by how they turned out."""
    try:
        tree = ast.parse(where, mode="eval")
    except SyntaxError:
        raise UserError(f"--where '{where}' is not an expression on config fields; e.g. --where "
                        "'labeled_fraction == 0.2 and method == \"cyclegan\"'") from None
    names = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - WHERE_FIELDS)
    if names:
        hint = suggest(names[0], sorted(WHERE_FIELDS))
        raise UserError(f"--where may name only config fields (it picks configurations; results pick the best "
                        f"among them, on val): {', '.join(names)} {'is' if len(names) == 1 else 'are'} not one{hint}; "
                        "to rank on a result use --metric")


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


def searched_fields(results: str | Path) -> tuple[str, ...]:
    """The fields the sweep in ``results`` searched (its ``sweep.json``); () for a grid sweep or without a plan."""
    plan = read_plan(results, "restore it from a copy, or delete it (then every configuration is its own cell)")
    return tuple(plan.searched) if plan is not None else ()


@dataclass(frozen=True)
class Winner:
    """The best configuration of one grid cell: its ranking row and its trials (one per seed)."""

    cell: str  # what sets the cell apart from the others, e.g. "labeled_fraction=0.1"
    stats: pd.Series  # group_hash (or trial_id), mean, std, n
    members: pd.DataFrame
    caveats: tuple[str, ...] = ()  # why this win may mean nothing (``caveats``)


def caveats(group: pd.DataFrame, members: pd.DataFrame, metric: str) -> tuple[str, ...]:
    """Why a cell's winner may be noise: the cell's configurations differ no more than their seeds do, or the
    winner (at its selected epoch) predicts essentially one class."""
    out = []
    if group["group_hash"].nunique() > 1:
        p = stats.groups_differ_p([g[metric].to_numpy(float) for _, g in group.groupby("group_hash")])
        if np.isnan(p):
            out.append("one seed per configuration: the ranking cannot be told from seed noise; add seeds")
        elif p >= 1 - stats.LEVEL:
            out.append(f"its configurations differ no more than their seeds do (one-way ANOVA p = {p:.2f}): "
                       "this winner is not distinguishable from the rest")
    if metric == "val_miou" and all(predicts_one_class(v) for v in members["val_class_iou"]):
        out.append(f"it predicts essentially one class (every other class has val IoU below {LEARNED_IOU}): nothing "
                   "was learned to choose between; train longer or check the data")
    return tuple(out)


CONDITIONS = ("dataset", "labeled_fraction")  # what a grid sweep's configurations are chosen for


def cell_winners(done: pd.DataFrame, metric: str, mode: str, searched: tuple[str, ...], *,
                 per_seed: bool = False) -> list[Winner]:
    """The best configuration of each cell, ranked on ``metric`` (a val column) by the mean over seeds.

    A search's cells are its grid cells (configurations differing only in ``searched`` and the seed: the
    best λ's per method and labeled fraction, say). A grid sweep has nothing searched: its configurations
    compete per dataset and labeled fraction (the best method, variant or gridded λ's for the data at
    hand). Cells in the order of their first trial.
    """
    configs = [json.loads(c) for c in done["config_json"]]
    if searched:
        cells = [cell_key(c, searched) for c in configs]
        differing = [k for k in varying_fields(configs) if k not in ("seed", *searched)]
    else:
        cells = [json.dumps([c[k] for k in CONDITIONS]) for c in configs]
        differing = [k for k in CONDITIONS if k in varying_fields(configs)]
    key = "trial_id" if per_seed else "group_hash"
    out = []
    for cell in dict.fromkeys(cells):
        group = done[[c == cell for c in cells]]
        best = rank_configs(group, metric, mode, per_seed=per_seed).iloc[0]
        members = group[group[key] == best[key]].sort_values("seed")
        cfg = json.loads(members["config_json"].iloc[0])
        out.append(Winner(" ".join(f"{k}={cfg[k]}" for k in differing) or "(one cell)", best, members,
                          caveats(group, members, metric)))
    return out


def export_best_config(
    results: str | Path,
    *,
    metric: str = "val_miou",
    mode: str = "max",
    where: str | None = None,
    trial_id: str | None = None,
    per_seed: bool = False,
    output: str | Path | None = None,
) -> list[Path]:
    """Write the chosen configuration to ``output`` (atomically), or with several grid cells and ``output`` a
    folder one file per cell; ``output`` None is ``DEFAULT_FILE``, or ``DEFAULT_FOLDER`` with several cells.
    Return the paths written."""
    if output is not None and not str(output).strip():
        raise UserError("-o/--output is empty; give a file (e.g. -o best.yaml) or a folder (e.g. -o best/)")
    store.check_reachable(str(results), "RESULTS")
    if where:
        check_where(where)
    out = Path(output if output is not None else DEFAULT_FILE)
    folder = out.is_dir() or str(output).endswith(("/", "\\"))
    if folder:
        check_output_dir(out, "-o/--output")
    else:
        check_output_dir(out.parent, "-o/--output's folder")
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
        return [_write(row, source, out, f"trial {trial_id}")]
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
    winners = cell_winners(done, metric, mode, searched_fields(results), per_seed=per_seed)
    if len(winners) > 1 and output is None:  # the default: one file per cell, where a user looks for it
        out, folder = Path(DEFAULT_FOLDER), True
        check_output_dir(out, "the default output folder")
        print(f"{len(winners)} grid cells, each with its own best configuration: one YAML per cell in {out}/ "
              "(-o FILE with --where picks one)")
    if len(winners) > 1 and not folder:
        cells = "; ".join(w.cell for w in winners[:6]) + ("; …" if len(winners) > 6 else "")
        raise UserError(f"'{results}' holds {len(winners)} grid cells, each with its own best configuration ({cells}): "
                        f"pick one with --where (e.g. --where \"{_where_for(winners[0])}\"), or give -o a folder "
                        "(e.g. -o best/) to write one YAML per cell")
    written = []
    for w in winners:
        row = w.members.iloc[0]  # replicates differ only in the seed: write the smallest
        info = {**source, "selected": "single trial" if per_seed else "mean over seeds", "cell": w.cell,
                "metric": metric, "mode": mode, "where": where, "value": float(w.stats["mean"]),
                "std": float(w.stats["std"]), "n": int(w.stats["n"]),
                "seeds": [_plain(s) for s in w.members["seed"]], "trial_ids": list(w.members["trial_id"]),
                "caveats": list(w.caveats)}
        dest = out / f"best_{slug(w.cell) or 'config'}.yaml" if folder else out
        what = f"{metric} {info['value']:.4f} ({info['selected']}, n={info['n']})"
        written.append(_write(row, info, dest, what + (f" [{w.cell}]" if folder else "")))
        for c in w.caveats:
            print(f"  caution: {c}")
    return written


def _where_for(w: Winner) -> str:
    """A --where expression that selects the cell of ``w``."""
    parts = [kv.split("=", 1) for kv in w.cell.split(" ") if "=" in kv]
    return " and ".join(f"{k} == {v}" if _is_number(v) else f"{k} == '{v}'" for k, v in parts)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _write(row: pd.Series, source: dict[str, Any], out: Path, what: str) -> Path:
    cfg = resolve_config(json.loads(row["config_json"]))
    source = {**source, "group_hash": row["group_hash"], "config_hash": cfg.hash(),
              "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    header = (f"# cycleseg best-config from {source['results']}: `cycleseg debug --config FILE` runs it; "
              "a search space takes it as `base: FILE`\n")
    text = config_to_yaml(cfg, header=header) + yaml.safe_dump({"_source": source}, sort_keys=False)
    atomic_write_text(out, text)
    print(f"wrote {out}: {what}, group {row['group_hash']}")
    return out
