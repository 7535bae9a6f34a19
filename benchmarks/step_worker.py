"""One benchmark configuration in its own process: ``python benchmarks/step_worker.py PAYLOAD`` (``bench.py`` starts
it). It imports nothing of cycleseg outside ``cycleseg.model`` (config resolution, the device, the dataset,
``METHODS``, ``EpochBatches``, ``count_step_flops``), so ``bench.py --baseline`` times another checkout's own code,
including checkouts from before the sweep package was laid out again."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """High-water mark of this process's RSS (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _timed(method: Any, batches: Iterator[Any], cuda: bool) -> tuple[float, list[float], int, int]:
    """Run ``optimize_parameters`` over ``batches``: (seconds, step end times from the start, #labeled, #unlabeled).

    Ends with ``torch.cuda.synchronize`` on CUDA, a ``.item()`` on CPU. CPU kernels run synchronously,
    so there each step's end time is real (on CUDA only the total is).
    """
    n_l = n_u = 0
    ends = []
    t0 = time.perf_counter()
    for batch in batches:
        n_l += len(batch.x)
        n_u += len(batch.x_u) if batch.x_u is not None else 0
        terms = method.optimize_parameters(batch)
        ends.append(time.perf_counter() - t0)
    if cuda:
        torch.cuda.synchronize()
    else:
        terms["G_total"].item()
    return time.perf_counter() - t0, ends, n_l, n_u


def bench_config(layers: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, Any]:
    """Build, count, warm up and time one configuration; return the raw measurements. With ``autocast_bf16`` in
    ``spec`` all of it runs under bf16 autocast, on CPU too (cycleseg itself autocasts on CUDA only)."""
    from cycleseg.model.device import resolve_device
    from cycleseg.model.resolve import resolve_config

    cfg = resolve_config(*layers)
    device = resolve_device(cfg.device)
    with torch.autocast(device.type, dtype=torch.bfloat16) if spec.get("autocast_bf16") else contextlib.nullcontext():
        return _measure(cfg, device, spec)


def _measure(cfg: Any, device: torch.device, spec: dict[str, Any]) -> dict[str, Any]:
    from cycleseg.model.data import prepare_dataset
    from cycleseg.model.flops import count_step_flops
    from cycleseg.model.methods import METHODS, create_method
    from cycleseg.model.resolve import replace
    from cycleseg.model.trainer import EpochBatches

    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # as run_trial does
    data = prepare_dataset(cfg)
    batches = EpochBatches(data, cfg, METHODS.get(cfg.method).uses_unlabeled, device)
    total_iters = cfg.epochs * batches.iters_per_epoch

    def stream() -> Iterator[Any]:
        epoch = 1
        while True:
            yield from batches.epoch(epoch)
            epoch += 1

    draw = stream()
    warm = spec["warmup"]
    flops = None
    if cfg.compile:  # FlopCounterMode and compiled graphs don't mix: count on an eager twin
        eager = create_method(replace(cfg, compile=False), data.info, device, total_iters)
        flops = count_step_flops(eager, next(draw))
        del eager
        if cuda:
            torch.cuda.empty_cache()
    built = time.perf_counter()
    method = create_method(cfg, data.info, device, total_iters)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        mem_before = torch.cuda.memory_allocated()
    else:
        mem_before = _rss_bytes()
    if flops is None:
        flops = count_step_flops(method, next(draw))  # = the first warm-up step
        warm -= 1
    for _ in range(max(0, warm)):
        method.optimize_parameters(next(draw))
    if cuda:
        torch.cuda.synchronize()
    warmup_seconds = time.perf_counter() - built  # build + warm-up steps: torch.compile's cost shows here
    if spec.get("barrier"):  # --concurrent: every copy starts timing together
        barrier = Path(spec["barrier"])
        (barrier / f"ready-{os.getpid()}").touch()
        deadline = time.monotonic() + 900
        while len(list(barrier.glob("ready-*"))) < spec["copies"]:
            if time.monotonic() > deadline:
                raise RuntimeError("--concurrent: the other copies never got ready")
            time.sleep(0.01)

    # What the timed steps ran in: G_IS's output dtype, seen from inside the step (not the hook's own settings).
    # A compiled G_IS would recompile for a new hook, so there the autocast state stands in.
    g_is_dtypes: set[str] = set()
    if not cfg.compile:
        method.raw_networks["G_IS"].register_forward_hook(lambda _m, _i, out: g_is_dtypes.add(str(out.dtype)))
    seconds, ends, n_l, n_u = _timed(method, (next(draw) for _ in range(spec["steps"])), cuda)
    if cuda:
        free, total = torch.cuda.mem_get_info()
        mem = {"mem_peak": torch.cuda.max_memory_allocated(), "mem_reserved": torch.cuda.max_memory_reserved(),
               "gpu_used_process": total - free,  # whole device: CUDA context + allocator pool (+ others)
               "gpu_total": total,
               "gpu": f"{torch.cuda.get_device_name(device)} ({total / 2**30:.1f} GiB)"}
    else:
        mem = {"mem_peak": _peak_rss_bytes()}
    # Again over batches drawn beforehand: what the batch draw (index copy, gather, normalise) adds.
    ready = [next(draw) for _ in range(spec["steps"])]
    predrawn_seconds = _timed(method, iter(ready), cuda)[0]

    out = {
        "seconds": seconds,
        "warmup_s": warmup_seconds,
        "median_step_ms": None if cuda else 1000 * statistics.median(np.diff([0.0, *ends])),
        "predrawn_step_ms": 1000 * predrawn_seconds / spec["steps"],
        "labeled_per_step": n_l // spec["steps"],
        "unlabeled_per_step": n_u // spec["steps"],
        "flops_step": flops,
        "data_bytes": batches.images.nbytes + batches.masks.nbytes,
        "amp_bf16": ("torch.bfloat16" in g_is_dtypes) if g_is_dtypes
        else method.use_amp or torch.is_autocast_enabled(device.type),
        "cpu_kernels": "onednn" if torch.backends.mkldnn.enabled else "native",
        "channels_last": method.memory_format == torch.channels_last,
        "compile": cfg.compile,
        "threads": torch.get_num_threads(),
        "ngf": cfg.ngf,
        "n_blocks": cfg.n_blocks,
        "num_classes": data.info.num_classes,
        "in_channels": data.info.in_channels,
        **mem,
        "mem_step": max(0, mem["mem_peak"] - mem_before),
    }
    return out


def main(payload: str) -> None:
    """Measure the configuration in ``payload`` (JSON: config layers and the spec) and print its result as JSON."""
    job = json.loads(payload)
    spec = job["spec"]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.backends.mkldnn.enabled = spec.get("cpu_kernels", "onednn") == "onednn"
    print(json.dumps(bench_config(job["layers"], spec)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])


