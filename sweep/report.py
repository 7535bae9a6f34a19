"""`cycleseg report`: paper-style tables with replicate statistics, plots and sample grids.

Reads one or more sweep folders (``trials/*.parquet``, ``epochs/*.parquet``, see ARCHITECTURE.md
"Results"), whatever has landed so far, and writes ``index.md`` with PNGs and a CSV of every table:

1. Table 1: mean ± std (ddof=1) over seeds per method × labeled fraction, and each semi-supervised
   method's paired gain over ``partial`` (pairs share dataset, fraction and seed, hence the labeled
   subset) with a 95 % interval; the paper's numbers beside ours for voc / cityscapes / acdc.
2. Table 2: ablation variants (``variant`` column) against the full model, paired the same way.
3. Per-class IoU (paper Tables 3–4) at one labeled fraction, NaN-aware means over seeds.
4. Plots: mIoU vs labeled fraction, ablation bars, training curves, λ-search importance (Optuna
   fANOVA over an in-memory study) and parallel coordinates.
5. A sample grid (paper Fig. 2/3) from each method's best trial checkpoint.
6. Trials that did not complete are listed and never enter a mean; short seed sets are flagged.

Which trials are compared with which: a *block* is a dataset plus the settings that differ between
the sweeps read (e.g. ``epochs=2``), so runs of different length are never averaged together. In a
block, a Table 1 *row* is a method at one setting of its own hyperparameters (λ's for cyclegan, the
hung_* weights for hung, and the optimiser's lr/betas); a method seen at more than
``MAX_TABLE_SETTINGS`` settings is a search and only its paper-default setting (if run) is a row.
cyclegan trials whose ``variant`` names an ablation (anything but "", "proposed", "default" or
"cyclegan") form Table 2 and are compared with the block's plain ``cyclegan`` row, paired by seed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.config import FIELD_NAMES, LAMBDAS, TrialConfig
from model.errors import UserError
from model.io import atomic_write, atomic_write_text
from sweep import stats

DATA_DIR = Path(__file__).parent / "data"
PAPER_DATASETS = ("voc", "cityscapes", "acdc")
COMPLETED = "completed"
METRICS = ("best_val_miou", "final_val_miou")
CLASS_IOU_COLUMN = {"best_val_miou": "best_class_iou", "final_val_miou": "final_class_iou"}
BASELINE = "partial"  # the supervised lower bound every semi-supervised method is paired with
SEMI_METHODS = ("cyclegan", "hung")
ABLATION_REFERENCE = "cyclegan"  # Table 2 compares every variant with this row ("proposed")
ROW_ORDER = ("partial", "cyclegan", "hung", "full")
NON_VARIANT_NAMES = frozenset({"", "proposed", "default", "none"})

# Config fields that say where/how a trial ran, not what it computed: never split blocks.
EXECUTION_FIELDS = frozenset(
    {"data_root", "cache_dir", "device", "amp", "channels_last", "compile", "eval_batch_size", "inject_fault"}
)
HUNG_FIELDS = tuple(f for f in FIELD_NAMES if f.startswith("hung_"))
OPTIM_FIELDS = ("lr", "beta1", "beta2", "lr_decay_start")
METHOD_PARAMS: dict[str, tuple[str, ...]] = {"cyclegan": LAMBDAS, "hung": HUNG_FIELDS}
FACTORS = frozenset({"dataset", "method", "labeled_fraction", "seed"})
# Everything else defines the experiment's setting: trials differing here are different blocks.
CONTEXT_FIELDS = tuple(
    f for f in FIELD_NAMES if f not in EXECUTION_FIELDS | FACTORS | set(LAMBDAS) | set(HUNG_FIELDS) | set(OPTIM_FIELDS)
)
MAX_TABLE_SETTINGS = 3
MIN_SEARCH_TRIALS = 4  # fewer completed trials than this in a search group: no importance analysis
SAMPLE_ROWS = 4
REQUIRED_COLUMNS = ("trial_id", "status", "dataset", "method", "labeled_fraction", "seed")
INCOMPLETE = "†"
SIGNIFICANT = "*"
DPI = 110


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------


@dataclass
class Results:
    """Trials and epochs of the sweeps read, plus what was skipped along the way."""

    trials: pd.DataFrame
    epochs: pd.DataFrame
    sources: list[Path]
    notes: list[str] = field(default_factory=list)


def _read_folder(folder: Path, notes: list[str]) -> list[pd.DataFrame]:
    """Every ``*.parquet`` in ``folder`` except temp files ('.' prefix) of writers still at work."""
    import pyarrow as pa

    frames = []
    for f in sorted(folder.glob("*.parquet")):
        if f.name.startswith("."):
            continue
        try:
            frames.append(pd.read_parquet(f))
        except (OSError, ValueError, pa.ArrowException) as e:
            notes.append(f"skipped unreadable `{f}`: {str(e).splitlines()[0]}")
    return frames


def load_results(paths: Sequence[Path]) -> Results:
    """Read the trials/ and epochs/ Parquet files of every sweep folder in ``paths``."""
    if not paths:
        raise UserError("no results given; pass one or more sweep folders, e.g. cycleseg report runs/demo")
    notes: list[str] = []
    trials: list[pd.DataFrame] = []
    epochs: list[pd.DataFrame] = []
    for p in map(Path, paths):
        if not (p / "trials").is_dir() and not (p / "epochs").is_dir():
            raise UserError(
                f"'{p}' is not a sweep folder (no trials/ or epochs/ inside); pass the folder a sweep "
                "wrote, e.g. runs/demo"
            )
        for sub, out in (("trials", trials), ("epochs", epochs)):
            got = _read_folder(p / sub, notes) if (p / sub).is_dir() else []
            for df in got:
                if "sweep" not in df.columns:
                    df["sweep"] = p.name
            out.extend(got)
    if not trials:
        raise UserError(
            f"no finished trials yet in {', '.join(map(str, paths))} (trials/ is empty); wait for the first "
            "trial to finish or check the path"
        )
    t = pd.concat(trials, ignore_index=True)
    missing = [c for c in REQUIRED_COLUMNS if c not in t.columns]
    if missing:
        raise UserError(
            f"trials/ files lack the column(s) {', '.join(missing)}; they must follow the Results schema in "
            "docs/ARCHITECTURE.md (written by sweep/results.py)"
        )
    before = len(t)
    t = t.drop_duplicates(subset=["sweep", "trial_id"], keep="last").reset_index(drop=True)
    if len(t) < before:
        notes.append(f"{before - len(t)} trial file(s) read twice (same sweep and trial_id) counted once")
    e = pd.concat(epochs, ignore_index=True) if epochs else pd.DataFrame(columns=["sweep", "trial_id", "epoch"])
    e = e.drop_duplicates(subset=["sweep", "trial_id", "epoch"], keep="last")
    running = set(zip(e["sweep"], e["trial_id"], strict=True)) - set(zip(t["sweep"], t["trial_id"], strict=True))
    if running:
        notes.append(f"{len(running)} trial(s) have epochs but no result yet (still running or lost): not reported")
    return Results(t, e, [Path(p) for p in paths], notes)


# ------------------------------------------------------------------------------------------------
# Deriving blocks, rows and arms
# ------------------------------------------------------------------------------------------------


def _fmt_value(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):g}"
    return str(v)


def pct_label(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def paper_pct(fraction: float) -> int | None:
    """The paper's integer percentage for ``fraction`` (0.1 → 10), or None if it is not one."""
    pct = fraction * 100
    return round(pct) if abs(pct - round(pct)) < 1e-6 else None


