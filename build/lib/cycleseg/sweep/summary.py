"""The sweep's closing summary: trials by status, the best configuration, where the files are."""

from __future__ import annotations

import json

from cycleseg.sweep import results as res
from cycleseg.sweep import storage
from cycleseg.sweep.dry_run import varying_fields
from cycleseg.sweep.export import rank_configs


def print_summary(sweep_dir: str, name: str) -> int:
    """Trials by status, each failed trial, the best configuration, where the Parquet is; returns #failed."""
    if not res.trial_ids(sweep_dir):
        print(f"\nsweep '{name}': no trial finished")
        return 0
    df = res.read_sweeps([sweep_dir]).trials
    print()
    counts = df["status"].value_counts()
    print(f"sweep '{name}': {len(df)} trials: " + ", ".join(f"{counts[s]} {s}" for s in res.STATUSES if s in counts))
    varying = [k for k in varying_fields([json.loads(c) for c in df["config_json"]])]
    failed = df[df["status"] == "failed"].sort_values("trial_id")
    for row in failed.itertuples():
        cfg = json.loads(row.config_json)
        desc = " ".join(f"{k}={cfg[k]}" for k in varying) or "(the one configuration)"
        print(f"failed: {row.trial_id} ({desc}): {row.error}; full log: {storage.join(sweep_dir, row.trial_id)}"
              f"/error.txt")
    done = df[df["status"] == "completed"]
    if not done.empty:
        best = rank_configs(done, "best_val_miou", "max", per_seed=False).iloc[0]
        row = done[done["group_hash"] == best["group_hash"]].iloc[0]
        cfg = json.loads(row["config_json"])
        desc = " ".join(f"{k}={cfg[k]}" for k in varying if k != "seed") or "(one configuration)"
        variant = f" [variant {row['variant']}]" if isinstance(row["variant"], str) else ""
        print(f"best configuration: {desc}{variant}, best val mIoU {best['mean']:.4f} ± {best['std']:.4f} "
              f"(mean ± sd over {int(best['n'])} seed(s))")
    print(f"results: {sweep_dir}/{res.TRIALS_DIR}/ (one row per trial), {sweep_dir}/{res.EPOCHS_DIR}/ "
          f"(one row per epoch); e.g. pandas.read_parquet('{sweep_dir}/{res.TRIALS_DIR}')")
    print(f"export the best config: cycleseg best-config {sweep_dir} -o best.yaml")
    return len(failed)
