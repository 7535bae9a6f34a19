"""How long a sweep would take, for ``--dry-run``: hours, not only FLOPs.

Each distinct network shape (method, networks, image size, batch) is timed here for a few optimizer steps on
the device its trials would use on this machine, unless one step would take longer than ``MEASURE_LIMIT_S``
(judged from its FLOPs at ``CPU_GUESS_TFLOPS``), or ``--assume-tflops`` says the rate of a cluster this machine is
not. A trial's time is its steps × its step time (evaluation, checkpoints and Ray's overhead per trial are not
counted; BENCHMARKS.md has them); the sweep's wall time spreads its trials over the trials that run at once on
the cluster it would join. For sweeps too big to time here, the estimate also says what an H100 would take at
``H100_ASSUMED_TFLOPS``: an assumption, stated beside the number.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ...model.config import FIELD_NAMES, TrialConfig
from ...model.data import dataset_info
from ...model.flops import step_flops
from ..execution.cluster import resolve_resources, trials_that_fit

MEASURE_STEPS, MEASURE_WARMUP = 3, 1
MEASURE_LIMIT_S = 2.0  # a step that would take longer is not timed by a dry run
CPU_GUESS_TFLOPS = 0.02  # one core's rate on small networks (BENCHMARKS.md), to judge what is quick to time
H100_BF16_PEAK_TFLOPS = 989.0  # H100 SXM dense bf16 tensor-core peak (NVIDIA datasheet, no sparsity)
H100_ASSUMED_TFLOPS = 0.3 * H100_BF16_PEAK_TFLOPS  # 30 % of the dense bf16 peak: what BENCHMARKS.md expects


def shape_key(cfg: TrialConfig) -> TrialConfig:
    """What a step's time depends on: everything but the seed, the labeled fraction and the epochs."""
    return dataclasses.replace(cfg, seed=0, labeled_fraction=1.0, epochs=1)


def measure_step_seconds(cfg: TrialConfig, device: str, threads: int = 1) -> float:
    """Mean seconds of ``optimize_parameters`` on random data of ``cfg``'s shapes on ``device`` (after warm-up), with
    ``threads`` torch CPU threads: what a trial's worker gets (one per CPU it holds)."""
    import torch

    from ...model.data import normalize_images
    from ...model.device import resolve_device
    from ...model.methods import Batch, create_method

    dev = resolve_device(device)
    info = dataset_info(cfg)
    b, h, w = cfg.batch_size, info.height, info.width
    method = create_method(cfg, info, dev, total_iters=MEASURE_STEPS + MEASURE_WARMUP)
    g = torch.Generator().manual_seed(0)

    def images() -> Any:
        return normalize_images(torch.randint(0, 256, (b, info.in_channels, h, w), generator=g,
                                              dtype=torch.uint8).to(dev))

    batch = Batch(x=images(), y=torch.randint(0, info.num_classes, (b, h, w), generator=g).to(dev),
                  x_u=images() if method.uses_unlabeled else None)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(MEASURE_WARMUP):
            method.optimize_parameters(batch)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(MEASURE_STEPS):
            terms = method.optimize_parameters(batch)
        next(iter(terms.values())).item()  # the steps have run (CUDA is asynchronous)
        return (time.perf_counter() - start) / MEASURE_STEPS
    finally:
        torch.set_num_threads(before)


@dataclasses.dataclass
class StepTime:
    """One network shape's step time, and how it was found: measured here, or FLOPs at an assumed rate."""

    seconds: float | None
    how: str


def step_times(configs: list[TrialConfig], device: str, assume_tflops: float | None,
               threads: int = 1) -> dict[TrialConfig, StepTime]:
    """A ``StepTime`` per distinct shape of ``configs``."""
    out: dict[TrialConfig, StepTime] = {}
    for cfg in configs:
        key = shape_key(cfg)
        if key in out:
            continue
        flops = step_flops(cfg)
        if assume_tflops is not None:
            out[key] = StepTime(flops / (assume_tflops * 1e12), f"{flops / 1e9:.3g} GFLOP at {assume_tflops:g} TFLOP/s")
        elif device == "cuda" or flops / (CPU_GUESS_TFLOPS * 1e12) <= MEASURE_LIMIT_S:
            seconds = measure_step_seconds(cfg, device, threads)
            on = device if device == "cuda" else f"cpu, {threads} thread(s) as a trial gets"
            out[key] = StepTime(seconds, f"measured here ({on}): {MEASURE_STEPS} steps")
        else:
            guess = flops / (CPU_GUESS_TFLOPS * 1e12)
            out[key] = StepTime(None, f"not timed: one step on this CPU would take about {guess:.0f} s")
    return out


