"""Train-step benchmark: step time, images/s, peak memory and achieved FLOP/s per method and preset.

(About 500 lines on purpose: one script people run by hand whose sections, the driver, the derived columns
and table, the FLOP-model text and the GPU packing estimate, together print one section of BENCHMARKS.md; the
measurement itself lives in step_worker.py, the Ray overhead in ray_overhead.py.)

Run by hand (not a test); results go into BENCHMARKS.md::

    .venv/bin/python benchmarks/bench.py                    # CPU (or CUDA if present), every preset/method
    .venv/bin/python benchmarks/bench.py --device cuda --markdown
    .venv/bin/python benchmarks/bench.py --ray-overhead     # only the sweep's fixed cost per trial
    git worktree add /tmp/before <commit>                    # then time its step beside this one's:
    .venv/bin/python benchmarks/bench.py --baseline /tmp/before --presets tiny --size 32x32 --set batch_size=10

Each (preset, method) runs in a fresh subprocess (``step_worker.py``), so peak memory is that configuration's
alone. A subprocess builds the method through ``METHODS`` from a resolved ``TrialConfig`` on real ``digits``
batches drawn by ``EpochBatches`` (uint8 arrays resident on the device, normalised per batch, as in
``run_trial``), runs one step under ``FlopCounterMode`` (the FLOP count; it doubles as the first
warm-up step), the other warm-up steps, then times ``steps`` calls of ``optimize_parameters``
including the batch draw, ended by ``torch.cuda.synchronize`` on CUDA (a final ``.item()`` on CPU),
and times as many again on batches drawn beforehand (what the draw itself costs, host syncs included).
With ``--baseline DIR`` each configuration also runs on the code of another checkout (``DIR`` imported as
``cycleseg``, this script's measurement), alternating with this checkout ``--repeat`` times, so the before/after
table comes from one run on one machine state; each side's row is its median repeat by step time.

FLOP model: the project's one (``cycleseg.model.flops``, also behind ``cycleseg sweep --dry-run``):
``FlopCounterMode`` counts the matmul/convolution FLOPs (2 per MAC) of one whole
``optimize_parameters``, forward and backward of every network; ``generator_forward_flops`` is the
analytic count of one generator forward (the notes: ≈65 GFLOP per 200×200 image, paper preset);
``step_flops`` counts a whole step on the meta device (the notes: ≈5 TFLOP, paper-preset cyclegan).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import io
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cycleseg.model.config import BUILTIN_METHODS  # the driver's imports; the measuring process: step_worker.py
from cycleseg.model.flops import generator_forward_flops, step_flops
from cycleseg.sweep.planning.estimate import H100_BF16_PEAK_TFLOPS

try:  # run as a script (python benchmarks/bench.py) or imported as benchmarks.bench (tests)
    from ray_overhead import ray_overhead
except ImportError:
    from benchmarks.ray_overhead import ray_overhead

WORKER = Path(__file__).resolve().with_name("step_worker.py")
PRESET_NAMES = ("tiny", "small", "paper")
METHOD_NAMES = BUILTIN_METHODS
H100_BF16_DENSE_TFLOPS = H100_BF16_PEAK_TFLOPS  # the product's dry run owns it (sweep/planning/estimate.py)
NOTES_GFLOP_PAPER_200 = 65.0  # shared/notes/reference-code.md "Cost of one step": one G forward, 200×200
# Default timed steps per preset: CPU keeps the whole default run within ~10 min on 2 cores.
CPU_STEPS = {"tiny": 10, "small": 5, "paper": 3}
CUDA_STEPS = 20


# ------------------------------------------------------------------------------------------------
# Pure parts: sizes, the analytic FLOP model, the counted FLOP model, table formatting
# ------------------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """``"200x200"`` → (200, 200). The generators need multiples of 4."""
    m = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size must look like 64x64 (HxW), got {text!r}")
    h, w = int(m.group(1)), int(m.group(2))
    if h < 8 or w < 8 or h % 4 or w % 4:
        raise argparse.ArgumentTypeError(f"size {h}x{w}: H and W must be multiples of 4 and >= 8")
    return h, w


def images_per_second(images_per_step: int, steps: int, seconds: float) -> float:
    return images_per_step * steps / seconds


def fmt_bytes(n: float | None) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n / 2**10:.0f} KiB"


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    fmt: str = "{}"


COLUMNS: tuple[Column, ...] = (
    Column("code", "code"),
    Column("preset", "preset"),
    Column("method", "method"),
    Column("device", "device"),
    Column("size", "size"),
    Column("copies", "copies"),
    Column("batch", "batch L+U"),
    Column("steps", "steps"),
    Column("warmup_s", "warm-up s", "{:.1f}"),
    Column("step_ms", "step ms", "{:.1f}"),
    Column("median_step_ms", "median ms", "{:.1f}"),
    Column("predrawn_step_ms", "pre-drawn ms", "{:.1f}"),
    Column("img_s_labeled", "img/s L", "{:.2f}"),
    Column("img_s_unlabeled", "img/s U", "{:.2f}"),
    Column("img_s_total", "img/s", "{:.2f}"),
    Column("gflop_step", "GFLOP/step", "{:.2f}"),
    Column("g_fwd_equiv", "=G fwd/img", "{:.2f}"),
    Column("tflops", "TFLOP/s", "{:.3f}"),
    Column("pct_peak", "% peak", "{:.1f}"),
    Column("mem_peak", "peak mem"),
    Column("mem_step", "step mem"),
    Column("trials_per_gpu", "trials/GPU"),
)


def table_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """Formatted cells (one list per result) in ``COLUMNS`` order; '-' where a value is absent."""
    out = []
    for r in results:
        cells = []
        for c in COLUMNS:
            v = r.get(c.key)
            if c.key in ("mem_peak", "mem_step"):
                cells.append(fmt_bytes(v))
            elif v is None:
                cells.append("-")
            else:
                cells.append(c.fmt.format(v))
        if r.get("error"):
            cells[COLUMNS.index(next(c for c in COLUMNS if c.key == "step_ms"))] = "error: " + r["error"]
        out.append(cells)
    return out


def format_table(results: list[dict[str, Any]], markdown: bool) -> str:
    head = [c.title for c in COLUMNS]
    rows = table_rows(results)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    return "\n".join("  ".join(x.rjust(wd) for x, wd in zip(r, widths, strict=True)) for r in [head, *rows])


def derive(r: dict[str, Any], peak_tflops: float | None, g_fwd_flops: int) -> dict[str, Any]:
    """Add the derived columns (per-step time, images/s, TFLOP/s, % of peak) to a worker's raw result."""
    s, t = r["steps"], r["seconds"]
    d = dict(r)
    d["step_ms"] = 1000 * t / s
    d["img_s_labeled"] = images_per_second(r["labeled_per_step"], s, t)
    d["img_s_unlabeled"] = images_per_second(r["unlabeled_per_step"], s, t)
    d["img_s_total"] = d["img_s_labeled"] + d["img_s_unlabeled"]
    d["batch"] = f"{r['labeled_per_step']}+{r['unlabeled_per_step']}"
    d["gflop_step"] = r["flops_step"] / 1e9
    # the step's work in units of "one generator forward per labeled image" (cyclegan ≈ 5 fwd × 3)
    d["g_fwd_equiv"] = r["flops_step"] / (g_fwd_flops * r["labeled_per_step"])
    d["tflops"] = r["flops_step"] * s / t / 1e12
    d["pct_peak"] = 100 * d["tflops"] / peak_tflops if peak_tflops else None
    return d


