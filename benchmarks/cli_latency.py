"""Wall time of the quick questions a user asks the CLI, each in a fresh process (what a shell user waits for).

Prints a Markdown table: command | median s | min s | max s over ``--repeat`` runs. Nothing asserts on it; the
figures and their command go into BENCHMARKS.md. Run it on an idle machine:

    .venv/bin/python benchmarks/cli_latency.py --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = [
    ["--help"],
    ["sweep", "--list"],
    ["sweep", "--help"],
    ["sweep", "demo", "--dry-run"],  # times a few steps of each network shape here
    ["sweep", "demo", "--dry-run", "--assume-tflops", "1"],  # the same without timing steps
    ["sweep", "demo", "--dry-run", "--storage", "ftp://x/y"],  # refused before anything else
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    exe = str(Path(sys.executable).parent / "cycleseg")
    rows = []
    with tempfile.TemporaryDirectory() as cwd:  # no runs/ of this checkout in the way
        for cmd in COMMANDS:
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                subprocess.run([exe, *cmd], cwd=cwd, capture_output=True, check=False)
                times.append(time.perf_counter() - start)
            rows.append((" ".join(["cycleseg", *cmd]), statistics.median(times), min(times), max(times)))
    print("| command | median s | min s | max s |\n|---|---:|---:|---:|")
    for name, med, lo, hi in rows:
        print(f"| `{name}` | {med:.2f} | {lo:.2f} | {hi:.2f} |")


if __name__ == "__main__":
    main()
