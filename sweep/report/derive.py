"""Which trials are compared with which: blocks, Table 1 rows, ablation arms, per-seed values.

A *block* is a dataset plus the settings that differ between the sweeps read (e.g. ``epochs=2``), so
runs of different length are never averaged together. In a block, a Table 1 *row* is a method at one
setting of its own hyperparameters (λ's and GAN levers for cyclegan, the hung_* weights for hung, and
the optimiser's lr/betas and the recipe); a method seen at more than ``MAX_TABLE_SETTINGS`` settings is a
search and only its paper-default setting (if run) is a row. cyclegan trials whose ``variant`` names an
ablation (anything but "", "proposed", "default" or "cyclegan", read up to an ``@``: see ``arm_name``)
are *arms*: each is a Table 1 row of its own (named after the variant, paired with ``partial`` like any
semi-supervised row) and a Table 2 row compared with the block's plain ``cyclegan`` row, paired by seed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ...model.config import DEFAULTS, EXECUTION_FIELDS, FIELD_NAMES, GAN_FIELDS, LAMBDAS
from ...model.errors import UserError
from ...model.metrics import predicts_one_class

COMPLETED = "completed"
# What tables report, at each trial's selected epoch (chosen on val): test by default, val to compare.
METRICS = ("test_miou", "val_miou")
CHOICE_METRIC = "val_miou"  # what searches and best-config rank on: the λ-search section shows their ranking
CLASS_IOU_COLUMN = {"test_miou": "test_class_iou", "val_miou": "val_class_iou"}
BASELINE = "partial"  # the supervised lower bound every semi-supervised method is paired with
SEMI_METHODS = ("cyclegan", "hung")
ABLATION_REFERENCE = "cyclegan"  # Table 2 compares every variant with this row ("proposed")
ROW_ORDER = ("partial", "cyclegan", "hung", "full")
NON_VARIANT_NAMES = frozenset({"", "proposed", "default", "none"})
ARM_SEPARATOR = "@"  # a variant named "<arm>@<anything>" is the row <arm>

HUNG_FIELDS = tuple(f for f in FIELD_NAMES if f.startswith("hung_"))
# a row's own settings whatever the method: the optimiser, and the recipe (paper-code sets partial's beta1)
OPTIM_FIELDS = ("lr", "beta1", "beta2", "lr_decay_start", "recipe")
METHOD_PARAMS: dict[str, tuple[str, ...]] = {"cyclegan": (*LAMBDAS, *GAN_FIELDS), "hung": HUNG_FIELDS}
FACTORS = frozenset({"dataset", "method", "labeled_fraction", "seed"})
# Everything else defines the experiment's setting: trials differing here are different blocks.
CONTEXT_FIELDS = tuple(
    f for f in FIELD_NAMES
    if f not in EXECUTION_FIELDS | FACTORS | {p for ps in METHOD_PARAMS.values() for p in ps} | set(OPTIM_FIELDS)
)
MAX_TABLE_SETTINGS = 3


def arm_name(variant: str) -> str:
    """The row a variant's trials form: its name up to ``ARM_SEPARATOR``, so variants ``winner@10`` and
    ``winner@20`` (one configuration per labeled fraction, as ``cycleseg confirm`` writes them) are one row;
    ``prepare`` keeps the whole name where two such variants meet at one block and fraction."""
    return variant.split(ARM_SEPARATOR, 1)[0]


def cell_variant(arm: str, cell: str) -> str:
    """A variant name that is row ``arm`` in the tables and unique to ``cell`` (``arm_name`` reads it back)."""
    return f"{arm}{ARM_SEPARATOR}{cell}"


def fmt_value(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):g}"
    return str(v)


def metric_label(metric: str) -> str:
    """A metric column as the tables spell it: ``test_miou`` → ``test mIoU``."""
    return metric.replace("miou", "mIoU").replace("_", " ")


def pct_label(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def paper_pct(fraction: float) -> int | None:
    """The paper's integer percentage for ``fraction`` (0.1 → 10), or None if it is not one."""
    pct = fraction * 100
    return round(pct) if abs(pct - round(pct)) < 1e-6 else None


def slug(*parts: Any) -> str:
    """File-name part: each of ``parts`` lower-cased to [a-z0-9-] ('.' → 'p'), joined by '_'."""
    words = (re.sub(r"[^a-z0-9]+", "-", fmt_value(p).lower().replace(".", "p")).strip("-") for p in parts)
    return "_".join(w for w in words if w)


def is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def is_list(v: Any) -> bool:
    return isinstance(v, list | tuple | np.ndarray)


def _signature(row: pd.Series, method: str) -> tuple[tuple[str, Any], ...]:
    params = (*METHOD_PARAMS.get(method, ()), *OPTIM_FIELDS)
    return tuple((p, row[p]) for p in params if p in row.index and not is_null(row[p]))


def _sig_label(sig: tuple[tuple[str, Any], ...], differing: Sequence[str]) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in sig if k in differing)


