"""The sweep's closing summary: trials by status, each failed trial, Table 1 with its paired gains (test mIoU at
the epochs chosen on val), a search's best configuration per grid cell (chosen on val), and where the files are."""

from __future__ import annotations

import json

from .. import storage
from ..execution.console import CONSOLE
from ..planning.dry_run import varying_fields
from ..report.derive import prepare
from ..report.paper import Paper
from ..report.tables import power_notes, table1, table1_layout
from . import parquet as res
from .export import cell_winners, searched_fields
from .text import text_table


def print_summary(sweep_dir: str, name: str) -> int:
    """Print the summary; returns how many trials failed after their retries."""
    if not res.trial_ids(sweep_dir):
        CONSOLE.line(f"\nsweep '{name}': no trial finished")
        return 0
    df = res.read_sweeps([sweep_dir]).trials
    CONSOLE.line()
    counts = df["status"].value_counts()
    by_status = ", ".join(f"{counts[s]} {s}" for s in res.STATUSES if s in counts)
    CONSOLE.line(f"sweep '{name}': {len(df)} trials: {by_status}")
    varying = varying_fields([json.loads(c) for c in df["config_json"]])
    failed = df[df["status"] == "failed"].sort_values("trial_id")
    for row in failed.itertuples():
        cfg = json.loads(row.config_json)
        desc = " ".join(f"{k}={cfg[k]}" for k in varying) or "(the one configuration)"
        CONSOLE.line(f"failed: {row.trial_id} ({desc}): {row.error}; full log: "
              f"{storage.join(sweep_dir, row.trial_id, 'error.txt')}")
    done = df[df["status"] == "completed"]
    if done.empty:
        return len(failed)
    t = prepare(df, "test_miou")
    summary, gains = table1(t, Paper.load(), "t")
    for block in sorted(summary["block"].unique()) if not summary.empty else []:
        CONSOLE.line(f"\nTable 1 — {block}: test mIoU at the epoch chosen on val, mean ± sd over seeds; "
              "gains paired by seed with 95 % t CI (* excludes 0), MDE = smallest gain these seeds detect")
        CONSOLE.line(text_table(*table1_layout(summary, gains, block)))
        for note in power_notes(gains, block):
            CONSOLE.line(note)
    searched = searched_fields(sweep_dir)
    if searched:
        CONSOLE.line(f"\nbest configuration per grid cell (chosen on val: mean val mIoU over seeds; searched: "
              f"{', '.join(searched)}):")
        for w in cell_winners(done, "val_miou", "max", searched):
            cfg = json.loads(w.members["config_json"].iloc[0])
            params = " ".join(f"{k}={cfg[k]:.4g}" if isinstance(cfg[k], float) else f"{k}={cfg[k]}" for k in searched)
            CONSOLE.line(f"  {w.cell}: {params}, val mIoU {w.stats['mean']:.4f} ± {w.stats['std']:.4f}, test mIoU "
                  f"{w.members['test_miou'].mean():.4f} (n={int(w.stats['n'])} seeds)")
            for c in w.caveats:
                CONSOLE.line(f"    caution: {c}")
    CONSOLE.line(f"results: {sweep_dir}/{res.TRIALS_DIR}/ (one row per trial), {sweep_dir}/{res.EPOCHS_DIR}/ "
                 f"(one row per epoch); e.g. pandas.read_parquet('{sweep_dir}/{res.TRIALS_DIR}')")
    CONSOLE.line(f"report: cycleseg report {sweep_dir}; the best configuration(s): cycleseg best-config {sweep_dir} "
                 "-o best/  (one YAML per grid cell)")
    return len(failed)