def slug(*parts: Any) -> str:
    """File-name part: each of ``parts`` lower-cased to [a-z0-9-] ('.' → 'p'), joined by '_'."""
    words = (re.sub(r"[^a-z0-9]+", "-", _fmt_value(p).lower().replace(".", "p")).strip("-") for p in parts)
    return "_".join(w for w in words if w)


def _defaults() -> dict[str, Any]:
    return TrialConfig().to_dict()


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _is_list(v: Any) -> bool:
    return isinstance(v, list | tuple | np.ndarray)


def _signature(row: pd.Series, method: str) -> tuple[tuple[str, Any], ...]:
    params = (*METHOD_PARAMS.get(method, ()), *OPTIM_FIELDS)
    return tuple((p, row[p]) for p in params if p in row.index and not _is_null(row[p]))


def _sig_label(sig: tuple[tuple[str, Any], ...], differing: Sequence[str]) -> str:
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in sig if k in differing)


def prepare(results: Results, metric: str) -> pd.DataFrame:
    """The trials with derived columns: value, included, reason, block, dataset, arm, row, fraction."""
    if metric not in METRICS:
        raise UserError(f"metric must be one of {', '.join(METRICS)}, got '{metric}'")
    t = results.trials.copy()
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
    finite = np.isfinite(t["value"].to_numpy())
    t["included"] = (t["status"] == COMPLETED) & finite
    t["reason"] = np.where(t["status"] != COMPLETED, t["status"], np.where(finite, "", f"{metric} missing"))

    # blocks: dataset + the context fields that differ between the trials read
    ctx = [c for c in CONTEXT_FIELDS if c in t.columns and t[c].astype(str).nunique() > 1]
    t["context"] = t.apply(lambda r: ", ".join(f"{c}={_fmt_value(r[c])}" for c in ctx), axis=1) if ctx else ""
    t["block"] = [f"{d} ({c})" if c else d for d, c in zip(t["dataset"], t["context"], strict=True)]

    # arms: the method, or the ablation variant's name (variants ablate cyclegan: another method's
    # variant name is ignored, as its trials differ only in λ's that method does not use)
    plain = (
        t["variant"].str.lower().isin(NON_VARIANT_NAMES)
        | (t["variant"] == t["method"])
        | (t["method"] != ABLATION_REFERENCE)
    )
    t["arm"] = np.where(plain, t["method"], t["variant"])
    t["is_variant"] = ~plain

    # Table 1 rows: one per method setting, unless the method was searched
    defaults = _defaults()
    t["row"] = ""
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


# ------------------------------------------------------------------------------------------------
# Paper numbers
# ------------------------------------------------------------------------------------------------


def _read_paper(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA_DIR / name, comment="#")


@dataclass
class Paper:
    """The paper's numbers (sweep/data/, copied from Mondal et al. 2019, Tables 1–4)."""

    table1: dict[tuple[str, str, int], float]  # (dataset, method, pct) -> mIoU
    table2: dict[str, float]  # voc, 20 %: variant -> mIoU
    classes: dict[tuple[str, str, int], dict[str, float]]  # (dataset, method, pct) -> class name -> IoU

    @classmethod
    def load(cls) -> Paper:
        t1 = _read_paper("paper_table1.csv")
        table1 = {
            (d, str(r["method"]), int(r["labeled_pct"])): float(r[d]) for _, r in t1.iterrows() for d in PAPER_DATASETS
        }
        t2 = _read_paper("paper_table2.csv")
        table2 = {str(r["variant"]): float(r["voc_miou_20pct"]) for _, r in t2.iterrows()}
        classes: dict[tuple[str, str, int], dict[str, float]] = {}
        for dataset, name in (
            ("voc", "paper_table3_voc_classes.csv"),
            ("cityscapes", "paper_table4_cityscapes_classes.csv"),
        ):
            for _, r in _read_paper(name).iterrows():
                classes.setdefault((dataset, str(r["method"]), int(r["labeled_pct"])), {})[str(r["class_name"])] = (
                    float(r["iou"])
                )
        return cls(table1, table2, classes)

    def t1(self, dataset: str, row: str, fraction: float) -> float:
        pct = paper_pct(fraction)
        return self.table1.get((dataset, row, pct), math.nan) if pct is not None else math.nan

    def t2(self, dataset: str, variant: str, fraction: float) -> float:
        if dataset != "voc" or paper_pct(fraction) != 20:
            return math.nan
        return self.table2.get("proposed" if variant == ABLATION_REFERENCE else variant, math.nan)


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------


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


