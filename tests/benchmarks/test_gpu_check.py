"""benchmarks/gpu_check.py --smoke: every section of the GPU check runs on CPU at tiny shapes, so the one command
a GPU loan gets has not rotted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_gpu_check_runs_every_section_in_smoke_mode(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "CYCLESEG_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "smoke.md"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "-o", str(out)],
                       env=env, capture_output=True, text=True, timeout=540, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text()
    titles = ("## 1. Train step", "## 2. tiny cyclegan step", "## 3. bf16", "## 4. Packed trials", "## 5. End to end")
    for title in titles:
        assert title in text, title
    assert "timed out" not in text and "exit 1" not in text, text
    assert "| tiny | cyclegan |" in text and "| tiny | partial |" in text  # the step table's rows
    assert "| S_gen |" in text and "0.00e+00" in text  # CPU: autocast is fp32, so no difference
    for n in (1, 2, 4):
        assert any(line.startswith(f"| {n} | 0 | 4 |") for line in text.splitlines()), (n, text)
    assert "device=cpu: PASS" in text
