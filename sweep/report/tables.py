"""The report's tables: paper Table 1 and Table 2 replicas with paired statistics, per-class IoU, and their layout."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ...model.config import LAMBDAS
from ...model.metrics import LEARNED_IOU
from ..results import stats
from .derive import (
    ABLATION_REFERENCE,
    BASELINE,
    METHOD_PARAMS,
    OPTIM_FIELDS,
    SEMI_METHODS,
    fmt_value,
    is_list,
    paper_pct,
    pct_label,
    row_sort_key,
    seed_values,
)
from .paper import Paper

INCOMPLETE = "†"
SIGNIFICANT = "*"
UNEQUAL = "‡"  # the two sides ran different numbers of optimizer steps
ONE_CLASS = "°"  # both sides predict one class in every seed: their difference is no evidence
CONTROL = "full"  # trained on every label: its gain over partial is a difference that is really there


def _cell_stats(per_seed: dict) -> dict[str, Any]:
    """One table cell's columns: n, mean, std and CI over the seeds' values, and which seeds they were."""
    s = stats.summarize(list(per_seed.values()))
    return {"n": s.n, "mean": s.mean, "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high,
            "seeds": ",".join(map(str, sorted(per_seed)))}


def budget(g: pd.DataFrame) -> dict[str, Any]:
    """The budget of a cell's included trials: optimizer steps (and images seen), as one value or a range."""
    inc = g[g["included"]]
    if inc.empty or "steps" not in inc:
        return {"steps_min": math.nan, "steps_max": math.nan, "labeled_images_seen": math.nan,
                "unlabeled_images_seen": math.nan}
    return {"steps_min": int(inc["steps"].min()), "steps_max": int(inc["steps"].max()),
            "labeled_images_seen": int(inc["labeled_images_seen"].max()),
            "unlabeled_images_seen": int(inc["unlabeled_images_seen"].max())}