def _row_sort_key(row: str) -> tuple[int, str]:
    base = row.split(" (")[0]
    return (ROW_ORDER.index(base) if base in ROW_ORDER else len(ROW_ORDER), row)


def _cell_stats(per_seed: dict) -> dict[str, Any]:
    """One table cell's columns: n, mean, std and CI over the seeds' values, and which seeds they were."""
    s = stats.summarize(list(per_seed.values()))
    return {"n": s.n, "mean": s.mean, "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high,
            "seeds": ",".join(map(str, sorted(per_seed)))}


def table1(t: pd.DataFrame, paper: Paper, ci: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long tables: per (block, row, fraction) summaries, and paired gains over ``partial``."""
    rows = t[t["row"] != ""].assign(label=lambda d: d["row"])
    vals = seed_values(rows[rows["included"]])
    dataset_of = dict(zip(t["block"], t["dataset"], strict=False))
    expected = {}
    for (block, _, _), sv in vals.items():
        expected[block] = max(expected.get(block, 0), len(sv))
    summ = []
    for block, row, frac in sorted(
        {(b, r, f) for b, r, f in zip(rows["block"], rows["row"], rows["fraction"], strict=True)}
    ):
        sv = vals.get((block, row, frac), {})
        cell = _cell_stats(sv)
        summ.append(
            {
                "block": block,
                "dataset": dataset_of[block],
                "row": row,
                "labeled_fraction": frac,
                **cell,
                "expected_n": expected.get(block, 0),
                "incomplete": cell["n"] < expected.get(block, 0),
                "excluded": int(
                    (
                        (rows["block"] == block) & (rows["row"] == row) & (rows["fraction"] == frac) & ~rows["included"]
                    ).sum()
                ),
                "paper": paper.t1(dataset_of[block], row, frac),
            }
        )
    summary = pd.DataFrame(summ)
    gains = []
    for (block, row, frac), sv in sorted(vals.items()):
        method = row.split(" (")[0]
        if method not in SEMI_METHODS or not ((rows["block"] == block) & (rows["row"] == BASELINE)).any():
            continue
        d = stats.paired_difference(sv, vals.get((block, BASELINE, frac), {}), ci=ci)
        dataset = dataset_of[block]
        gains.append(
            {
                "block": block,
                "dataset": dataset,
                "row": row,
                "reference": BASELINE,
                "labeled_fraction": frac,
                "n_pairs": d.n,
                "mean": d.mean,
                "std": d.std,
                "ci_low": d.ci_low,
                "ci_high": d.ci_high,
                "p_value": d.p_value,
                "ci_method": d.ci_method,
                "excludes_zero": d.excludes_zero,
                "unpaired_seeds": ",".join(map(str, d.only_a + d.only_b)),
                "incomplete": bool(d.only_a or d.only_b) or d.n < 2,
                "paper": paper.t1(dataset, row, frac) - paper.t1(dataset, BASELINE, frac),
            }
        )
    return summary, pd.DataFrame(gains)


def _zeroed(g: pd.DataFrame) -> str:
    return ",".join(k for k in LAMBDAS if k in g.columns and (g[k].astype(float) == 0).all())


def table2(t: pd.DataFrame, paper: Paper, ci: str) -> pd.DataFrame:
    """Ablation variants vs the block's plain ``cyclegan`` row, paired by seed at each fraction."""
    var = t[t["is_variant"]]
    if var.empty:
        return pd.DataFrame()
    ref = t[t["row"] == ABLATION_REFERENCE]
    both = pd.concat([ref.assign(label=ABLATION_REFERENCE), var.assign(label=var["arm"])])
    vals = seed_values(both[both["included"]])
    out = []
    for (block, frac), g in var.groupby(["block", "fraction"]):
        dataset = g["dataset"].iloc[0]
        ref_vals = vals.get((block, ABLATION_REFERENCE, frac), {})
        paper_order = [v for v in paper.table2 if v != "proposed"]  # the paper's row order, then the rest
        labels = [
            ABLATION_REFERENCE,
            *sorted(
                g["arm"].unique(),
                key=lambda v: (v not in paper_order, paper_order.index(v) if v in paper_order else 0, v),
            ),
        ]
        expected = max(len(vals.get((block, lab, frac), {})) for lab in labels)
        for lab in labels:
            sv = vals.get((block, lab, frac), {})
            cell = _cell_stats(sv)
            rec = {
                "block": block,
                "dataset": dataset,
                "labeled_fraction": frac,
                "variant": "proposed" if lab == ABLATION_REFERENCE else lab,
                "zeroed": "" if lab == ABLATION_REFERENCE else _zeroed(g[g["arm"] == lab]),
                **cell,
                "incomplete": cell["n"] < expected,
                "paper": paper.t2(dataset, lab, frac),
            }
            if lab != ABLATION_REFERENCE:
                d = stats.paired_difference(sv, ref_vals, ci=ci)
                rec |= {
                    "n_pairs": d.n,
                    "diff_mean": d.mean,
                    "diff_std": d.std,
                    "diff_ci_low": d.ci_low,
                    "diff_ci_high": d.ci_high,
                    "p_value": d.p_value,
                    "ci_method": d.ci_method,
                    "excludes_zero": d.excludes_zero,
                    "unpaired_seeds": ",".join(map(str, d.only_a + d.only_b)),
                    "paper_diff": paper.t2(dataset, lab, frac) - paper.t2(dataset, ABLATION_REFERENCE, frac),
                }
                rec["diff_incomplete"] = bool(d.only_a or d.only_b) or d.n < 2
            out.append(rec)
    return pd.DataFrame(out)


def class_iou_table(t: pd.DataFrame, block: str, fraction: float, column: str, paper: Paper) -> pd.DataFrame:
    """Per class: NaN-aware mean IoU over seeds for each Table 1 row at ``fraction`` (+ the paper's)."""
    g = t[(t["block"] == block) & (t["fraction"] == fraction) & (t["row"] != "") & t["included"]]
    if g.empty or column not in g.columns:
        return pd.DataFrame()
    g = g[[_is_list(v) for v in g[column]]]
    if g.empty:
        return pd.DataFrame()
    n_classes = max(len(v) for v in g[column])
    g = g[[len(v) == n_classes for v in g[column]]]
    names_col = g["class_names"] if "class_names" in g.columns else []
    names = next((list(map(str, v)) for v in names_col if _is_list(v) and len(v) == n_classes), None)
    names = names or [str(i) for i in range(n_classes)]
    out = pd.DataFrame({"class": names})
    for row in sorted(g["row"].unique(), key=_row_sort_key):
        per_seed = g[g["row"] == row].drop_duplicates("seed")  # one run per seed
        means, counts = stats.nanmean_rows([np.asarray(v, dtype=float) for v in per_seed[column]])
        out[row] = means
        out[f"{row} n"] = counts
    dataset = g["dataset"].iloc[0]
    pct = paper_pct(fraction)
    for method in ("partial", "cyclegan"):
        ref = paper.classes.get((dataset, method, pct)) if pct is not None else None
        if ref:
            out[f"paper {method}"] = [ref.get(n, math.nan) for n in names]
    return out


# ------------------------------------------------------------------------------------------------
# Text tables
# ------------------------------------------------------------------------------------------------


def _num(v: float, signed: bool = False) -> str:
    if not np.isfinite(v):
        return "n/a"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def fmt_summary(mean: float, std: float, n: int, incomplete: bool) -> str:
    if n == 0:
        return f"— (n=0){INCOMPLETE if incomplete else ''}"
    spread = f" ± {_num(std)}" if np.isfinite(std) else ""
    return f"{_num(mean)}{spread} (n={n}){INCOMPLETE if incomplete else ''}"


def fmt_diff(mean: float, lo: float, hi: float, n: int, sig: bool, incomplete: bool) -> str:
    if n == 0:
        return f"— (no pairs){INCOMPLETE}"
    ci = f" [{_num(lo, True)}, {_num(hi, True)}]" if np.isfinite(lo) else " [no CI]"
    return f"{_num(mean, True)}{ci} (n={n}){SIGNIFICANT if sig else ''}{INCOMPLETE if incomplete else ''}"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Fixed-width plain-text table: first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "| " + " | ".join(headers) + " |"
    sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"
    return "\n".join([head, sep, *("| " + " | ".join(str(c) for c in r) + " |" for r in rows)])


def table1_layout(summary: pd.DataFrame, gains: pd.DataFrame, block: str) -> tuple[list[str], list[list[str]]]:
    """Rows = methods then gain rows, columns = fractions (each followed by the paper's value where known)."""
    s = summary[summary["block"] == block]
    g = gains[gains["block"] == block] if not gains.empty else gains
    fracs = sorted(s["labeled_fraction"].unique())
    with_paper = {f: s.loc[s["labeled_fraction"] == f, "paper"].notna().any() for f in fracs}
    headers = ["method"]
    for f in fracs:
        headers.append(pct_label(f))
        if with_paper[f]:
            headers.append(f"{pct_label(f)} paper")
    rows: list[list[str]] = []
    for row in sorted(s["row"].unique(), key=_row_sort_key):
        cells = [row]
        for f in fracs:
            c = s[(s["row"] == row) & (s["labeled_fraction"] == f)]
            cells.append(
                fmt_summary(c["mean"].iloc[0], c["std"].iloc[0], int(c["n"].iloc[0]), bool(c["incomplete"].iloc[0]))
                if len(c)
                else ""
            )
            if with_paper[f]:
                cells.append(_num(c["paper"].iloc[0]) if len(c) and np.isfinite(c["paper"].iloc[0]) else "")
        rows.append(cells)
    for row in sorted(g["row"].unique(), key=_row_sort_key) if not g.empty else []:
        cells = [f"{row} − {BASELINE}"]
        for f in fracs:
            c = g[(g["row"] == row) & (g["labeled_fraction"] == f)]
            if len(c):
                r = c.iloc[0]
                cells.append(
                    fmt_diff(
                        r["mean"],
                        r["ci_low"],
                        r["ci_high"],
                        int(r["n_pairs"]),
                        bool(r["excludes_zero"]),
                        bool(r["incomplete"]),
                    )
                )
            else:
                cells.append("")
            if with_paper[f]:
                cells.append(_num(c["paper"].iloc[0], True) if len(c) and np.isfinite(c["paper"].iloc[0]) else "")
        rows.append(cells)
    return headers, rows


def table2_layout(t2: pd.DataFrame, block: str, frac: float) -> tuple[list[str], list[list[str]]]:
    s = t2[(t2["block"] == block) & (t2["labeled_fraction"] == frac)]
    has_paper = s["paper"].notna().any()
    headers = ["variant", "zeroed", "mIoU", "Δ vs proposed [95 % CI]"] + (["paper", "paper Δ"] if has_paper else [])
    rows = []
    for _, r in s.iterrows():
        ref = r["variant"] == "proposed"
        cells = [
            r["variant"],
            r["zeroed"] or "—",
            fmt_summary(r["mean"], r["std"], int(r["n"]), bool(r["incomplete"])),
            ""
            if ref
            else fmt_diff(
                r["diff_mean"],
                r["diff_ci_low"],
                r["diff_ci_high"],
                int(r["n_pairs"]),
                bool(r["excludes_zero"]),
                bool(r["diff_incomplete"]),
            ),
        ]
        if has_paper:
            cells += [
                _num(r["paper"]) if np.isfinite(r["paper"]) else "",
                "" if ref or not np.isfinite(r.get("paper_diff", math.nan)) else _num(r["paper_diff"], True),
            ]
        rows.append(cells)
    return headers, rows


# ------------------------------------------------------------------------------------------------
# Plots (matplotlib Agg)
# ------------------------------------------------------------------------------------------------


def _plt() -> Any:
    """pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _plt()
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=DPI))
    plt.close(fig)
    return path


def plot_fraction_curve(summary: pd.DataFrame, block: str, metric: str, path: Path) -> Path:
    """mIoU vs labeled fraction per row: mean with a ± std band over seeds; the paper's dashed."""
    plt = _plt()
    s = summary[summary["block"] == block]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row in enumerate(sorted(s["row"].unique(), key=_row_sort_key)):
        c = s[(s["row"] == row) & (s["n"] > 0)].sort_values("labeled_fraction")
        color = colors[i % len(colors)]
        x = c["labeled_fraction"].to_numpy() * 100
        m, sd = c["mean"].to_numpy(), np.nan_to_num(c["std"].to_numpy())
        ax.plot(x, m, "o-", color=color, label=f"{row} (ours)")
        ax.fill_between(x, m - sd, m + sd, color=color, alpha=0.2, linewidth=0)
        p = s[(s["row"] == row) & s["paper"].notna()].sort_values("labeled_fraction")
        if len(p):
            ax.plot(p["labeled_fraction"] * 100, p["paper"], "s--", mfc="none", color=color, label=f"{row} (paper)")
    ax.set_xlabel("labeled fraction (%)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{block}: mean ± std over seeds", fontsize=10)
    ax.set_xticks(sorted(s["labeled_fraction"].unique() * 100))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_ablation(t2: pd.DataFrame, block: str, frac: float, metric: str, path: Path) -> Path:
    """Left: each variant's mean with its t interval; right: paired difference to proposed with CI."""
    plt = _plt()
    s = t2[(t2["block"] == block) & (t2["labeled_fraction"] == frac)].reset_index(drop=True)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    x = np.arange(len(s))

    def err(mean: pd.Series, lo: pd.Series, hi: pd.Series) -> np.ndarray:
        return np.nan_to_num(np.vstack([mean - lo, hi - mean]))

    a1.bar(
        x,
        s["mean"],
        yerr=err(s["mean"], s["ci_low"], s["ci_high"]),
        capsize=4,
        color="tab:blue",
        alpha=0.8,
        label="ours (95 % t CI)",
    )
    if s["paper"].notna().any():
        a1.plot(x, s["paper"], "kx", markersize=9, label="paper")
    a1.set_xticks(x, s["variant"], rotation=30, ha="right", fontsize=8)
    a1.set_ylabel(metric.replace("_", " "))
    a1.set_title(f"{block}, {pct_label(frac)} labeled", fontsize=10)
    a1.legend(fontsize=8)
    d = s[s["variant"] != "proposed"].reset_index(drop=True)
    xd = np.arange(len(d))
    colors = ["tab:red" if z else "tab:gray" for z in d["excludes_zero"].fillna(False)]
    a2.bar(xd, d["diff_mean"], yerr=err(d["diff_mean"], d["diff_ci_low"], d["diff_ci_high"]), capsize=4, color=colors)
    if "paper_diff" in d and d["paper_diff"].notna().any():
        a2.plot(xd, d["paper_diff"], "kx", markersize=9, label="paper")
        a2.legend(fontsize=8)
    a2.axhline(0, color="black", linewidth=0.8)
    a2.set_xticks(xd, d["variant"], rotation=30, ha="right", fontsize=8)
    a2.set_ylabel("paired Δ vs proposed")
    a2.set_title("variant − proposed, 95 % CI (red: excludes 0)", fontsize=10)
    return _save(fig, path)


def _epoch_stats(e: pd.DataFrame, col: str) -> pd.DataFrame:
    return e.groupby("epoch")[col].agg(["mean", "std", "count"]).reset_index()


def plot_curves(e: pd.DataFrame, title: str, by: str, path: Path) -> Path | None:
    """One panel per logged quantity (val_miou, loss_*), one line per ``by`` value: mean ± std over seeds."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    cols = ["val_miou", *sorted(c for c in e.columns if c.startswith("loss_"))]
    cols = [c for c in cols if c in e.columns and e[c].notna().any()]
    if not cols:
        return None
    ncols = min(4, len(cols))
    nrows = math.ceil(len(cols) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.7 * nrows), squeeze=False)
    for ax, col in zip(axes.flat, cols, strict=False):
        for key, g in e.groupby(by, sort=True):
            st = _epoch_stats(g, col)
            if st["count"].sum() == 0:
                continue
            label = pct_label(key) if by == "fraction" else str(key)
            ax.plot(st["epoch"], st["mean"], marker="." if len(st) < 30 else None, label=label)
            ax.fill_between(st["epoch"], st["mean"] - st["std"].fillna(0), st["mean"] + st["std"].fillna(0), alpha=0.2)
        ax.set_title(col, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(cols) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_val_curves(e: pd.DataFrame, block: str, path: Path) -> Path:
    """val mIoU per epoch, one panel per labeled fraction, one line per method/variant (mean ± std over seeds)."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fracs = sorted(e["fraction"].unique())
    labels = sorted(e["label"].unique(), key=_row_sort_key)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = {lab: cycle[i % len(cycle)] for i, lab in enumerate(labels)}  # one colour per method in every panel
    fig, axes = plt.subplots(1, len(fracs), figsize=(4.2 * len(fracs) + 0.6, 3.4), squeeze=False, sharey=True)
    for ax, frac in zip(axes[0], fracs, strict=True):
        ef = e[e["fraction"] == frac]
        for label in (lab for lab in labels if (ef["label"] == lab).any()):
            g = ef[ef["label"] == label]
            st = _epoch_stats(g, "val_miou")
            ax.plot(
                st["epoch"],
                st["mean"],
                marker="." if len(st) < 30 else None,
                color=color[label],
                label=f"{label} (n={g['trial_id'].nunique()})",
            )
            lo, hi = st["mean"] - st["std"].fillna(0), st["mean"] + st["std"].fillna(0)
            ax.fill_between(st["epoch"], lo, hi, color=color[label], alpha=0.2)
        ax.set_title(f"{pct_label(frac)} labeled", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("val mIoU")
    fig.suptitle(f"{block}: validation mIoU per epoch", fontsize=10)
    return _save(fig, path)


def search_importance(g: pd.DataFrame, params: Sequence[str]) -> dict[str, float]:
    """fANOVA importance of ``params`` for ``value`` over an in-memory Optuna study of the trials."""
    import optuna
    from optuna.distributions import FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {}
    for p in params:
        lo, hi = float(g[p].min()), float(g[p].max())
        dists[p] = FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)
    study = optuna.create_study(direction="maximize")
    for _, r in g.iterrows():
        study.add_trial(
            optuna.trial.create_trial(
                params={p: float(r[p]) for p in params}, distributions=dists, value=float(r["value"])
            )
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))