def prepare(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The trials with derived columns: value, included, choosable, reason, block, dataset, arm, row, fraction."""
    if metric not in METRICS:
        raise UserError(f"metric must be one of {', '.join(METRICS)}, got '{metric}'")
    t = trials.copy()
    if metric not in t.columns:
        raise UserError(f"trials/ files have no '{metric}' column; use --metric {' or '.join(METRICS)}")
    t["variant"] = t["variant"].astype(object).where(t["variant"].notna(), "") if "variant" in t else ""
    t["variant"] = t["variant"].astype(str)
    t["method"] = t["method"].astype(str)
    t["dataset"] = t["dataset"].astype(str)
    t["status"] = t["status"].astype(object).where(t["status"].notna(), "unknown").astype(str)
    t["fraction"] = t["labeled_fraction"].astype(float).round(6)
    t["seed"] = t["seed"].astype(int)
    t["value"] = pd.to_numeric(t[metric], errors="coerce").astype(float)
    # a run that predicts one class (usually background) has an mIoU that says nothing about what it learned
    per_class = t.get(metric.replace("_miou", "_class_iou"))
    t["one_class"] = [is_list(v) and predicts_one_class(v) for v in per_class] if per_class is not None else False
    finite = np.isfinite(t["value"].to_numpy())
    t["included"] = (t["status"] == COMPLETED) & finite  # in the tables of the reported metric
    # what a choice (a search's ranking, the sample grid's pick) may draw from: never gated on a test value
    t["choosable"] = (t["status"] == COMPLETED) & np.isfinite(pd.to_numeric(t[CHOICE_METRIC], errors="coerce"))
    t["reason"] = np.where(t["status"] != COMPLETED, t["status"], np.where(finite, "", f"{metric} missing"))

    # blocks: dataset + the context fields that differ between the trials read
    ctx = [c for c in CONTEXT_FIELDS if c in t.columns and t[c].astype(str).nunique() > 1]
    t["context"] = t.apply(lambda r: ", ".join(f"{c}={fmt_value(r[c])}" for c in ctx), axis=1) if ctx else ""
    t["block"] = [f"{d} ({c})" if c else d for d, c in zip(t["dataset"], t["context"], strict=True)]

    # arms: the method, or the ablation variant's name up to '@' (variants ablate cyclegan: another
    # method's variant name is ignored, as its trials differ only in λ's that method does not use)
    name = t["variant"].map(arm_name)
    # `arm@cell` variants join one row only where they never meet: two of them at one block and fraction
    # are different configurations, and keep their own names rather than be averaged together
    clash = t.assign(name=name).groupby(["block", "fraction", "name"])["variant"].transform("nunique") > 1
    name = name.where(~clash, t["variant"])
    plain = (
        name.str.lower().isin(NON_VARIANT_NAMES)
        | (name == t["method"])
        | (t["method"] != ABLATION_REFERENCE)
    )
    t["arm"] = np.where(plain, t["method"], name)
    t["is_variant"] = ~plain

    # Table 1 rows: each variant's arm, and one per plain method setting unless the method was searched
    defaults = DEFAULTS
    t["row"] = np.where(plain, "", t["arm"])
    t["searched"] = False
    for (_block, method), g in t[plain].groupby(["block", "method"], sort=False):
        sigs = {i: _signature(t.loc[i], method) for i in g.index}
        distinct = sorted(set(sigs.values()), key=repr)
        default_sig = next((s for s in distinct if all(defaults.get(k) == v for k, v in s)), None)
        if len(distinct) == 1:
            t.loc[g.index, "row"] = method
            continue
        t.loc[g.index, "searched"] = True
        differing = [k for k, _ in distinct[0] if len({dict(s).get(k) for s in distinct}) > 1]
        for i, s in sigs.items():
            if s == default_sig:
                t.loc[i, "row"] = method
            elif len(distinct) <= MAX_TABLE_SETTINGS:
                t.loc[i, "row"] = f"{method} ({_sig_label(s, differing)})"
    return t


def seed_values(t: pd.DataFrame) -> dict[tuple[str, str, float], dict[int, float]]:
    """(block, arm-or-row, fraction) -> {seed: value}, included trials only (duplicate runs of a seed averaged)."""
    out: dict[tuple[str, str, float], dict[int, float]] = {}
    for (block, label, frac, seed), v in t.groupby(["block", "label", "fraction", "seed"])["value"].mean().items():
        out.setdefault((block, label, frac), {})[int(seed)] = float(v)
    return out


def duplicate_seeds(t: pd.DataFrame) -> int:
    """How many (block, row/variant, fraction, seed) cells hold more than one completed run (e.g. one
    config in two sweeps read together); ``seed_values`` averages them to one value per seed."""
    inc = t[t["included"] & ((t["row"] != "") | t["is_variant"])]
    label = np.where(inc["is_variant"], inc["arm"], inc["row"])
    return int((inc.assign(label=label).groupby(["block", "label", "fraction", "seed"]).size() > 1).sum())


def row_sort_key(row: str) -> tuple[int, str]:
    base = row.split(" (")[0]
    return (ROW_ORDER.index(base) if base in ROW_ORDER else len(ROW_ORDER), row)
