"""The sweep's closing summary: trials by status, each failed trial, Table 1 with its paired gains (test mIoU at
the epochs chosen on val), the best configuration (chosen on val), and where the files are."""

from __future__ import annotations

import json

from cycleseg.sweep import results as res
from cycleseg.sweep import storage
from cycleseg.sweep.dry_run import varying_fields
from cycleseg.sweep.export import rank_configs
from cycleseg.sweep.report.derive import prepare
from cycleseg.sweep.report.paper import Paper
from cycleseg.sweep.report.tables import power_notes, table1, table1_layout
from cycleseg.sweep.text import text_table


def print_summary(sweep_dir: str, name: str) -> int:
    """Print the summary; returns how many trials failed after their retries."""
    if not res.trial_ids(sweep_dir):
        print(f"\nsweep '{name}': no trial finished")
        return 0
    df = res.read_sweeps([sweep_dir]).trials
    print()
    counts = df["status"].value_counts()
    print(f"sweep '{name}': {len(df)} trials: " + ", ".join(f"{counts[s]} {s}" for s in res.STATUSES if s in counts))
    varying = varying_fields([json.loads(c) for c in df["config_json"]])
    failed = df[df["status"] == "failed"].sort_values("trial_id")
    for row in failed.itertuples():
        cfg = json.loads(row.config_json)
        desc = " ".join(f"{k}={cfg[k]}" for k in varying) or "(the one configuration)"
        print(f"failed: {row.trial_id} ({desc}): {row.error}; full log: "
              f"{storage.join(sweep_dir, row.trial_id, 'error.txt')}")
    done = df[df["status"] == "completed"]
    if done.empty:
        return len(failed)
    t = prepare(df, "test_miou")
    summary, gains = table1(t, Paper.load(), "t")
    for block in sorted(summary["block"].unique()) if not summary.empty else []:
        print(f"\nTable 1 — {block}: test mIoU at the epoch chosen on val, mean ± sd over seeds; "
              "gains paired by seed with 95 % t CI (* excludes 0), MDE = smallest gain these seeds detect")
        print(text_table(*table1_layout(summary, gains, block)))
        for note in power_notes(gains, block):
            print(note)
    best = rank_configs(done, "val_miou", "max", per_seed=False).iloc[0]
    members = done[done["group_hash"] == best["group_hash"]]
    cfg = json.loads(members["config_json"].iloc[0])
    desc = " ".join(f"{k}={cfg[k]}" for k in varying if k != "seed") or "(one configuration)"
    variant = members["variant"].iloc[0]
    variant = f" [variant {variant}]" if isinstance(variant, str) else ""
    print(f"\nbest configuration (chosen on val): {desc}{variant}, val mIoU {best['mean']:.4f} ± {best['std']:.4f}, "
          f"test mIoU {members['test_miou'].mean():.4f} (mean ± sd over {int(best['n'])} seed(s))")
    print(f"results: {sweep_dir}/{res.TRIALS_DIR}/ (one row per trial), {sweep_dir}/{res.EPOCHS_DIR}/ "
          f"(one row per epoch); e.g. pandas.read_parquet('{sweep_dir}/{res.TRIALS_DIR}')")
    print(f"report: cycleseg report {sweep_dir}; export the best config: cycleseg best-config {sweep_dir} -o best.yaml")
    return len(failed)