def plot_importance(imp: dict[str, float], title: str, path: Path) -> Path:
    plt = _plt()
    names = list(imp)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.5))
    ax.barh(names, [imp[n] for n in names], color="tab:blue")
    ax.set_xlabel("fANOVA importance (sums to 1)")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_parallel(g: pd.DataFrame, params: Sequence[str], metric: str, title: str, path: Path) -> Path:
    """Parallel coordinates: one line per trial through each parameter's axis (min-max scaled)
    and the metric, coloured by the metric."""
    plt = _plt()
    cols = [*params, "value"]
    data = g[cols].astype(float).to_numpy()
    lo, hi = data.min(axis=0), data.max(axis=0)
    scaled = (data - lo) / np.where(hi > lo, hi - lo, 1.0)
    fig, ax = plt.subplots(figsize=(1.6 * len(cols) + 2, 4.2))
    cmap = plt.get_cmap("viridis")
    vmin, vmax = lo[-1], hi[-1]
    order = np.argsort(data[:, -1])  # best trials drawn last, on top
    for i in order:
        c = (data[i, -1] - vmin) / (vmax - vmin) if vmax > vmin else 1.0
        ax.plot(range(len(cols)), scaled[i], color=cmap(c), alpha=0.8, linewidth=1.2)
    for j in range(len(cols)):
        ax.axvline(j, color="black", linewidth=0.8)
        ax.text(j, -0.06, f"{lo[j]:.3g}", ha="center", va="top", fontsize=7)
        ax.text(j, 1.04, f"{hi[j]:.3g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(cols)), [*params, metric], fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.12)
    ax.set_title(title, fontsize=10, pad=14)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(vmin, vmax))
    fig.colorbar(sm, ax=ax, label=metric)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------
