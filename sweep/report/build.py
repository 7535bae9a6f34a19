"""``cycleseg report``: paper-style tables with replicate statistics, plots and sample grids, as ``index.md``.

Reads one or more sweep folders (``cycleseg.sweep.results.parquet.read_sweeps``), whatever has landed so far,
and writes ``index.md`` with PNGs and a CSV of every table:

1. Table 1: mean ± std (ddof=1) over seeds per method × labeled fraction, and each semi-supervised
   method's paired gain over ``partial`` (pairs share dataset, fraction and seed, hence the labeled
   subset) with a 95 % interval; the paper's numbers beside ours for voc / cityscapes / acdc.
2. Table 2: ablation variants (``variant`` column) against the full model, paired the same way.
3. Per-class IoU (paper Tables 3–4) at one labeled fraction, NaN-aware means over seeds.
4. Plots: mIoU vs labeled fraction, ablation bars, training curves, λ-search importance (Optuna
   fANOVA over an in-memory study) and parallel coordinates.
5. A sample grid (paper Fig. 2/3) from each method's best trial checkpoint.
6. Trials that did not complete are listed and never enter a mean; short seed sets are flagged.
7. A confirmation (``cycleseg confirm``, its ``confirm.json``) is named in the intro: the sweep and seeds its
   winners were chosen on, and the fresh seeds they re-ran on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...model.errors import UserError
from ...model.io import atomic_write, atomic_write_text, check_output_dir
from .. import storage
from ..planning.plan import read_plan
from ..results import stats
from ..results.parquet import read_sweeps
from ..results.text import md_table, text_table
from .derive import (
    CHOICE_METRIC,
    CLASS_IOU_COLUMN,
    MAX_TABLE_SETTINGS,
    METHOD_PARAMS,
    OPTIM_FIELDS,
    duplicate_seeds,
    fmt_value,
    is_null,
    pct_label,
    prepare,
    slug,
)
from .paper import Paper
from .plots import (
    plot_ablation,
    plot_curves,
    plot_fraction_curve,
    plot_importance,
    plot_parallel,
    plot_val_curves,
    search_importance,
)
from .samples import sample_grid
from .tables import (
    INCOMPLETE,
    ONE_CLASS,
    SIGNIFICANT,
    UNEQUAL,
    budget_layout,
    class_iou_table,
    num,
    power_notes,
    table1,
    table1_layout,
    table2,
    table2_layout,
)

MIN_SEARCH_TRIALS = 4  # fewer completed trials than this in a search group: no search section
MIN_IMPORTANCE_CONFIGS = 8  # fANOVA over fewer configurations attributes noise
SPLIT_WORDS = {"test_miou": "test-split mIoU", "val_miou": "val-split mIoU (what choices rank on)"}


@dataclass
class _Doc:
    """What the report's sections write into: the folder, index.md's lines, the lines printed at the end."""

    out: Path
    md: list[str] = field(default_factory=list)
    terminal: list[str] = field(default_factory=list)

    def csv(self, df: pd.DataFrame, name: str) -> str:
        atomic_write(self.out / name, lambda p: df.to_csv(p, index=False, float_format="%.6g"))
        return name


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
        "bootstrap is unreliable (2 pairs give only 3 distinct resample means), so those cells keep the paired t "
        "interval (the gains CSV's `ci_method` column says which interval each cell has)."
    ),
}


def _detail_fractions(t: pd.DataFrame, labeled_fraction: float | None) -> dict[str, float]:
    """Per block, the fraction for per-class tables and sample grids (checked before anything is written)."""
    plain = t[(t["row"] != "") & t["choosable"]]
    if labeled_fraction is None:
        semi = plain[plain["method"] != "full"]
        return {b: float(g["fraction"].min()) for b, g in (semi if len(semi) else plain).groupby("block")}
    want = round(float(labeled_fraction), 6)
    present = sorted(plain["fraction"].unique())
    if want not in present:
        raise UserError(f"--labeled-fraction {labeled_fraction} has no completed trials; present: "
                        f"{', '.join(f'{f:g}' for f in present) or 'none'}")
    return {b: want for b in plain.loc[plain["fraction"] == want, "block"].unique()}


def _intro(doc: _Doc, t: pd.DataFrame, metric: str, ci: str, sources: list[str], notes: list[str]) -> None:
    n_inc = int(t["included"].sum())
    rules = ", ".join(sorted(t["select"].astype(str).unique())) if "select" in t else "best_val"
    doc.md += [
        f"# cycleseg report: {', '.join(f'`{p}`' for p in sources)}",
        "",
        f"Metric: **{metric}** (`--metric`): the {SPLIT_WORDS[metric]} at the epoch each trial reports, chosen "
        f"on the val split alone (config `select`: {rules}; best_val = the epoch with the best val mIoU). "
        "Nothing that made a choice (best epoch, early stopping, the λ search, best-config) read the test split. "
        f"{len(t)} trials read: {n_inc} completed and used, {len(t) - n_inc} excluded"
        + (" (listed under *Excluded trials*; never part of a mean)." if n_inc < len(t) else "."),
        "",
        "Budgets: every method runs the same optimizer steps at the same dataset, labeled fraction, seed, epochs "
        "and batch size (an epoch is ceil(max(labeled, unlabeled) / batch) steps; labeled batches cycle). Each "
        f"block lists the steps its rows ran; `{UNEQUAL}` marks a comparison whose two sides ran different steps. "
        "MDE = the smallest gain these seeds could detect (80 % power, same level), from the pairs' sd. "
        f"`{ONE_CLASS}` marks a comparison whose two sides predict one class in every seed: no CI is shown, as "
        "their difference is no evidence either way.",
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
        notes = [*notes, f"{dup} seed(s) have more than one completed run in the same cell: averaged to one value"]
    doc.md += [f"- note: {n}" for n in notes] + ([""] if notes else [])


def _table1_section(doc: _Doc, t: pd.DataFrame, paper: Paper, metric: str, ci: str) -> None:
    summary, gains = table1(t, paper, ci)
    doc.md += ["## Table 1: methods × labeled fraction", ""]
    if summary.empty:
        doc.md += ["No plain-method trials (only ablation variants or searches).", ""]
    else:
        files = f"CSV: [{doc.csv(summary, 'table1.csv')}](table1.csv)"
        if not gains.empty:
            files += f", gains: [{doc.csv(gains, 'table1_gains.csv')}](table1_gains.csv)"
        doc.md += [files, ""]
        for block in sorted(summary["block"].unique()):
            headers, rows = table1_layout(summary, gains, block)
            notes = power_notes(gains, block)
            doc.md += [f"### {block}", "", md_table(headers, rows), "", *(f"- {n}" for n in notes),
                       *([""] if notes else []), "Budget per trial:", "", md_table(*budget_layout(summary, block)), ""]
            doc.terminal += [f"Table 1 — {block} ({metric}; gains: paired {ci} 95 % CI)", text_table(headers, rows),
                             *notes, ""]
            png = plot_fraction_curve(summary, block, metric, doc.out / f"miou_vs_fraction_{slug(block)}.png")
            doc.md += [f"![mIoU vs labeled fraction]({png.name})", ""]
    searched_out = t[t["searched"] & (t["row"] == "") & ~t["is_variant"]]
    if len(searched_out):
        doc.md += [f"{len(searched_out)} trials of searched settings are not in Table 1 (see *λ searches*).", ""]


def _table2_section(doc: _Doc, t: pd.DataFrame, paper: Paper, metric: str, ci: str) -> None:
    t2 = table2(t, paper, ci)
    if t2.empty:
        return
    doc.md += ["## Table 2: ablation (variant − proposed, paired by seed)", "",
               f"CSV: [{doc.csv(t2, 'table2.csv')}](table2.csv)", ""]
    for (block, frac), g in t2.groupby(["block", "labeled_fraction"]):
        headers, rows = table2_layout(t2, block, frac)
        doc.md += [f"### {block}, {pct_label(frac)} labeled", "", md_table(headers, rows), ""]
        if g["n"].iloc[0] == 0:
            doc.md += ["No plain `cyclegan` trials at this fraction: differences need them as the reference.", ""]
        png = plot_ablation(t2, block, frac, metric, doc.out / f"ablation_{slug(block, frac * 100)}.png")
        doc.md += [f"![ablation]({png.name})", ""]


def _class_iou_section(doc: _Doc, t: pd.DataFrame, paper: Paper, metric: str, frac_of: dict[str, float]) -> None:
    column = CLASS_IOU_COLUMN[metric]
    if frac_of:
        doc.md += [f"## Per-class IoU ({column}, NaN-aware mean over seeds)", ""]
    for block, frac in sorted(frac_of.items()):
        ct = class_iou_table(t, block, frac, column, paper)
        if ct.empty:
            continue
        name = doc.csv(ct, f"class_iou_{slug(block, frac * 100)}.csv")
        shown = [c for c in ct.columns if not c.endswith(" n")]
        rows = [[r["class"], *(_class_cell(r[c], c) for c in shown[1:])] for _, r in ct.iterrows()]
        doc.md += [f"### {block}, {pct_label(frac)} labeled", "", f"CSV (with per-class n): [{name}]({name})", "",
                   md_table(shown, rows), ""]


def _curves_section(doc: _Doc, t: pd.DataFrame, epochs: pd.DataFrame) -> None:
    e = epochs.merge(t.loc[t["included"], ["sweep", "trial_id", "block", "arm", "row", "fraction", "is_variant"]],
                     on=["sweep", "trial_id"])
    e = e[(e["row"] != "") | e["is_variant"]].assign(label=lambda d: np.where(d["is_variant"], d["arm"], d["row"]))
    if e.empty:
        return
    doc.md += ["## Training curves (completed trials, mean ± std over seeds per epoch)", ""]
    for block, eb in e.groupby("block"):
        png = plot_val_curves(eb, block, doc.out / f"val_miou_{slug(block)}.png")
        doc.md += [f"### {block}", "", f"![val mIoU]({png.name})", ""]
        for label, el in eb.groupby("label"):
            png = plot_curves(el.drop(columns=["label"]), f"{block}: {label} (lines: labeled fraction)", "fraction",
                              doc.out / f"curves_{slug(block, label)}.png")
            if png:
                doc.md += [f"![curves {label}]({png.name})", ""]


def _search_groups(t: pd.DataFrame) -> Iterable[tuple[tuple[str, str, str, float], pd.DataFrame, list[str]]]:
    """(sweep, block, method, fraction) groups of plain trials whose method hyperparameters vary: λ searches.
    Per sweep, so replicates of a fixed setting from another sweep do not enter a search's analysis. A
    method at no more than ``MAX_TABLE_SETTINGS`` settings (e.g. the partial of each recipe) is rows of
    Table 1, not a search."""
    s = t[t["searched"] & t["choosable"] & ~t["is_variant"]]
    for key, g in s.groupby(["sweep", "block", "method", "fraction"]):
        params = [p for p in (*METHOD_PARAMS.get(key[2], ()), *OPTIM_FIELDS)
                  if p in g.columns and g[p].astype(str).nunique() > 1]
        if params and len(g) >= MIN_SEARCH_TRIALS and g["group_hash"].nunique() > MAX_TABLE_SETTINGS:
            yield key, g, params


def _search_section(doc: _Doc, t: pd.DataFrame, metric: str) -> None:
    """Each λ search as the search saw it: ranked on val mIoU (what it chose on), the reported metric beside."""
    searches = list(_search_groups(t))
    if searches:
        doc.md += ["## λ searches (ranked on val mIoU, what the search chose on; importance: Optuna fANOVA over "
                   "the completed trials' val mIoU)", ""]
    for (sweep, block, method, frac), g, params in searches:
        tag = slug(sweep, block, method, frac * 100)
        title = f"{sweep}: {block}, {method}, {pct_label(frac)} labeled, {len(g)} trials"
        g = g.assign(value=g[CHOICE_METRIC].astype(float))
        shown = list(dict.fromkeys(["trial_id", "seed", *params, CHOICE_METRIC, metric]))
        top = g.sort_values("value", ascending=False)[shown]
        files = [doc.csv(top, f"lambda_search_{tag}.csv")]
        par_png = plot_parallel(g, params, CHOICE_METRIC, title, doc.out / f"lambda_parallel_{tag}.png")
        body = [f"![parallel coordinates]({par_png.name})"]
        n_configs = g["group_hash"].nunique()
        p = stats.groups_differ_p([c["value"].to_numpy() for _, c in g.groupby("group_hash")])
        if g["value"].nunique() < 2:
            body.insert(0, f"Every trial scored the same {CHOICE_METRIC}: no importance to attribute.\n")
        elif n_configs < MIN_IMPORTANCE_CONFIGS:
            body.insert(0, f"{n_configs} configurations: too few for an importance analysis (it needs "
                           f"≥ {MIN_IMPORTANCE_CONFIGS}).\n")
        elif p >= 1 - stats.LEVEL:
            body.insert(0, f"The configurations' {CHOICE_METRIC} differ no more than their seeds do (one-way ANOVA "
                           f"p = {p:.2f}): no importance to attribute, and the ranking above is noise.\n")
        else:
            imp = search_importance(g, params)
            files.append(doc.csv(pd.DataFrame({"param": list(imp), "importance": list(imp.values())}),
                                 f"lambda_importance_{tag}.csv"))
            imp_png = plot_importance(imp, title, doc.out / f"lambda_importance_{tag}.png")
            body = [md_table(["param", "importance"], [[k, f"{v:.3f}"] for k, v in imp.items()]), "",
                    f"![importance]({imp_png.name}) {body[0]}"]
        doc.md += [f"### {title}", "", "CSVs: " + ", ".join(f"[{f}]({f})" for f in files), "", *body, ""]


def _samples_section(doc: _Doc, t: pd.DataFrame, frac_of: dict[str, float], no_samples: bool) -> None:
    doc.md += ["## Sample grids (paper Fig. 2/3)", ""]
    if no_samples:
        doc.md += ["Skipped (`--no-samples`).", ""]
        return
    if not frac_of:
        doc.md += ["No completed plain-method trials to draw from.", ""]
    for block, frac in sorted(frac_of.items()):
        png, notes = sample_grid(t, block, frac, doc.out / f"samples_{slug(block, frac * 100)}.png")
        doc.md += [f"### {block}, {pct_label(frac)} labeled", ""]
        if png:
            doc.md += ["Rows: the first test images. Columns: image (min-max scaled) | ground truth | each "
                       "method's prediction from its best trial's last checkpoint | G_SI(ground truth) from "
                       "cyclegan's.", "", f"![samples]({png.name})", ""]
        doc.md += [f"- {n}" for n in notes] + ([""] if notes else [])


EXCLUDED_COLUMNS = ("sweep", "trial_id", "block", "arm", "fraction", "seed", "status", "reason", "epochs_run", "error")


def _excluded_section(doc: _Doc, t: pd.DataFrame) -> None:
    exc = t[~t["included"]]
    doc.md += ["## Excluded trials", ""]
    if exc.empty:
        doc.md += ["None: every trial read completed.", ""]
        return
    counts = exc["reason"].value_counts()
    cols = [c for c in EXCLUDED_COLUMNS if c in exc.columns]
    listing = exc[cols].sort_values(["block", "arm", "fraction", "seed"])
    doc.md += [", ".join(f"{k}: {v}" for k, v in counts.items())
               + f" (CSV: [{doc.csv(listing, 'excluded_trials.csv')}](excluded_trials.csv))", "",
               md_table(cols, [[_short(v) for v in r] for r in listing.itertuples(index=False)]), ""]
    doc.terminal.append("excluded trials: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def build_report(
    results: list[str | Path],
    output: str | Path | None = None,
    metric: str = "test_miou",
    labeled_fraction: float | None = None,
    no_samples: bool = False,
    ci: str = "t",
) -> Path:
    """Write ``output``/index.md with tables (CSV too) and PNGs; print Table 1. Returns index.md's path."""
    for r in results:
        storage.check_reachable(str(r), "RESULTS")
    if ci not in stats.CI_METHODS:
        raise UserError(f"--ci must be one of {', '.join(stats.CI_METHODS)}, got '{ci}'")
    if output is None and results and storage.is_uri(results[0]):
        raise UserError(f"'{results[0]}' is on object storage: give the report a local folder with -o, e.g. -o report")
    out = check_output_dir(output if output is not None else Path(str(results[0])) / "report", "-o/--output")
    for r in results:  # damage anywhere in a sweep is reported, as best-config and --resume do
        read_plan(r, "restore it from a copy, or delete it (the report reads only trials/ and epochs/)")
    from ..execution.confirm import confirmation_note  # here: confirm reads report.derive, this package

    sweeps = read_sweeps(list(results))
    confirmations = [note for r in results if (note := confirmation_note(r)) is not None]
    t = prepare(sweeps.trials, metric)
    frac_of = _detail_fractions(t, labeled_fraction)
    out.mkdir(parents=True, exist_ok=True)
    doc = _Doc(out)
    paper = Paper.load()
    _intro(doc, t, metric, ci, sweeps.sources, [*confirmations, *sweeps.notes])
    _table1_section(doc, t, paper, metric, ci)
    _table2_section(doc, t, paper, metric, ci)
    _class_iou_section(doc, t, paper, metric, frac_of)
    _curves_section(doc, t, sweeps.epochs)
    _search_section(doc, t, metric)
    _samples_section(doc, t, frac_of, no_samples)
    _excluded_section(doc, t)
    index = atomic_write_text(out / "index.md", "\n".join(doc.md).rstrip() + "\n")
    print("\n".join([*doc.terminal, f"report: {index}"]))
    return index


def _class_cell(v: float, column: str) -> str:
    """Ours: NaN (class absent in every seed) reads n/a; the paper's: blank where it lists no value."""
    return "" if column.startswith("paper") and not np.isfinite(v) else num(v)


def _short(v: Any, width: int = 70) -> str:
    if is_null(v):
        return ""
    s = fmt_value(v).splitlines()[0] if str(v) else ""
    return s if len(s) <= width else s[: width - 1] + "…"
