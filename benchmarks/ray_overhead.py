"""The sweep's fixed cost per trial: ``cycleseg sweep`` on 1-epoch tiny trials, each trial's wall time split
around its epochs (``python benchmarks/bench.py --ray-overhead``; results in BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RAY_SPACE = """description: benchmarks/bench.py --ray-overhead (1-epoch tiny trials)
base: {{dataset: digits, preset: tiny, method: cyclegan, epochs: 1, digits_train: 40, digits_val: 20,
       digits_test: 20}}
seeds: {seeds}
"""


def split_trial_time(wall: float, epoch_seconds: float, t_done: float, t_ckpt: float) -> dict[str, float]:
    """One trial's wall time split around its training epochs (all times in seconds, clock times as epochs).

    ``t_done``: the trial's Parquet row written; ``t_ckpt``: its last checkpoint stored (end of the last
    epoch plus the save); the trial started at ``t_done - wall`` (the results callback's clock).
    """
    t_start = t_done - wall
    return {
        "wall": wall,
        "epochs": epoch_seconds,
        "start_to_first_step": t_ckpt - epoch_seconds - t_start,
        "last_epoch_to_result": t_done - t_ckpt,
        "overhead": wall - epoch_seconds,
    }


def ray_overhead(args: argparse.Namespace) -> str:
    """Run ``cycleseg sweep`` on 1-epoch tiny trials and split each trial's wall time (Markdown).

    Per trial: ``wall_seconds`` from trials/*.parquet (the results callback's trial start, i.e. its process is
    up, → finish) vs
    the trainer's own ``epoch_seconds`` (train + validation) from epochs/*.parquet; the split uses the
    mtimes of the trial's last stored checkpoint (its ``checkpoint_path``) and of its trials/ Parquet file.
    For scale, the same config once through ``run_trial`` in this process, without Ray.
    """
    import pyarrow.parquet as pq

    from cycleseg.model.data import prepare_dataset
    from cycleseg.model.resolve import resolve_config
    from cycleseg.model.trainer import run_trial

    n, k = args.ray_trials, args.ray_concurrent
    cli = Path(sys.executable).with_name("cycleseg")
    with tempfile.TemporaryDirectory(prefix="cycleseg-ray-bench-") as tmp:
        root = Path(tmp)
        space = root / "ray_overhead.yaml"
        space.write_text(RAY_SPACE.format(seeds=list(range(n))))
        cmd = [str(cli), "sweep", str(space), "--name", "overhead", "--storage", str(root / "runs"),
               "--max-concurrent", str(k)]
        print(f"[ray] {n} trials, {k} at once: {shlex.join(cmd)}", file=sys.stderr, flush=True)
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines, t_tune = [], None
        for line in proc.stdout:  # the console's lines, timed as they come
            lines.append(line)
            if t_tune is None and line.startswith("sweep 'overhead': "):  # data shared, the Tuner starts
                t_tune = time.time()
        returncode = proc.wait()
        t_end = time.time()
        if returncode != 0 or t_tune is None:
            tail = "".join(lines[-15:]).strip()
            return f"Ray overhead: the sweep failed (exit {returncode}):\n```\n{tail}\n```"
        sweep_dir = root / "runs" / "overhead"
        rows = []
        for f in sorted((sweep_dir / "trials").glob("*.parquet")):
            trial = pq.read_table(f).to_pylist()[0]
            epochs = pq.read_table(sweep_dir / "epochs" / f.name).to_pylist()
            ckpts = list(Path(trial["checkpoint_path"] or root / "none").rglob("state.pt"))
            if not ckpts:
                return f"Ray overhead: no stored checkpoint for trial {trial['trial_id']} ({trial['checkpoint_path']})"
            t_ckpt = max(c.stat().st_mtime for c in ckpts)
            split = split_trial_time(trial["wall_seconds"], sum(e["epoch_seconds"] for e in epochs),
                                     f.stat().st_mtime, t_ckpt)
            rows.append({"trial": trial["trial_id"], "status": trial["status"],
                         "t_start": f.stat().st_mtime - trial["wall_seconds"], **split})
        if len(rows) != n:
            return f"Ray overhead: expected {n} trial files, found {len(rows)} in {sweep_dir / 'trials'}"

        cfg = resolve_config({"dataset": "digits", "preset": "tiny", "method": "cyclegan", "epochs": 1,
                              "digits_train": 40, "digits_val": 20, "digits_test": 20, "device": "cpu"})
        data = prepare_dataset(cfg)
        torch.set_num_threads(args.threads or 1)  # as the sweep's 1-CPU worker (Ray sets OMP_NUM_THREADS)
        t = time.perf_counter()
        history = run_trial(cfg, workdir=root / "plain", data=data)
        plain_wall = time.perf_counter() - t
        plain_epoch = history[0]["epoch_seconds"]

    keys = ("wall", "epochs", "start_to_first_step", "last_epoch_to_result", "overhead")
    lines = [
        f"Sweep overhead per trial: {n} one-epoch trials (tiny cyclegan, digits 40 train / 20 val / 20 test, 64×64), "
        f"{k} at once, default resources (1 worker × 1 CPU), `cycleseg sweep <space> --max-concurrent {k}`",
        "",
        "| trial | status | wall s | epoch s (train+val) | start → epoch 1 start s | checkpoint stored → "
        "result written s | overhead s (wall − epoch) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["t_start"]):
        lines.append(f"| {r['trial']} | {r['status']} | " + " | ".join(f"{r[c]:.2f}" for c in keys) + " |")
    mean = {c: statistics.mean(r[c] for r in rows) for c in keys}
    lines.append("| mean | | " + " | ".join(f"{mean[c]:.2f}" for c in keys) + " |")
    first = min(r["t_start"] for r in rows)
    last = max(r["t_start"] + r["wall"] for r in rows)
    # a trial's wall starts when its process is up; the slots' time also counts starting the processes
    slot = (k * (last - t_tune) - sum(r["epochs"] for r in rows)) / n
    lines += [
        "",
        f"Per trial, process start-ups included: {slot:.2f} s = ({k} slots × {last - t_tune:.1f} s from the Tuner's "
        f"start to the last trial's result − {sum(r['epochs'] for r in rows):.1f} s of epochs) / {n} trials.",
        f"Whole `cycleseg sweep` command: {t_end - t0:.1f} s; from launch to the Tuner's start {t_tune - t0:.1f} s "
        f"(Python + Ray start, checks, data put); to the first trial's start {first - t0:.1f} s (its process "
        f"started, torch imported); after the last trial's result {t_end - last:.1f} s (summary, Ray shutdown).",
        f"The same trial through `run_trial` in this process ({torch.get_num_threads()} thread), no Ray: "
        f"{plain_wall:.2f} s wall, of which {plain_epoch:.2f} s epoch (build + checkpoint: "
        f"{plain_wall - plain_epoch:.2f} s).",
    ]
    return "\n".join(lines)