# Sample grid
# ------------------------------------------------------------------------------------------------


def _checkpoint_dir(v: Any) -> Path | None:
    if _is_null(v) or not str(v):
        return None
    p = Path(str(v).removeprefix("file://"))
    return p if (p / "state.pt").is_file() else None


def sample_grid(t: pd.DataFrame, block: str, fraction: float, path: Path) -> tuple[Path | None, list[str]]:
    """Paper Fig. 2/3: image | truth | each row's prediction (its best trial at ``fraction``; ``full``
    at 100 %) | G_SI(truth) from cyclegan. Returns (png or None, notes on what was missing)."""
    notes: list[str] = []
    g = t[
        (t["block"] == block)
        & (t["row"] != "")
        & t["included"]
        & ((t["fraction"] == fraction) | (t["method"] == "full"))
    ]
    picks: dict[str, Path] = {}
    for row in sorted(g["row"].unique(), key=_row_sort_key):
        r = g[g["row"] == row].sort_values("value", ascending=False)
        ckpts = [
            (tid, _checkpoint_dir(c))
            for tid, c in zip(r["trial_id"], r.get("checkpoint_path", [None] * len(r)), strict=True)
        ]
        usable = [(tid, c) for tid, c in ckpts if c is not None]
        if not usable:
            notes.append(
                f"{row}: no checkpoint on this machine (checkpoint_path of its trials missing or not a local folder)"
            )
            continue
        if usable[0][0] != ckpts[0][0]:
            notes.append(f"{row}: best trial {ckpts[0][0]} has no local checkpoint; used {usable[0][0]}")
        picks[row] = usable[0][1]
    if not picks:
        return None, notes
    try:
        from model.datasets import prepare_dataset
        from model.trainer import load_trial
        from model.visualize import save_sample_grid

        methods, generator, cfg0 = {}, None, None
        for row, ckpt in picks.items():
            cfg, method = load_trial(ckpt)
            for net in method.networks.values():
                net.eval()
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


