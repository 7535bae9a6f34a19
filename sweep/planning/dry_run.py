"""``cycleseg sweep --dry-run``: the expanded trials (or search cells) as a table and what they cost."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...model.config import FIELD_NAMES, TrialConfig
from ...model.data import planned_train_size
from ...model.flops import step_flops, trial_flops
from ...model.resolve import resolve_config
from ..results.text import text_table
from .estimate import StepTime, estimate_lines, h100_line, local_concurrency, local_device, shape_key, step_times
from .plan import Plan


def varying_fields(configs: list[dict[str, Any]]) -> list[str]:
    """Config fields whose value differs between ``configs``."""
    return [k for k in FIELD_NAMES if len({json.dumps(c[k]) for c in configs}) > 1]


def _flops(f: float) -> str:
    for scale, unit in ((1e18, "EFLOP"), (1e15, "PFLOP"), (1e12, "TFLOP")):
        if f >= scale:
            return f"{f / scale:.3g} {unit}"
    return f"{f / 1e9:.3g} GFLOP"


@dataclass(frozen=True)
class Where:
    """Where the sweep would run, for its time estimate: the run options and ``--assume-tflops``."""

    workers: int = 1
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    max_concurrent: int | None = None
    address: str | None = None
    assume_tflops: float | None = None


def print_dry_run(plan: Plan, where: Where | None = None) -> None:
    """The expanded trials (or search cells) as a table, an estimate of the compute and of the time."""
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
    counted: list[tuple[TrialConfig, int, int]] = []  # (config, steps, trials like it)
    planned: list[TrialConfig] = []  # steps from the dataset's standard train list (not decoded yet)
    for i, (row, variant) in enumerate(zip(rows, variants, strict=True)):
        cfg = resolve_config(row)
        cost = trial_flops(cfg)
        if cost is None and (cost := trial_flops(cfg, planned=True)) is not None:
            planned.append(cfg)
        if cost is None:
            unknown += 1
        else:
            steps_all += cost[0] * reps
            total += cost[1] * reps
            counted.append((cfg, cost[0], reps))
        table.append([str(i), *([variant or ""] if show_variant else []), *(str(row[k]) for k in cols),
                      *([] if "epochs" in cols else [str(row["epochs"])]),
                      (f"~{cost[0]:,}" if cfg in planned else f"{cost[0]:,}") if cost else "?",
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
    if planned:
        sizes = sorted({f"{c.dataset} {planned_train_size(c):,}" for c in planned})
        print(f"~ steps of {len(planned)} config(s) assume the standard train list less the val share "
              f"({', '.join(sizes)} train images) until the data is decoded (the first sweep decodes it once)")
    if unknown:
        print(f"steps and compute of {unknown} config(s) are unknown until their on-disk dataset is prepared "
              "(the first sweep decodes it once)")
    print("plus about 0.3–0.6 s of Ray overhead per trial and 1–3 s to start each trial process, which later "
          "trials reuse (BENCHMARKS.md)")
    if counted:
        _print_time(counted, where or Where())


def _print_time(counted: list[tuple[TrialConfig, int, int]], where: Where) -> None:
    """Step times per network shape, then the sweep's wall and device hours (``estimate``)."""
    configs = [c for c, _, _ in counted]
    device = local_device(configs)
    times = step_times(configs, device, where.assume_tflops, max(1, int(where.cpus_per_worker)))
    if where.address:
        concurrent = where.max_concurrent or 1
        why = (f"--max-concurrent {where.max_concurrent}" if where.max_concurrent else
               "assumed: a dry run does not contact --address; pass --max-concurrent N for its trials at once")
    else:
        concurrent, why = local_concurrency(where.workers, where.gpus_per_worker, where.cpus_per_worker,
                                            where.max_concurrent)
    gpus = where.gpus_per_worker if where.gpus_per_worker is not None else 1.0
    per_trial = where.workers * (gpus if device == "cuda" else 1)
    print("time:")
    for line in estimate_lines(counted, times, concurrent, why, per_trial, device):
        print(line)
    untimed = any(t.seconds is None for t in times.values())
    if device != "cuda" and where.assume_tflops is None and (untimed or _busy(counted, times) > 3600):
        print(h100_line(counted))


def _busy(counted: list[tuple[TrialConfig, int, int]], times: dict[TrialConfig, StepTime]) -> float:
    return sum(steps * n * (times[shape_key(c)].seconds or 0.0) for c, steps, n in counted)
