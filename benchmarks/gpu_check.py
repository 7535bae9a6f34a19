"""One GPU check, ready to run when a GPU is lent for a few minutes: one command, one Markdown file.

    .venv/bin/python benchmarks/gpu_check.py -o gpu_check.md        # one CUDA GPU, about 8 minutes
    .venv/bin/python benchmarks/gpu_check.py --smoke -o smoke.md    # CPU, tiny shapes, about a minute (tested)

Sections, each from the product's own code paths:
1. the train step per preset × method at the paper's VOC shapes (200×200, batch 5): step time, images/s, % of
   the bf16 peak, peak memory (``bench.py``);
2. the paper cyclegan step with ``channels_last`` off, with merged passes off (``merge_passes``: on by default
   on CUDA) and with ``compile`` on (``bench.py --set``);
3. bf16 against fp32: the loss terms of one generator-phase forward on the same batch and weights;
4. packing: 4 one-epoch trials in a real embedded-Ray sweep at ``--gpus-per-worker`` 1, 0.5 and 0.25, with the
   images/s of the whole sweep;
5. end to end: a 2-epoch digits sweep (partial and cyclegan) on the device, its Parquet read back.

Each section runs under its own time limit and the file says which did not finish. ``--smoke`` runs the same
sections on CPU at tiny shapes (bf16 is CPU fp32, so section 3 shows zero differences there), so the script
cannot rot between GPU loans.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

PACK_SPACE = """description: gpu_check packing ({n} trial(s) per device)
base: {{dataset: digits, preset: {preset}, image_height: {h}, image_width: {w}, digits_train: {train},
       digits_val: 20, digits_test: 20, epochs: 1, batch_size: 5, method: cyclegan, labeled_fraction: 0.2,
       device: {device}}}
seeds: [0, 1, 2, 3]
"""
E2E_SPACE = """description: gpu_check end to end
base: {{dataset: digits, preset: tiny, image_height: 32, image_width: 32, digits_train: {train}, digits_val: 40,
       digits_test: 40, epochs: 2, batch_size: 10, device: {device}}}
grid: {{method: [partial, cyclegan]}}
seeds: [0]
"""

AMP_SNIPPET = """
import json, sys, torch
from cycleseg.model.data import dataset_info, normalize_images
from cycleseg.model.device import resolve_device
from cycleseg.model.methods import Batch, create_method
from cycleseg.model.resolve import resolve_config
device, preset, h, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = {}
for amp in (False, True):
    cfg = resolve_config({"dataset": "digits", "preset": preset, "image_height": h, "image_width": w,
                          "batch_size": 5, "device": device, "amp": amp})
    info = dataset_info(cfg)
    torch.manual_seed(0)
    m = create_method(cfg, info, resolve_device(device), total_iters=1)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (5, info.in_channels, h, w), generator=g, dtype=torch.uint8)
    y = torch.randint(0, info.num_classes, (5, h, w), generator=g)
    xu = torch.randint(0, 256, (5, info.in_channels, h, w), generator=g, dtype=torch.uint8)
    batch = Batch(x=normalize_images(x.to(m.device)), y=y.to(m.device), x_u=normalize_images(xu.to(m.device)))
    terms, _ = m.generator_losses(batch)
    out["bf16" if amp else "fp32"] = {k: float(v) for k, v in terms.items()}
print(json.dumps(out))
"""


def run(cmd: list[str], limit: float, cwd: Path | None = None) -> tuple[int | None, str, float]:
    """(exit code or None on timeout, stdout + stderr, seconds)."""
    start = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=cwd)
        return r.returncode, r.stdout + r.stderr, time.perf_counter() - start
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, out, time.perf_counter() - start


def fenced(cmd: list[str], code: int | None, out: str, seconds: float, keep: int = 60) -> str:
    """A section's command, its outcome and the tail of its output."""
    status = "timed out" if code is None else f"exit {code}"
    tail = "\n".join(out.strip().splitlines()[-keep:])
    return f"`{shlex.join(cmd)}` ({status}, {seconds:.0f} s)\n\n```\n{tail}\n```\n"


def bench_table(args: argparse.Namespace, extra: list[str], limit: float) -> str:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--device", args.device, "--size", args.size,
           "--markdown", *extra]
    code, out, s = run(cmd, limit)
    # bench.py prints its progress lines, then the Markdown (Command/Date/Machine and the table)
    md = out[out.index("Command:"):] if code == 0 and "Command:" in out else None
    return f"`{shlex.join(cmd)}` ({s:.0f} s)\n\n{md}\n" if md else fenced(cmd, code, out, s)


def amp_section(args: argparse.Namespace, limit: float) -> str:
    cmd = [sys.executable, "-c", AMP_SNIPPET, args.device, args.amp_preset, *args.size.split("x")]
    code, out, s = run(cmd, limit)
    if code != 0:
        return fenced(["python", "-c", "AMP_SNIPPET", *cmd[3:]], code, out, s, keep=15)
    terms = json.loads(next(ln for ln in reversed(out.splitlines()) if ln.startswith("{")))  # stderr may follow
    lines = ["| term | fp32 | bf16 autocast | relative difference |", "|---|---:|---:|---:|"]
    for k, v in terms["fp32"].items():
        b = terms["bf16"][k]
        lines.append(f"| {k} | {v:.6g} | {b:.6g} | {abs(b - v) / max(abs(v), 1e-12):.2e} |")
    return (f"{args.amp_preset} preset, {args.size}, batch 5+5, one generator-phase forward on the same batch "
            f"and weights ({s:.0f} s):\n\n" + "\n".join(lines) + "\n")


