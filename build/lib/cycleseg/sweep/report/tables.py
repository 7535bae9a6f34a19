"""The report's tables: paper Table 1 and Table 2 replicas with paired statistics, per-class IoU, and their layout."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from cycleseg.model.config import LAMBDAS
from cycleseg.sweep import stats
from cycleseg.sweep.report.derive import (
    ABLATION_REFERENCE,
    BASELINE,
    SEMI_METHODS,
    is_list,
    paper_pct,
    pct_label,
    row_sort_key,
    seed_values,
)
from cycleseg.sweep.report.paper import Paper

INCOMPLETE = "†"
SIGNIFICANT = "*"


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

def fmt_diff(mean: float, lo: float, hi: float, n: int, sig: bool, incomplete: bool) -> str:
    if n == 0:
        return f"— (no pairs){INCOMPLETE}"
    ci = f" [{num(lo, True)}, {num(hi, True)}]" if np.isfinite(lo) else " [no CI]"
    return f"{num(mean, True)}{ci} (n={n}){SIGNIFICANT if sig else ''}{INCOMPLETE if incomplete else ''}"

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
                cells.append(num(c["paper"].iloc[0], True) if len(c) and np.isfinite(c["paper"].iloc[0]) else "")
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
                num(r["paper"]) if np.isfinite(r["paper"]) else "",
                "" if ref or not np.isfinite(r.get("paper_diff", math.nan)) else num(r["paper_diff"], True),
            ]
        rows.append(cells)
    return headers, rows