# ------------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------------


def _csv(df: pd.DataFrame, path: Path) -> str:
    atomic_write(path, lambda p: df.to_csv(p, index=False, float_format="%.6g"))
    return path.name


def _search_groups(t: pd.DataFrame) -> Iterable[tuple[tuple[str, str, str, float], pd.DataFrame, list[str]]]:
    """(sweep, block, method, fraction) groups of plain trials whose method hyperparameters vary: λ searches.
    Per sweep, so replicates of a fixed setting from another sweep do not enter a search's analysis."""
    s = t[t["searched"] & t["included"] & ~t["is_variant"]]
    for key, g in s.groupby(["sweep", "block", "method", "fraction"]):
        params = [
            p
            for p in (*METHOD_PARAMS.get(key[2], ()), *OPTIM_FIELDS)
            if p in g.columns and g[p].astype(float).nunique() > 1
        ]
        if params and len(g) >= MIN_SEARCH_TRIALS:
            yield key, g, params


CI_TEXT = {
    "t": (
        "Intervals are paired t intervals at 95 %: mean(d) ± t₀.₉₇₅,ₙ₋₁ · sd(d)/√n over the per-seed differences "
        "d (sd with ddof=1), e.g. t₀.₉₇₅,₂ = 4.303 for 3 seeds. We do not use the bootstrap here: with 2–3 seeds "
        "it has only 3–10 distinct resample means and its percentile interval is far too narrow "
        "(`--ci bootstrap` is offered for ≥ 4 pairs)."
    ),
    "bootstrap": (
        "Intervals are 95 % percentile bootstrap intervals of the mean per-seed difference "
        f"({stats.BOOTSTRAP_RESAMPLES} resamples, fixed seed). With fewer than {stats.BOOTSTRAP_MIN_PAIRS} pairs the "
        "bootstrap is unreliable (2 pairs give only 3 distinct resample means), so those cells show no "
        "interval; use the default `--ci t` for them."
    ),
}