# ------------------------------------------------------------------------------------------------
# The driver
# ------------------------------------------------------------------------------------------------


def config_layers(args: argparse.Namespace, preset: str, method: str, device: str) -> list[dict[str, Any]]:
    """Config layers for one cell: base (digits at --size), then the user's --set overrides."""
    from cycleseg.model.resolve import parse_set

    h, w = args.size
    base = {
        "dataset": "digits",
        "method": method,
        "preset": preset,
        "image_height": h,
        "image_width": w,
        "device": device,
        # Hung's self-training term on from step 1: the step of 75 % of a run (same conv FLOPs)
        "hung_semi_start": 0.0,
    }
    if args.cache_dir:
        base["cache_dir"] = args.cache_dir
    return [base, parse_set(args.set)]


def code_env(checkout: Path | None, shim: Path) -> dict[str, str] | None:
    """The environment of a worker that imports ``cycleseg`` from ``checkout`` (None: this checkout's install):
    ``shim`` gets a ``cycleseg`` link to it and leads PYTHONPATH, ahead of the editable install's finder."""
    if checkout is None:
        return None
    link = shim / "cycleseg"
    if not link.exists():
        shim.mkdir(parents=True, exist_ok=True)
        link.symlink_to(checkout.resolve(), target_is_directory=True)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))}