def local_device(configs: list[TrialConfig]) -> str:
    """The device these trials would train on here (``auto`` = CUDA when torch sees a GPU)."""
    import torch

    wanted = {c.device for c in configs}
    if wanted == {"cpu"} or not torch.cuda.is_available():
        return "cpu"
    return "cuda"


def local_concurrency(workers: int, gpus_per_worker: float | None, cpus_per_worker: float,
                      max_concurrent: int | None) -> tuple[int, str]:
    """Trials at once on the embedded Ray a sweep here would start (this machine's CPUs and GPUs), by the rules a
    real run applies (``cluster.resolve_resources``, ``cluster.trials_that_fit``)."""
    import os

    import torch

    gpus = float(torch.cuda.device_count()) if torch.cuda.is_available() else 0.0
    node = {"CPU": float(os.cpu_count() or 1), "GPU": gpus}
    fit = trials_that_fit([node], resolve_resources(workers, gpus_per_worker, cpus_per_worker, [node]))
    n = max(1, min(fit, max_concurrent) if max_concurrent else fit)
    return n, f"this machine ({node['CPU']:g} CPUs, {gpus:g} GPUs) fits {fit} trial(s) at once"


def hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def estimate_lines(trials: list[tuple[TrialConfig, int, int]], times: dict[TrialConfig, StepTime], concurrent: int,
                   why_concurrent: str, per_trial_devices: float, device: str) -> list[str]:
    """The dry run's time lines. ``trials``: (config, optimizer steps, how many such trials)."""
    known = [(cfg, steps, n) for cfg, steps, n in trials if times[shape_key(cfg)].seconds is not None]
    lines = []
    labels = {}
    for key in times:
        info = dataset_info(key)
        labels[key] = f"{key.method} step ({key.preset} preset, {info.height}x{info.width}, batch {key.batch_size}"
    for key, t in times.items():
        shown = f"{t.seconds * 1000:.1f} ms" if t.seconds is not None else "?"
        alike = [k for k in times if labels[k] == labels[key]]  # e.g. a variant: name what sets it apart
        differ = [f for f in FIELD_NAMES if len({getattr(k, f) for k in alike}) > 1]
        apart = "".join(f", {f}={getattr(key, f)}" for f in differ)
        lines.append(f"  {labels[key]}{apart}): {shown} ({t.how})")
    if known:
        busy = sum(steps * n * times[shape_key(cfg)].seconds for cfg, steps, n in known)
        unit = "GPU" if device == "cuda" else "CPU-worker"
        missing = len(trials) - len(known)
        lines.append(f"expected: about {hours(busy / concurrent)} wall with {concurrent} trial(s) at once "
                     f"({why_concurrent}); {busy * per_trial_devices / 3600:,.1f} {unit}-hours"
                     + (f"; {missing} configuration(s) not counted (not timed)" if missing else ""))
        lines.append("  rests on: steps × step time per trial; evaluation, checkpoints and Ray's overhead per trial "
                     "not counted, early stopping not applied (an upper bound for a search with a scheduler)")
    return lines


def h100_line(trials: list[tuple[TrialConfig, int, int]]) -> str:
    """What the sweep's compute would take on H100s at the assumed sustained rate."""
    total = sum(steps * n * step_flops(cfg) for cfg, steps, n in trials)
    seconds = total / (H100_ASSUMED_TFLOPS * 1e12)
    return (f"on H100s: about {seconds / 3600:,.1f} GPU-hours, assuming {H100_ASSUMED_TFLOPS:.0f} TFLOP/s sustained "
            f"(30 % of the {H100_BF16_PEAK_TFLOPS:g} TFLOP/s dense bf16 peak; --assume-tflops X for another rate)")