def build_report(
    results: list[Path],
    output: Path | None = None,
    metric: str = "best_val_miou",
    labeled_fraction: float | None = None,
    no_samples: bool = False,
    ci: str = "t",
) -> Path:
    """Write ``output``/index.md with tables (CSV too) and PNGs; print Table 1. Returns index.md's path."""
    if ci not in stats.CI_METHODS:
        raise UserError(f"--ci must be one of {', '.join(stats.CI_METHODS)}, got '{ci}'")
    res = load_results(results)
    t = prepare(res, metric)
    # the fraction for per-class tables and sample grids, checked before anything is written
    plain = t[(t["row"] != "") & t["included"]]
    frac_of: dict[str, float] = {}
    if labeled_fraction is not None:
        want = round(float(labeled_fraction), 6)
        present = sorted(plain["fraction"].unique())
        if want not in present:
            raise UserError(
                f"--labeled-fraction {labeled_fraction} has no completed trials; present: "
                f"{', '.join(f'{f:g}' for f in present) or 'none'}"
            )
        frac_of = {b: want for b in plain.loc[plain["fraction"] == want, "block"].unique()}
    else:
        semi = plain[plain["method"] != "full"]
        frac_of = {b: float(g["fraction"].min()) for b, g in (semi if len(semi) else plain).groupby("block")}
    out = Path(output) if output is not None else Path(results[0]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    paper = Paper.load()
    md: list[str] = [f"# cycleseg report: {', '.join(f'`{p}`' for p in res.sources)}", ""]
    terminal: list[str] = []

    n_inc = int(t["included"].sum())
    md += [
        f"Metric: **{metric}** (`--metric`). {len(t)} trials read: {n_inc} completed and used, "
        f"{len(t) - n_inc} excluded"
        + (" (listed under *Excluded trials*; never part of a mean)." if n_inc < len(t) else "."),
        "",
        "Cells show mean ± std over seeds (sample std, ddof=1) and n = number of seeds. "
        "Differences are paired: same dataset, labeled fraction and seed (the seed fixes the labeled subset). "
        + CI_TEXT[ci],
        f"`{SIGNIFICANT}` = the interval excludes 0. `{INCOMPLETE}` = fewer seeds than the block's other cells, "
        "or seeds without a partner in a comparison (see the CSVs' `seeds` / `unpaired_seeds`). "
        "No correction for multiple comparisons.",
        "",
    ]
    if dup := duplicate_seeds(t):
        res.notes.append(f"{dup} seed(s) have more than one completed run in the same cell: averaged to one value")
    md += [f"- note: {n}" for n in res.notes]
    if res.notes:
        md.append("")

    # --- Table 1 -------------------------------------------------------------------------------
    summary, gains = table1(t, paper, ci)
    md += ["## Table 1: methods × labeled fraction", ""]
    if summary.empty:
        md += ["No plain-method trials (only ablation variants or searches).", ""]
    else:
        md += [
            f"CSV: [{_csv(summary, out / 'table1.csv')}](table1.csv)"
            + (f", gains: [{_csv(gains, out / 'table1_gains.csv')}](table1_gains.csv)" if not gains.empty else ""),
            "",
        ]
        for block in sorted(summary["block"].unique()):
            headers, rows = table1_layout(summary, gains, block)
            md += [f"### {block}", "", md_table(headers, rows), ""]
            terminal += [f"Table 1 — {block} ({metric}; gains: paired {ci} 95 % CI)", text_table(headers, rows), ""]
            png = plot_fraction_curve(summary, block, metric, out / f"miou_vs_fraction_{slug(block)}.png")
            md += [f"![mIoU vs labeled fraction]({png.name})", ""]
    searched_out = t[t["searched"] & (t["row"] == "") & ~t["is_variant"]]
    if len(searched_out):
        md += [f"{len(searched_out)} trials of searched settings are not in Table 1 (see *λ searches*).", ""]

    # --- Table 2 -------------------------------------------------------------------------------
    t2 = table2(t, paper, ci)
    if not t2.empty:
        md += [
            "## Table 2: ablation (variant − proposed, paired by seed)",
            "",
            f"CSV: [{_csv(t2, out / 'table2.csv')}](table2.csv)",
            "",
        ]
        for (block, frac), _ in t2.groupby(["block", "labeled_fraction"]):
            headers, rows = table2_layout(t2, block, frac)
            md += [f"### {block}, {pct_label(frac)} labeled", "", md_table(headers, rows), ""]
            if (t2[(t2["block"] == block) & (t2["labeled_fraction"] == frac)]["n"].iloc[0]) == 0:
                md += ["No plain `cyclegan` trials at this fraction: differences need them as the reference.", ""]
            png = plot_ablation(t2, block, frac, metric, out / f"ablation_{slug(block, frac * 100)}.png")
            md += [f"![ablation]({png.name})", ""]

    # --- per-class IoU --------------------------------------------------------------------------
    column = CLASS_IOU_COLUMN[metric]
    if frac_of:
        md += [f"## Per-class IoU ({column}, NaN-aware mean over seeds)", ""]
    for block, frac in sorted(frac_of.items()):
        ct = class_iou_table(t, block, frac, column, paper)
        if ct.empty:
            continue
        name = _csv(ct, out / f"class_iou_{slug(block, frac * 100)}.csv")
        shown = [c for c in ct.columns if not c.endswith(" n")]
        md += [
            f"### {block}, {pct_label(frac)} labeled",
            "",
            f"CSV (with per-class n): [{name}]({name})",
            "",
            md_table(shown, [[r["class"], *(_class_cell(r[c], c) for c in shown[1:])] for _, r in ct.iterrows()]),
            "",
        ]

    # --- training curves -------------------------------------------------------------------------
    e = res.epochs.merge(
        t.loc[t["included"], ["sweep", "trial_id", "block", "arm", "row", "fraction", "is_variant"]],
        on=["sweep", "trial_id"],
    )
    e = e[(e["row"] != "") | e["is_variant"]].assign(label=lambda d: np.where(d["is_variant"], d["arm"], d["row"]))
    if len(e):
        md += ["## Training curves (completed trials, mean ± std over seeds per epoch)", ""]
        for block, eb in e.groupby("block"):
            png = plot_val_curves(eb, block, out / f"val_miou_{slug(block)}.png")
            md += [f"### {block}", "", f"![val mIoU]({png.name})", ""]
            for label, el in eb.groupby("label"):
                png = plot_curves(
                    el.drop(columns=["label"]),
                    f"{block}: {label} (lines: labeled fraction)",
                    "fraction",
                    out / f"curves_{slug(block, label)}.png",
                )
                if png:
                    md += [f"![curves {label}]({png.name})", ""]

    # --- λ searches ------------------------------------------------------------------------------
    searches = list(_search_groups(t))
    if searches:
        md += ["## λ searches (hyperparameter importance: Optuna fANOVA over the completed trials)", ""]
    for (sweep, block, method, frac), g, params in searches:
        tag = slug(sweep, block, method, frac * 100)
        title = f"{sweep}: {block}, {method}, {pct_label(frac)} labeled, {len(g)} trials"
        top = g.sort_values("value", ascending=False)[["trial_id", "seed", *params, "value"]].rename(
            columns={"value": metric}
        )
        files = [_csv(top, out / f"lambda_search_{tag}.csv")]
        par_png = plot_parallel(g, params, metric, title, out / f"lambda_parallel_{tag}.png")
        body = [f"![parallel coordinates]({par_png.name})"]
        if g["value"].nunique() < 2:
            body.insert(0, f"Every trial scored the same {metric}: no importance to attribute.\n")
        else:
            imp = search_importance(g, params)
            imp_df = pd.DataFrame({"param": list(imp), "importance": list(imp.values())})
            files.append(_csv(imp_df, out / f"lambda_importance_{tag}.csv"))
            imp_png = plot_importance(imp, title, out / f"lambda_importance_{tag}.png")
            body = [
                md_table(["param", "importance"], [[k, f"{v:.3f}"] for k, v in imp.items()]),
                "",
                f"![importance]({imp_png.name}) {body[0]}",
            ]
        md += [f"### {title}", "", "CSVs: " + ", ".join(f"[{f}]({f})" for f in files), "", *body, ""]

    # --- sample grids ----------------------------------------------------------------------------
    md += ["## Sample grids (paper Fig. 2/3)", ""]
    if no_samples:
        md += ["Skipped (`--no-samples`).", ""]
    elif not frac_of:
        md += ["No completed plain-method trials to draw from.", ""]
    for block, frac in sorted(frac_of.items()) if not no_samples else []:
        png, notes = sample_grid(t, block, frac, out / f"samples_{slug(block, frac * 100)}.png")
        md += [f"### {block}, {pct_label(frac)} labeled", ""]
        if png:
            md += [
                "Rows: the first validation images. Columns: image (min-max scaled) | ground truth | each "
                "method's prediction from its best trial's last checkpoint | G_SI(ground truth) from cyclegan's.",
                "",
                f"![samples]({png.name})",
                "",
            ]
        md += [f"- {n}" for n in notes] + ([""] if notes else [])

    # --- excluded trials -------------------------------------------------------------------------
    exc = t[~t["included"]]
    md += ["## Excluded trials", ""]
    if exc.empty:
        md += ["None: every trial read completed.", ""]
    else:
        counts = exc["reason"].value_counts()
        cols = [
            c
            for c in (
                "sweep",
                "trial_id",
                "block",
                "arm",
                "fraction",
                "seed",
                "status",
                "reason",
                "epochs_run",
                "error",
            )
            if c in exc.columns
        ]
        listing = exc[cols].sort_values(["block", "arm", "fraction", "seed"])
        md += [
            ", ".join(f"{k}: {v}" for k, v in counts.items())
            + f" (CSV: [{_csv(listing, out / 'excluded_trials.csv')}](excluded_trials.csv))",
            "",
            md_table(cols, [[_short(v) for v in r] for r in listing.itertuples(index=False)]),
            "",
        ]
        terminal.append("excluded trials: " + ", ".join(f"{k} {v}" for k, v in counts.items()))

    index = atomic_write_text(out / "index.md", "\n".join(md).rstrip() + "\n")
    print("\n".join([*terminal, f"report: {index}"]))
    return index


def _class_cell(v: float, column: str) -> str:
    """Ours: NaN (class absent in every seed) reads n/a; the paper's: blank where it lists no value."""
    return "" if column.startswith("paper") and not np.isfinite(v) else _num(v)


def _short(v: Any, width: int = 70) -> str:
    if _is_null(v):
        return ""
    s = _fmt_value(v).splitlines()[0] if str(v) else ""
    return s if len(s) <= width else s[: width - 1] + "…"
