"""``cycleseg sweep --dry-run``: the expanded trials (or search cells) as a table and what they cost."""

from __future__ import annotations

import json
from typing import Any

from cycleseg.model.config import FIELD_NAMES
from cycleseg.model.data import dataset_info, train_size
from cycleseg.model.flops import generator_forward_flops
from cycleseg.model.resolve import resolve_config
from cycleseg.sweep.plan import Plan
from cycleseg.sweep.text import text_table


def varying_fields(configs: list[dict[str, Any]]) -> list[str]:
    """Config fields whose value differs between ``configs``."""
    return [k for k in FIELD_NAMES if len({json.dumps(c[k]) for c in configs}) > 1]


def print_dry_run(plan: Plan) -> None:
    """The expanded trials (or search cells) as a table, and an estimate of the compute."""
    space = plan.load_space()
    search = space.search
    rows, variants = plan.rows(), plan.variants()
    cols = [k for k in varying_fields(rows) if search is None or k != "seed"]
    if search is None:
        print(f"{space.path}: {plan.num_trials} trials ({len(plan.seeds)} seed(s) × "
              f"{plan.num_trials // len(plan.seeds)} configurations; identical resolved configs run once)")
    else:
        print(f"{space.path}: {plan.num_trials} trials = {len(rows)} grid cell(s) × {search.num_samples} "
              f"{search.algorithm} samples of {', '.join(search.params)} × seeds {plan.seeds}")
    if space.scheduler is not None:
        s = space.scheduler
        print(f"early stopping: ASHA on {s.metric} ({s.mode}), grace {s.grace_period} epoch(s), "
              f"reduction factor {s.reduction_factor}")
    show_variant = any(variants)
    header = ["#", *(["variant"] if show_variant else []), *cols, *([] if "epochs" in cols else ["epochs"]),
              "config_hash"]
    table = []
    for i, (cfg, variant) in enumerate(zip(rows, variants, strict=True)):
        h = resolve_config(cfg).hash(exclude=() if search is None else ("seed",))
        table.append([str(i), *([variant or ""] if show_variant else []), *(str(cfg[k]) for k in cols),
                      *([] if "epochs" in cols else [str(cfg["epochs"])]), h])
    print(text_table(header, table, indent="  "))
    # Compute: G_IS forward FLOPs × training images × epochs over all trials, a lower bound (a
    # training step runs several networks forward and backward).
    reps = 1 if search is None else search.num_samples * len(plan.seeds)
    total, epochs, unknown = 0.0, 0, 0
    flops: dict[tuple, int] = {}
    for cfg in map(resolve_config, rows):
        epochs += cfg.epochs * reps
        info = dataset_info(cfg)
        key = (info.in_channels, info.num_classes, cfg.ngf, cfg.n_blocks, info.height, info.width)
        if key not in flops:
            flops[key] = generator_forward_flops(*key)
        n = train_size(cfg)
        if n is None:
            unknown += 1
        else:
            total += flops[key] * n * cfg.epochs * reps
    per_image = ", ".join(f"{v / 1e9:.3g}" for v in sorted(set(flops.values())))
    print(f"compute: {epochs} trial-epochs; G_IS forward {per_image} GFLOP per image"
          + (f"; {total / 1e12:.3g} TFLOP of G_IS forwards over all training images and epochs" if total else "")
          + (f" ({unknown} config(s) with a not yet prepared on-disk dataset not counted)" if unknown else "")
          + "; plus ~10 s of Ray start-up per trial")
