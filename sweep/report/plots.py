"""The report's plots (matplotlib, Agg backend): fraction curves, ablation bars, training curves, λ searches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...model.io import atomic_write
from .derive import metric_label, pct_label, row_sort_key

DPI = 110


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


def _no_data(ax: Any, why: str) -> None:
    """Say so in an empty panel, rather than leave it blank."""
    ax.text(0.5, 0.5, f"no data: {why}", transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color="0.35", wrap=True)


def plot_fraction_curve(summary: pd.DataFrame, block: str, metric: str, path: Path) -> Path:
    """mIoU vs labeled fraction per row: mean with a ± std band over seeds; the paper's dashed."""
    plt = _plt()
    s = summary[summary["block"] == block]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row in enumerate(sorted(s["row"].unique(), key=row_sort_key)):
        c = s[(s["row"] == row) & (s["n"] > 0)].sort_values("labeled_fraction")
        color = colors[i % len(colors)]
        x = c["labeled_fraction"].to_numpy() * 100
        m, sd = c["mean"].to_numpy(), np.nan_to_num(c["std"].to_numpy())
        # error bars as well as the band: a row with one fraction has no band to draw
        ax.errorbar(x, m, yerr=sd, fmt="o-", color=color, capsize=4, label=f"{row} (ours)")
        ax.fill_between(x, m - sd, m + sd, color=color, alpha=0.2, linewidth=0)
        p = s[(s["row"] == row) & s["paper"].notna()].sort_values("labeled_fraction")
        if len(p):
            ax.plot(p["labeled_fraction"] * 100, p["paper"], "s--", mfc="none", color=color, label=f"{row} (paper)")
    ax.set_xlabel("labeled fraction (%)")
    ax.set_ylabel(metric_label(metric))
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
    for i in x[~np.isfinite(s["mean"].to_numpy(float))]:
        a1.text(i, 0, "no data", rotation=90, ha="center", va="bottom", fontsize=8, color="0.35")
    if not np.isfinite(s["mean"].to_numpy(float)).any():
        _no_data(a1, "no variant has a completed trial")
    a1.set_xticks(x, s["variant"], rotation=30, ha="right", fontsize=8)
    a1.set_ylabel(metric_label(metric))
    a1.set_title(f"{block}, {pct_label(frac)} labeled", fontsize=10)
    a1.legend(fontsize=8)
    d = s[s["variant"] != "proposed"].reset_index(drop=True)
    xd = np.arange(len(d))
    colors = ["tab:red" if z else "tab:gray" for z in d["excludes_zero"].fillna(False)]
    a2.bar(xd, d["diff_mean"], yerr=err(d["diff_mean"], d["diff_ci_low"], d["diff_ci_high"]), capsize=4, color=colors)
    if "paper_diff" in d and d["paper_diff"].notna().any():
        a2.plot(xd, d["paper_diff"], "kx", markersize=9, label="paper")
        a2.legend(fontsize=8)
    if not np.isfinite(d["diff_mean"].to_numpy(float)).any():
        _no_data(a2, "no completed `proposed` (plain cyclegan) trial to pair the variants with")
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
    labels = sorted(e["label"].unique(), key=row_sort_key)
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


def _is_numeric(col: pd.Series) -> bool:
    """A searched field with a numeric axis (bools count as 0/1), not a choice of names."""
    return pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)


def search_importance(g: pd.DataFrame, params: Sequence[str]) -> dict[str, float]:
    """fANOVA importance of ``params`` for ``value`` over an in-memory Optuna study of the trials."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists: dict[str, Any] = {}
    for p in params:
        if _is_numeric(g[p]):
            lo, hi = float(g[p].min()), float(g[p].max())
            dists[p] = FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)
        else:  # a choice such as d_s_input or discriminator
            dists[p] = CategoricalDistribution(sorted(g[p].astype(str).unique()))
    study = optuna.create_study(direction="maximize")
    for _, r in g.iterrows():
        study.add_trial(
            optuna.trial.create_trial(
                params={p: float(r[p]) if _is_numeric(g[p]) else str(r[p]) for p in params}, distributions=dists,
                value=float(r["value"]),
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
    # a choice's axis holds its values in sorted order, spaced evenly
    levels = {p: sorted(g[p].astype(str).unique()) for p in params if not _is_numeric(g[p])}
    data = np.column_stack([g[c].astype(str).map(levels[c].index).to_numpy(float) if c in levels
                            else g[c].astype(float).to_numpy() for c in cols])
    lo, hi = data.min(axis=0), data.max(axis=0)
    scaled = (data - lo) / np.where(hi > lo, hi - lo, 1.0)
    fig, ax = plt.subplots(figsize=(1.6 * len(cols) + 2, 4.2))
    cmap = plt.get_cmap("viridis")
    vmin, vmax = lo[-1], hi[-1]
    order = np.argsort(data[:, -1])  # best trials drawn last, on top
    for i in order:
        c = (data[i, -1] - vmin) / (vmax - vmin) if vmax > vmin else 1.0
        ax.plot(range(len(cols)), scaled[i], color=cmap(c), alpha=0.8, linewidth=1.2)
    for j, c in enumerate(cols):
        ax.axvline(j, color="black", linewidth=0.8)
        if c in levels:
            for k, name in enumerate(levels[c]):
                ax.text(j + 0.03, k / max(1, len(levels[c]) - 1), name, ha="left", va="center", fontsize=6)
            continue
        ax.text(j, -0.06, f"{lo[j]:.3g}", ha="center", va="top", fontsize=7)
        ax.text(j, 1.04, f"{hi[j]:.3g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(cols)), [*params, metric_label(metric)], fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.12)
    ax.set_title(title, fontsize=10, pad=14)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(vmin, vmax))
    fig.colorbar(sm, ax=ax, label=metric_label(metric))
    return _save(fig, path)
