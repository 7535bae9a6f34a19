"""``cycleseg sweep --dry-run``: the expanded trials (or search cells) as a table and what they cost."""

from __future__ import annotations

import json
from typing import Any

from ..model.config import FIELD_NAMES
from ..model.flops import step_flops, trial_flops
from ..model.resolve import resolve_config
from .plan import Plan
from .text import text_table


def varying_fields(configs: list[dict[str, Any]]) -> list[str]:
    """Config fields whose value differs between ``configs``."""
    return [k for k in FIELD_NAMES if len({json.dumps(c[k]) for c in configs}) > 1]


def _flops(f: float) -> str:
    return f"{f / 1e12:.3g} TFLOP" if f >= 1e12 else f"{f / 1e9:.3g} GFLOP"


def print_dry_run(plan: Plan) -> None:
    """The expanded trials (or search cells) as a table, and an estimate of the compute."""
    search, early = plan.search_spec(), plan.scheduler_spec()
    rows, variants = plan.rows(), plan.variants()
    cols = [k for k in varying_fields(rows) if search is None or k != "seed"]
    if search is None:
        print(f"{plan.space_path}: {plan.num_trials} trials ({len(plan.seeds)} seed(s) × "
              f"{plan.num_trials // len(plan.seeds)} configurations; identical resolved configs run once)")
    else:
        print(f"{plan.space_path}: {plan.num_trials} trials = {len(rows)} grid cell(s) × {search.num_samples} "
              f"{search.algorithm} samples of {', '.join(search.params)} × seeds {plan.seeds}")
    if early is not None:
        s = early
        print(f"early stopping: ASHA per grid cell, a configuration's seeds stopped together, on {s.metric} "
              f"({s.mode}), grace {s.grace_period} epoch(s), reduction factor {s.reduction_factor}")
    show_variant = any(variants)
    reps = 1 if search is None else search.num_samples * len(plan.seeds)
    header = ["#", *(["variant"] if show_variant else []), *cols, *([] if "epochs" in cols else ["epochs"]),
              "steps", "config_hash"]
    table = []
    total, steps_all, unknown = 0, 0, 0
    for i, (row, variant) in enumerate(zip(rows, variants, strict=True)):
        cfg = resolve_config(row)
        cost = trial_flops(cfg)
        if cost is None:
            unknown += 1
        else:
            steps_all += cost[0] * reps
            total += cost[1] * reps
        table.append([str(i), *([variant or ""] if show_variant else []), *(str(row[k]) for k in cols),
                      *([] if "epochs" in cols else [str(row["epochs"])]), f"{cost[0]:,}" if cost else "?",
                      cfg.hash(exclude=() if search is None else ("seed",))])
    print(text_table(header, table, indent="  "))
    per_step = {}
    for row in rows:
        cfg = resolve_config(row)
        per_step.setdefault(cfg.method, step_flops(cfg))
    print("per optimizer step: " + ", ".join(f"{m} {_flops(f)}" for m, f in per_step.items())
          + " (every network's forward and backward)")
    if unknown < len(rows):
        print(f"budget: {steps_all:,} optimizer steps in all (per trial: epochs × ceil(max(labeled, unlabeled) / "
              f"batch_size), equal for every method at the same data, fraction and batch size); compute: "
              f"{_flops(total)}" + (f" (each cell's {reps} trials counted, before early stopping)" if reps > 1 else ""))
    if unknown:
        print(f"steps and compute of {unknown} config(s) are unknown until their on-disk dataset is prepared "
              "(the first sweep decodes it once)")
    print("plus about 0.3–0.6 s of Ray overhead per trial and 1–3 s to start each trial process, which later "
          "trials reuse (BENCHMARKS.md)")