def run_cell(layers: list[dict[str, Any]], spec: dict[str, Any], copies: int,
             env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Run ``copies`` subprocesses of one configuration at once (``env``: see ``code_env``); their raw results
    (or errors)."""
    with tempfile.TemporaryDirectory(prefix="cycleseg-bench-") as barrier:
        spec = {**spec, "copies": copies, "barrier": barrier if copies > 1 else None}
        payload = json.dumps({"layers": layers, "spec": spec})
        cmd = [sys.executable, str(WORKER), payload]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(copies)]
        results = []
        for p in procs:
            stdout, stderr = p.communicate()
            if p.returncode == 0:
                results.append(json.loads(stdout.strip().splitlines()[-1]))
            else:
                last = (stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
                results.append({"error": last[:160]})
        return results


def cell_row(ident: dict[str, Any], raws: list[dict[str, Any]], peak: float | None, g_fwd: int) -> dict[str, Any]:
    """One table row from the raw results of a cell's copies: throughput adds up, time per step is the mean."""
    errors = [r["error"] for r in raws if "error" in r]
    if errors:
        return {**ident, "error": errors[0]}
    per = [derive({**ident, **r}, peak, g_fwd) for r in raws]
    row = dict(per[0])
    if len(per) > 1:
        row["seconds"] = sum(r["seconds"] for r in per) / len(per)
        row["step_ms"] = sum(r["step_ms"] for r in per) / len(per)
        row["predrawn_step_ms"] = statistics.mean(r["predrawn_step_ms"] for r in per)
        if row["median_step_ms"] is not None:
            row["median_step_ms"] = statistics.mean(r["median_step_ms"] for r in per)
        for k in ("img_s_labeled", "img_s_unlabeled", "img_s_total", "tflops"):
            row[k] = sum(r[k] for r in per)
        row["pct_peak"] = 100 * row["tflops"] / peak if peak else None
        row["mem_peak"] = max(r["mem_peak"] for r in per)
        row["mem_step"] = max(r["mem_step"] for r in per)
    if row["device"] == "cuda" and len(per) == 1:  # with copies the device figure mixes processes
        row["trials_per_gpu"] = int(row["gpu_total"] // row["gpu_used_process"])
    return row


def median_run(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Of one code's repeats of a cell, the one with the median step time (the lower middle of an even count);
    an error if any repeat failed."""
    failed = [r for r in rows if "error" in r]
    if failed:
        return failed[0]
    return sorted(rows, key=lambda r: r["step_ms"])[(len(rows) - 1) // 2]


def speedup_table(results: list[dict[str, Any]]) -> str:
    """Markdown: per preset × method, the before and after step times and after's speed-up (before / after)."""
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for r in results:
        if "error" not in r:
            cells.setdefault((r["preset"], r["method"]), {})[r["code"]] = r["step_ms"]
    lines = ["| preset | method | before ms | after ms | speed-up |", "|---|---|---:|---:|---:|"]
    for (preset, method), t in cells.items():
        if {"before", "after"} <= t.keys():
            lines.append(f"| {preset} | {method} | {t['before']:.1f} | {t['after']:.1f} | "
                         f"{t['before'] / t['after']:.2f}× |")
    return "\n".join(lines)


def git_head(checkout: Path) -> str:
    """The short commit of ``checkout`` (+ "-dirty" with uncommitted changes), or "?" outside git."""
    try:
        head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + ("-dirty" if dirty else "")


def machine_description(threads: int, gpu: str | None) -> str:
    """CPU, torch and (as a worker saw it: the driver never touches CUDA, its context would skew memory) GPU."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        if names:
            cpu = names[0]
    text = (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
            f"({threads} threads per worker), Python {platform.python_version()}, {platform.system()}")
    if gpu:
        text += f"; GPU {gpu}, CUDA {torch.version.cuda}"
    return text


def flop_model_text(args: argparse.Namespace, presets: list[str], methods: list[str]) -> str:
    """The FLOP model at the paper's shapes: analytic G forward per image, counted train step per method."""
    from cycleseg.model.config import PRESETS
    from cycleseg.model.data import DATASETS
    from cycleseg.model.resolve import resolve_config

    h, w = args.size
    digits, voc = DATASETS.get("digits").info, DATASETS.get("voc").info
    lines = [
        "Analytic FLOPs of one ResnetGenerator (G_IS) forward per image (2·MACs of the convolutions):",
        "",
        f"| preset | digits 3→11 at {h}×{w} (the runs above) | VOC 3→21 at 200×200 | notes (paper preset, VOC) |",
        "|---|---|---|---|",
    ]
    for p in presets:
        n = PRESETS[p]
        ours = generator_forward_flops(digits.in_channels, digits.num_classes, n["ngf"], n["n_blocks"], h, w)
        ref = generator_forward_flops(voc.in_channels, voc.num_classes, n["ngf"], n["n_blocks"], 200, 200)
        notes = f"≈{NOTES_GFLOP_PAPER_200:.0f} GFLOP" if p == "paper" else "-"
        lines.append(f"| {p} | {ours / 1e9:.3f} GFLOP | {ref / 1e9:.3f} GFLOP | {notes} |")
    b = resolve_config({}).batch_size
    lines += [
        "",
        f"Counted FLOPs of one train step at VOC's shapes (3→21 classes, 200×200, batch {b} labeled + {b} unlabeled "
        "where used; FlopCounterMode over optimize_parameters on the meta device; notes: ≈5 TFLOP for cyclegan/paper):",
        "",
        "| preset | method | TFLOP/step | GFLOP per labeled image | =G fwd/img |",
        "|---|---|---|---|---|",
    ]
    for p in presets:
        n = PRESETS[p]
        g = generator_forward_flops(voc.in_channels, voc.num_classes, n["ngf"], n["n_blocks"], 200, 200)
        for m in methods:
            f = step_flops(resolve_config({"dataset": "voc", "method": m, "preset": p}))
            lines.append(f"| {p} | {m} | {f / 1e12:.3f} | {f / b / 1e9:.1f} | {f / b / g:.2f} |")
    return "\n".join(lines)


def gpu_fit_text(results: list[dict[str, Any]]) -> str:
    """How many copies of each CUDA configuration fit in the GPU's memory (whole-process use)."""
    lines = []
    for r in results:
        if "trials_per_gpu" not in r:
            continue
        lines.append(
            f"- {r['preset']}/{r['method']}: peak allocated {fmt_bytes(r['mem_peak'])}, allocator pool "
            f"{fmt_bytes(r['mem_reserved'])}, whole device in use {fmt_bytes(r['gpu_used_process'])} "
            f"(incl. CUDA context and {fmt_bytes(r['data_bytes'])} of resident train arrays) → "
            f"{r['trials_per_gpu']} such trials fit on this GPU by memory "
            f"(--gpus-per-worker {1 / max(1, r['trials_per_gpu']):.3g} or more)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    ap.add_argument("--presets", default=",".join(PRESET_NAMES), help="comma list of tiny,small,paper")
    ap.add_argument("--methods", default=",".join(METHOD_NAMES), help=f"comma list of {','.join(METHOD_NAMES)}")
    ap.add_argument("--size", type=parse_size, default=None, help="HxW (default 64x64 on CPU, 200x200 on CUDA)")
    ap.add_argument("--steps", type=int, default=None,
                    help=f"timed steps (default CPU {CPU_STEPS}, CUDA {CUDA_STEPS})")
    ap.add_argument("--warmup", type=int, default=None,
                    help="warm-up steps incl. the FLOP-counted one (default CPU 1, CUDA 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads per worker (default: torch's)")
    ap.add_argument("--concurrent", type=int, default=1,
                    help="run N copies of each configuration at once (CUDA: N trials packed on one GPU)")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help=f"device peak for '%% peak' (CUDA default {H100_BF16_DENSE_TFLOPS:g}: H100 SXM dense bf16)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override any TrialConfig field, e.g. --set batch_size=10 --set compile=true")
    ap.add_argument("--cpu-kernels", choices=("onednn", "native"), default="onednn",
                    help="CPU convolutions: oneDNN (torch's default) or native (im2col + GEMM; mkldnn off)")
    ap.add_argument("--autocast-bf16", action="store_true",
                    help="run each step under bf16 autocast on any device (cycleseg autocasts on CUDA only): "
                         "what bf16 would buy on a CPU with AVX512-BF16/AMX")
    ap.add_argument("--cache-dir", default=None, help="dataset cache folder (default: the config's)")
    ap.add_argument("--csv", type=Path, default=None, help="also write the rows to this CSV")
    ap.add_argument("--markdown", action="store_true", help="print Markdown (for BENCHMARKS.md)")
    ap.add_argument("--ray-overhead", action="store_true", help="measure only the sweep's fixed cost per trial (Ray)")
    ap.add_argument("--with-ray-overhead", action="store_true",
                    help="after the step table, also measure the sweep's fixed cost per trial (one command for both)")
    ap.add_argument("--ray-trials", type=int, default=4, help="--ray-overhead: trials (1 epoch each)")
    ap.add_argument("--ray-concurrent", type=int, default=2, help="--ray-overhead: trials at once")
    ap.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                    help="also time the step of another checkout (e.g. a git worktree of main), alternating with this")
    ap.add_argument("--repeat", type=int, default=1, help="runs per configuration and code; the median is reported")
    args = ap.parse_args(argv)
    cmd = "benchmarks/bench.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = dt.datetime.now().astimezone()
    threads = args.threads or torch.get_num_threads()
    if args.ray_overhead:  # the Ray part alone: the step table is its own run
        if args.ray_trials < 1 or args.ray_concurrent < 1:
            ap.error("--ray-trials and --ray-concurrent must be >= 1")
        if args.cpu_kernels != "onednn" or args.autocast_bf16:
            ap.error("--cpu-kernels and --autocast-bf16 change the step table's measurement, not --ray-overhead's")
        table = ray_overhead(args)
        print(f"Command: `.venv/bin/python {cmd.strip()}`\nDate: {started:%Y-%m-%d %H:%M %Z}\n"
              f"Machine: {machine_description(args.threads or 1, None)}\n\n{table}")
        return 0

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no GPU")
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for name, got, valid in (("--presets", presets, PRESET_NAMES), ("--methods", methods, METHOD_NAMES)):
        bad = [x for x in got if x not in valid]
        if bad or not got:
            ap.error(f"{name}: unknown {bad or 'empty list'}; choose from {','.join(valid)}")
    if args.size is None:
        args.size = (200, 200) if device == "cuda" else (64, 64)
    if args.concurrent < 1 or args.repeat < 1:
        ap.error("--concurrent and --repeat must be >= 1")
    if args.baseline and not (args.baseline / "model" / "methods.py").is_file():
        ap.error(f"--baseline {args.baseline}: not a cycleseg checkout (no model/methods.py); "
                 "make one with: git worktree add DIR <commit>")
    peak = args.peak_tflops if args.peak_tflops is not None else (H100_BF16_DENSE_TFLOPS if device == "cuda" else None)
    warmup = args.warmup if args.warmup is not None else (3 if device == "cuda" else 1)
    if warmup < 1:
        ap.error("--warmup must be >= 1 (the first warm-up step is the FLOP-counted one)")

    from cycleseg.model.config import PRESETS
    from cycleseg.model.data import DATASETS, prepare_dataset
    from cycleseg.model.errors import UserError
    from cycleseg.model.resolve import resolve_config

    try:  # decode the data once here; the workers read the cache
        prepare_dataset(resolve_config(*config_layers(args, presets[0], methods[0], "cpu")))
    except UserError as e:
        ap.error(str(e))

    h, w = args.size
    digits = DATASETS.get("digits").info
    results: list[dict[str, Any]] = []
    cells = [(p, m) for p in presets for m in methods]
    codes = [("before", args.baseline), ("after", None)] if args.baseline else [("this", None)]
    shim = Path(tempfile.mkdtemp(prefix="cycleseg-bench-code-"))
    for i, (preset, method) in enumerate(cells, 1):
        steps = args.steps or (CUDA_STEPS if device == "cuda" else CPU_STEPS[preset])
        n = PRESETS[preset]
        g_fwd = generator_forward_flops(digits.in_channels, digits.num_classes, n["ngf"], n["n_blocks"], h, w)
        spec = {"steps": steps, "warmup": warmup, "threads": args.threads, "cpu_kernels": args.cpu_kernels,
                "autocast_bf16": args.autocast_bf16}
        runs: dict[str, list[dict[str, Any]]] = {code: [] for code, _ in codes}
        for rep in range(args.repeat):  # alternate the codes, so drift in the machine's speed hits both
            for code, checkout in codes:
                print(f"[{i}/{len(cells)}] {code} {preset:>5} {method:<8} {device} {h}x{w}: {warmup} warm-up + "
                      f"{steps} steps × {args.concurrent}, repeat {rep + 1}/{args.repeat} …",
                      file=sys.stderr, flush=True)
                ident = {"code": code, "preset": preset, "method": method, "device": device, "size": f"{h}x{w}",
                         "copies": args.concurrent, "steps": steps}
                raws = run_cell(config_layers(args, preset, method, device), spec, args.concurrent,
                                code_env(checkout, shim / code))
                row = cell_row(ident, raws, peak, g_fwd)
                runs[code].append(row)
                if "error" in row:
                    print(f"    error: {row['error']}", file=sys.stderr)
                else:
                    print(f"    {row['step_ms']:.1f} ms/step, {row['img_s_total']:.2f} img/s, "
                          f"{row['gflop_step']:.2f} GFLOP/step, {row['tflops']:.3f} TFLOP/s", file=sys.stderr)
        results += [median_run(rows) for rows in runs.values()]

    out = io.StringIO()
    amp = sorted({"bf16 autocast" if r["amp_bf16"] else "fp32" for r in results if "amp_bf16" in r})
    layout = sorted({f"channels_last={r['channels_last']}" for r in results if "channels_last" in r})
    native = any(r.get("cpu_kernels") == "native" for r in results if r.get("device") == "cpu")
    print(f"Command: `.venv/bin/python {cmd.strip()}`", file=out)
    print(f"Date: {started:%Y-%m-%d %H:%M %Z}", file=out)
    gpu = next((r["gpu"] for r in results if r.get("gpu")), None)
    print(f"Machine: {machine_description(threads, gpu)}", file=out)
    print(f"Data: digits ({digits.in_channels}→{digits.num_classes} classes) at {h}×{w}, "
          f"batch_size per config (L = labeled, U = unlabeled images per step); "
          f"{', '.join(amp + layout)}; "
          f"{'native CPU convolutions (oneDNN off); ' if native else ''}"
          f"peak for '% peak': {f'{peak:g} TFLOP/s' if peak else 'not given (--peak-tflops)'}", file=out)
    if device == "cuda":
        print("Memory: peak = torch.cuda.max_memory_allocated from the built method on (parameters, resident "
              "train arrays, gradients, Adam state, activations); step = its rise over what was allocated before "
              "the first step (gradients, Adam state, activations).", file=out)
    else:
        print("Memory: peak = the worker process's peak RSS (ru_maxrss: Python, torch, data, parameters, "
              "activations, allocator caches); step = its rise over the RSS before the first step (gradients, "
              "Adam state, activations, allocator caches).", file=out)
    print("", file=out)
    print(format_table(results, args.markdown), file=out)
    print("", file=out)
    if args.baseline:
        print(f"Before = the checkout at {args.baseline} (git {git_head(args.baseline)}), after = this one "
              f"(git {git_head(Path(__file__).resolve().parents[1])}); each the median of {args.repeat} "
              f"alternating runs:\n\n{speedup_table(results)}\n", file=out)
    print(flop_model_text(args, presets, methods), file=out)
    fit = gpu_fit_text(results)
    if fit:
        print("\nGPU packing (memory):\n" + fit, file=out)
    sys.stdout.write(out.getvalue())

    if args.csv:
        keys = [c.key for c in COLUMNS] + sorted({k for r in results for k in r} - {c.key for c in COLUMNS})
        with open(args.csv, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=keys)
            wr.writeheader()
            wr.writerows(results)
    if args.with_ray_overhead:
        print(f"\n### Sweep overhead per trial (Ray)\n\n{ray_overhead(args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