def _same_budget(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["steps_min"] == a["steps_max"] == b["steps_min"] == b["steps_max"]


def _comparison(d: stats.PairedDiff) -> dict[str, Any]:
    """A paired difference's columns, with the smallest gain this many seeds could detect (power)."""
    mde = stats.min_detectable_effect(d.std, d.n)
    return {
        "n_pairs": d.n, "mean": d.mean, "std": d.std, "ci_low": d.ci_low, "ci_high": d.ci_high,
        "p_value": d.p_value, "ci_method": d.ci_method, "excludes_zero": d.excludes_zero,
        "mde": mde, "seeds_needed": None if d.excludes_zero else stats.seeds_needed(d.mean, d.std),
        "unpaired_seeds": ",".join(map(str, d.only_a + d.only_b)),
        "incomplete": bool(d.only_a or d.only_b) or d.n < 2,
    }


def table1(t: pd.DataFrame, paper: Paper, ci: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long tables: per (block, row, fraction) summaries with their budget, and paired gains over ``partial``:
    each semi-supervised row's (variants' arms included), and ``full``'s (the positive control: a difference
    that is really there)."""
    rows = t[t["row"] != ""].assign(label=lambda d: d["row"])
    vals = seed_values(rows[rows["included"]])
    dataset_of = dict(zip(t["block"], t["dataset"], strict=False))
    expected: dict[str, int] = {}
    for (block, _, _), sv in vals.items():
        expected[block] = max(expected.get(block, 0), len(sv))
    summ = []
    budgets: dict[tuple[str, str, float], dict[str, Any]] = {}
    for (block, row, frac), g in rows.groupby(["block", "row", "fraction"]):
        cell = _cell_stats(vals.get((block, row, frac), {}))
        budgets[block, row, frac] = budget(g)
        summ.append({
            "block": block, "dataset": dataset_of[block], "row": row, "labeled_fraction": frac, **cell,
            "expected_n": expected.get(block, 0), "incomplete": cell["n"] < expected.get(block, 0),
            "excluded": int((~g["included"]).sum()), **budgets[block, row, frac],
            "paper": paper.t1(dataset_of[block], row, frac),
        })
    summary = pd.DataFrame(summ)
    one_class = _one_class(rows)
    gains = []
    method_of = dict(zip(zip(rows["block"], rows["row"], strict=True), rows["method"], strict=True))
    recipe = rows["recipe"].astype(str) if "recipe" in rows else pd.Series("paper", index=rows.index)
    recipes = recipe.groupby([rows["block"], rows["row"]]).agg(lambda r: r.iloc[0] if r.nunique() == 1 else "")
    for (block, row, frac), sv in sorted(vals.items()):
        if method_of[block, row] in SEMI_METHODS:  # a method's rows and its variants' arms
            refs = [frac]
        elif row == CONTROL:  # trained on every label: compared with partial at each of its fractions
            refs = sorted(f for b, r, f in vals if b == block and r == BASELINE)
        else:
            continue
        base = _baseline_row(recipes, method_of, block, recipes.get((block, row), ""))
        if base is None:
            continue
        for ref_frac in refs:
            d = stats.paired_difference(sv, vals.get((block, base, ref_frac), {}), ci=ci)
            mine, theirs = budgets[block, row, frac], budgets.get((block, base, ref_frac), budget(rows[:0]))
            gains.append({
                "block": block, "dataset": dataset_of[block], "row": row, "reference": base,
                "labeled_fraction": ref_frac, **_comparison(d),
                "steps": mine["steps_max"], "reference_steps": theirs["steps_max"],
                "equal_budget": _same_budget(mine, theirs), "positive_control": row == CONTROL,
                "one_class": one_class.get((block, row, frac), False) and one_class.get((block, base, ref_frac), False),
                "paper": paper.t1(dataset_of[block], row, frac) - paper.t1(dataset_of[block], BASELINE, ref_frac),
            })
    return summary, pd.DataFrame(gains)


def _one_class(t: pd.DataFrame) -> dict[tuple[str, str, float], bool]:
    """(block, label, fraction) -> whether every included run predicts one class (derive's ``one_class``)."""
    inc = t[t["included"]]
    if "one_class" not in inc or inc.empty:
        return {}
    return {k: bool(v) for k, v in inc.groupby(["block", "label", "fraction"])["one_class"].all().items()}


def _baseline_row(recipes: pd.Series, method_of: dict[tuple[str, str], str], block: str, recipe: str) -> str | None:
    """The ``partial`` row a row of ``recipe`` is paired with: the one trained with the same recipe (the paper as
    coded has its own baseline, beta1 = 0.9), preferring the plain ``partial`` row; else the plain row; None
    without one."""
    partial = [r for (b, r) in recipes.index if b == block and method_of[b, r] == BASELINE]
    same = [r for r in partial if recipes[block, r] == recipe]
    if BASELINE in same or (BASELINE in partial and not same):
        return BASELINE
    return same[0] if same else None


def _zeroed(g: pd.DataFrame) -> str:
    return ",".join(k for k in LAMBDAS if k in g.columns and (g[k].astype(float) == 0).all())


def _changes(arm: pd.DataFrame, ref: pd.DataFrame) -> str:
    """What an arm sets differently from the reference row: its cyclegan settings (λ's, GAN levers) and
    optimiser fields whose single value differs from the reference's, e.g. ``d_s_input=straight_through``."""
    out = []
    for k in (*METHOD_PARAMS[ABLATION_REFERENCE], *OPTIM_FIELDS):
        if k not in arm.columns or arm[k].astype(str).nunique() != 1:
            continue
        v = arm[k].iloc[0]
        if ref.empty or ref[k].astype(str).nunique() != 1 or str(ref[k].iloc[0]) != str(v):
            out.append(f"{k}={fmt_value(v)}")
    return ", ".join(out)


def table2(t: pd.DataFrame, paper: Paper, ci: str) -> pd.DataFrame:
    """Ablation variants vs the block's plain ``cyclegan`` row, paired by seed at each fraction."""
    var = t[t["is_variant"]]
    if var.empty:
        return pd.DataFrame()
    ref = t[t["row"] == ABLATION_REFERENCE]
    both = pd.concat([ref.assign(label=ABLATION_REFERENCE), var.assign(label=var["arm"])])
    vals = seed_values(both[both["included"]])
    one_class = _one_class(both)
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
        ref_rows = ref[(ref["block"] == block) & (ref["fraction"] == frac) & ref["included"]]
        ref_budget = budget(both[(both["block"] == block) & (both["fraction"] == frac)
                                 & (both["label"] == ABLATION_REFERENCE)])
        for lab in labels:
            sv = vals.get((block, lab, frac), {})
            cell = _cell_stats(sv)
            arm = both[(both["block"] == block) & (both["fraction"] == frac) & (both["label"] == lab)]
            rec = {
                "block": block,
                "dataset": dataset,
                "labeled_fraction": frac,
                "variant": "proposed" if lab == ABLATION_REFERENCE else lab,
                "zeroed": "" if lab == ABLATION_REFERENCE else _zeroed(g[g["arm"] == lab]),
                "changes": "" if lab == ABLATION_REFERENCE else _changes(g[g["arm"] == lab], ref_rows),
                **cell,
                "incomplete": cell["n"] < expected,
                **budget(arm),
                "paper": paper.t2(dataset, lab, frac),
            }
            if lab != ABLATION_REFERENCE:
                d = _comparison(stats.paired_difference(sv, ref_vals, ci=ci))
                rec |= {("diff_" + k if k in ("mean", "std", "ci_low", "ci_high", "incomplete") else k): v
                        for k, v in d.items()}
                rec |= {"equal_budget": _same_budget(budget(arm), ref_budget),
                        "one_class": one_class.get((block, lab, frac), False)
                        and one_class.get((block, ABLATION_REFERENCE, frac), False),
                        "paper_diff": paper.t2(dataset, lab, frac) - paper.t2(dataset, ABLATION_REFERENCE, frac)}
            out.append(rec)
    return pd.DataFrame(out)


def class_iou_table(t: pd.DataFrame, block: str, fraction: float, column: str, paper: Paper) -> pd.DataFrame:
    """Per class: NaN-aware mean IoU over seeds for each Table 1 row at ``fraction`` (+ the paper's)."""
    g = t[(t["block"] == block) & (t["fraction"] == fraction) & (t["row"] != "") & t["included"]]
    if g.empty or column not in g.columns:
        return pd.DataFrame()
    g = g[[is_list(v) for v in g[column]]]
    if g.empty:
        return pd.DataFrame()
    n_classes = max(len(v) for v in g[column])
    g = g[[len(v) == n_classes for v in g[column]]]
    names_col = g["class_names"] if "class_names" in g.columns else []
    names = next((list(map(str, v)) for v in names_col if is_list(v) and len(v) == n_classes), None)
    names = names or [str(i) for i in range(n_classes)]
    out = pd.DataFrame({"class": names})
    for row in sorted(g["row"].unique(), key=row_sort_key):
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


def num(v: float, signed: bool = False) -> str:
    if not np.isfinite(v):
        return "n/a"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def fmt_summary(mean: float, std: float, n: int, incomplete: bool) -> str:
    if n == 0:
        return f"— (n=0){INCOMPLETE if incomplete else ''}"
    spread = f" ± {num(std)}" if np.isfinite(std) else ""
    return f"{num(mean)}{spread} (n={n}){INCOMPLETE if incomplete else ''}"


def fmt_diff(mean: float, lo: float, hi: float, n: int, sig: bool, incomplete: bool, mde: float = math.nan,
             unequal_budget: bool = False, one_class: bool = False) -> str:
    if n == 0:
        return f"— (no pairs){INCOMPLETE}"
    if one_class:  # two runs that learned nothing agree to the last digit: a CI would look like a tight result
        return f"{num(mean, True)} (n={n}){ONE_CLASS} no evidence: both predict one class"
    ci = f" [{num(lo, True)}, {num(hi, True)}]" if np.isfinite(lo) else " [no CI]"
    flags = f"{SIGNIFICANT if sig else ''}{INCOMPLETE if incomplete else ''}{UNEQUAL if unequal_budget else ''}"
    power = f" MDE {num(mde)}" if np.isfinite(mde) else ""
    return f"{num(mean, True)}{ci} (n={n}){flags}{power}"


def fmt_steps(lo: float, hi: float) -> str:
    if not np.isfinite(lo):
        return ""
    return f"{int(lo):,}" if lo == hi else f"{int(lo):,}–{int(hi):,}"


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
    for row in sorted(s["row"].unique(), key=row_sort_key):
        cells = [row]
        for f in fracs:
            c = s[(s["row"] == row) & (s["labeled_fraction"] == f)]
            cells.append(
                fmt_summary(c["mean"].iloc[0], c["std"].iloc[0], int(c["n"].iloc[0]), bool(c["incomplete"].iloc[0]))
                if len(c)
                else ""
            )
            if with_paper[f]:
                cells.append(num(c["paper"].iloc[0]) if len(c) and np.isfinite(c["paper"].iloc[0]) else "")
        rows.append(cells)
    for row in sorted(g["row"].unique(), key=row_sort_key) if not g.empty else []:
        ref = g.loc[g["row"] == row, "reference"].iloc[0]
        cells = [f"{row} − {ref}" + (" (positive control)" if row == CONTROL else "")]
        for f in fracs:
            c = g[(g["row"] == row) & (g["labeled_fraction"] == f)]
            if len(c):
                r = c.iloc[0]
                cells.append(fmt_diff(r["mean"], r["ci_low"], r["ci_high"], int(r["n_pairs"]), bool(r["excludes_zero"]),
                                      bool(r["incomplete"]), r["mde"], not r["equal_budget"], bool(r["one_class"])))
            else:
                cells.append("")
            if with_paper[f]:
                cells.append(num(c["paper"].iloc[0], True) if len(c) and np.isfinite(c["paper"].iloc[0]) else "")
        rows.append(cells)
    return headers, rows


def table2_layout(t2: pd.DataFrame, block: str, frac: float) -> tuple[list[str], list[list[str]]]:
    s = t2[(t2["block"] == block) & (t2["labeled_fraction"] == frac)]
    has_paper = s["paper"].notna().any()
    headers = ["variant", "changes", "mIoU", "Δ vs proposed [95 % CI]"] + (["paper", "paper Δ"] if has_paper else [])
    rows = []
    for _, r in s.iterrows():
        ref = r["variant"] == "proposed"
        cells = [
            r["variant"],
            r["changes"] or "—",
            fmt_summary(r["mean"], r["std"], int(r["n"]), bool(r["incomplete"])),
            ""
            if ref
            else fmt_diff(r["diff_mean"], r["diff_ci_low"], r["diff_ci_high"], int(r["n_pairs"]),
                          bool(r["excludes_zero"]), bool(r["diff_incomplete"]), r["mde"], not r["equal_budget"],
                          bool(r.get("one_class", False))),
        ]
        if has_paper:
            cells += [
                num(r["paper"]) if np.isfinite(r["paper"]) else "",
                "" if ref or not np.isfinite(r.get("paper_diff", math.nan)) else num(r["paper_diff"], True),
            ]
        rows.append(cells)
    return headers, rows


def budget_layout(summary: pd.DataFrame, block: str) -> tuple[list[str], list[list[str]]]:
    """Optimizer steps per trial (labeled + unlabeled images seen) for each Table 1 row and fraction."""
    s = summary[summary["block"] == block]
    fracs = sorted(s["labeled_fraction"].unique())
    rows = []
    for row in sorted(s["row"].unique(), key=row_sort_key):
        cells = [row]
        for f in fracs:
            c = s[(s["row"] == row) & (s["labeled_fraction"] == f)]
            if len(c) and np.isfinite(c["steps_min"].iloc[0]):
                r = c.iloc[0]
                cells.append(f"{fmt_steps(r['steps_min'], r['steps_max'])} steps "
                             f"({int(r['labeled_images_seen']):,} L + {int(r['unlabeled_images_seen']):,} U)")
            else:
                cells.append("")
        rows.append(cells)
    return ["method", *(pct_label(f) for f in fracs)], rows


def power_notes(gains: pd.DataFrame, block: str) -> list[str]:
    """The block's unequal-budget comparisons, and an underpowered sweep: a positive control not detected."""
    if gains.empty:
        return []
    g = gains[gains["block"] == block]
    notes = []
    for r in g[~g["equal_budget"]].itertuples():
        notes.append(f"{UNEQUAL} {r.row} − {r.reference} at {pct_label(r.labeled_fraction)}: the budgets differ "
                     f"({fmt_steps(r.steps, r.steps)} vs {fmt_steps(r.reference_steps, r.reference_steps)} steps)"
                     + ("; expected for the positive control, which trains on every image" if r.positive_control
                        else "; this gain mixes the method with the extra updates"))
    for r in g[g["one_class"]].itertuples():
        notes.append(f"{ONE_CLASS} {r.row} − {r.reference} at {pct_label(r.labeled_fraction)}: both predict one class "
                     f"(usually background) in every seed — no other class reaches IoU {LEARNED_IOU} — so their "
                     "mIoUs say nothing about learning and their difference is no evidence either way; train longer "
                     "(more epochs) before comparing")
    for r in g[g["positive_control"] & ~g["excludes_zero"] & np.isfinite(g["ci_low"]) & ~g["one_class"]].itertuples():
        n_more = r.seeds_needed
        more = (f"with this sd, {int(n_more)} seeds would detect a gain of this size" if pd.notna(n_more)
                else "the gain is too small against the seed noise to detect with any sane n")
        notes.append(f"UNDERPOWERED: the positive control {r.row} − {r.reference} at {pct_label(r.labeled_fraction)} "
                     f"({num(r.mean, True)} [{num(r.ci_low, True)}, {num(r.ci_high, True)}], n={r.n_pairs}) is not "
                     f"detected, so a smaller real gain would not be either: add seeds ({more}) or epochs")
    return notes