def sweep(space_text: str, name: str, extra: list[str], limit: float, work: Path) -> tuple[str, float, Path]:
    """Run ``cycleseg sweep`` on ``space_text``; (section text, wall seconds, sweep folder)."""
    space = work / f"{name}.yaml"
    space.write_text(space_text)
    cmd = [str(BIN / "cycleseg"), "sweep", str(space), "--storage", str(work / "runs"), "--name", name, *extra]
    code, out, s = run(cmd, limit, cwd=work)
    text = "" if code == 0 else fenced(cmd, code, out, s, keep=15)
    return text, s, work / "runs" / name


def packing_section(args: argparse.Namespace, limit: float, work: Path) -> str:
    import pandas as pd

    h, w = args.pack_size.split("x")
    rows = ["| trials per device | --gpus-per-worker | trials | sweep wall s | images/s of the sweep | "
            "mean trial wall s |", "|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for n in (1, 2, 4):
        gpus = f"{1 / n:g}" if args.device == "cuda" else "0"
        extra = ["--gpus-per-worker", gpus, "--max-concurrent", str(n)]
        text, s, folder = sweep(PACK_SPACE.format(n=n, preset=args.pack_preset, h=h, w=w, train=args.pack_train,
                                                  device=args.device), f"pack{n}", extra, limit, work)
        if text:
            notes.append(text)
            continue
        t = pd.read_parquet(folder / "trials")
        images = int((t["labeled_images_seen"] + t["unlabeled_images_seen"]).sum())
        rows.append(f"| {n} | {gpus} | {len(t)} | {s:.0f} | {images / s:.1f} | {t['wall_seconds'].mean():.1f} |")
    return (f"cyclegan, {args.pack_preset} preset at {args.pack_size}, 4 one-epoch trials of "
            f"{args.pack_train} digits scenes each (20 % labeled); the sweep's wall includes starting Ray and "
            "decoding the data once.\n\n" + "\n".join(rows) + "\n" + "".join(notes))


def e2e_section(args: argparse.Namespace, limit: float, work: Path) -> str:
    import pandas as pd

    text, s, folder = sweep(E2E_SPACE.format(train=args.e2e_train, device=args.device), "e2e", [], limit, work)
    if text:
        return text
    t = pd.read_parquet(folder / "trials").sort_values("method")
    lines = ["| method | status | epochs | val mIoU | test mIoU | steps | wall s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in t.itertuples():
        lines.append(f"| {r.method} | {r.status} | {r.epochs_run} | {r.val_miou:.4f} | {r.test_miou:.4f} | "
                     f"{r.steps} | {r.wall_seconds:.1f} |")
    ok = set(t["status"]) == {"completed"} and len(t) == 2
    return (f"2 epochs, tiny preset, digits 32×32, device={args.device}: {'PASS' if ok else 'FAIL'} "
            f"({s:.0f} s)\n\n" + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, about a minute (what the tests run)")
    p.add_argument("-o", "--output", default="gpu_check.md")
    args = p.parse_args(argv)
    if args.smoke:
        args.device, args.size, args.amp_preset = "cpu", "32x32", "tiny"
        args.presets, args.methods, args.steps = "tiny", "partial,cyclegan", ["--steps", "2", "--warmup", "1"]
        args.variant_preset, args.pack_preset, args.pack_size, args.pack_train, args.e2e_train = (
            "tiny", "tiny", "32x32", 40, 60)
        limits = {"steps": 120, "variants": 120, "amp": 60, "pack": 120, "e2e": 120}
    else:
        import torch

        if not torch.cuda.is_available():
            print("error: torch sees no GPU; run this on a GPU machine, or --smoke here", file=sys.stderr)
            return 2
        args.device, args.size, args.amp_preset = "cuda", "200x200", "paper"
        args.presets, args.methods, args.steps = "tiny,small,paper", "partial,full,hung,cyclegan", []
        args.variant_preset, args.pack_preset, args.pack_size, args.pack_train, args.e2e_train = (
            "paper", "small", "128x128", 400, 2000)
        limits = {"steps": 150, "variants": 60, "amp": 60, "pack": 60, "e2e": 90}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        parts = [f"# cycleseg GPU check{' (smoke, CPU)' if args.smoke else ''}\n",
                 f"`{shlex.join(['python', 'benchmarks/gpu_check.py', *(['--smoke'] if args.smoke else [])])}`, "
                 f"{time.strftime('%Y-%m-%d %H:%M %Z')}\n"]
        # variants of the device's defaults; on CPU (--smoke) merged passes are already off
        variants = ("channels_last=false", *(() if args.smoke else ("merge_passes=false",)), "compile=true")
        sections = [
            ("1. Train step per preset × method", lambda: bench_table(
                args, ["--presets", args.presets, "--methods", args.methods, *args.steps], limits["steps"])),
            (f"2. {args.variant_preset} cyclegan step: channels_last off, merged passes off, compile on",
             lambda: "\n".join(
                bench_table(args, ["--presets", args.variant_preset, "--methods", "cyclegan", *args.steps, "--set", s],
                            limits["variants"])
                for s in variants)),
            ("3. bf16 autocast against fp32, same batch", lambda: amp_section(args, limits["amp"])),
            ("4. Packed trials in a real sweep", lambda: packing_section(args, limits["pack"], work)),
            ("5. End to end: a 2-epoch digits sweep", lambda: e2e_section(args, limits["e2e"], work)),
        ]
        for title, make in sections:
            print(f"gpu_check: {title} ...", file=sys.stderr, flush=True)
            parts.append(f"\n## {title}\n\n{make()}")
        parts.append(f"\nTotal: {time.time() - started:.0f} s\n")
    Path(args.output).write_text("".join(parts))
    print(f"gpu_check: wrote {args.output} ({time.time() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
