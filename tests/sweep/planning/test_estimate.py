"""The dry run's hours: step times per network shape (timed here, or FLOPs at an assumed rate), spread over the
trials that run at once; for sweeps too big to time here, GPU-hours at the assumed H100 rate."""

import re

import pytest
import yaml
from click.testing import CliRunner

from cycleseg.cli import main
from cycleseg.model.data import planned_train_size
from cycleseg.model.data.splits import hold_out_count
from cycleseg.model.flops import step_flops, trial_flops
from cycleseg.model.resolve import resolve_config
from cycleseg.sweep.planning import estimate
from cycleseg.sweep.planning.space import load_space
from tests.sweep.planning.test_space import TINY_BASE, write

SECONDS = {"cyclegan": 0.2, "partial": 0.05}  # a step's time, as if measured


@pytest.fixture(autouse=True)
def _here(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # this machine: 2 CPUs, so 2 one-CPU trials at once
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(estimate, "measure_step_seconds", lambda cfg, device, threads=1: SECONDS[cfg.method])


def _dry(*args):
    r = CliRunner().invoke(main, ["sweep", *map(str, args), "--dry-run"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def test_a_small_sweep_is_timed_here_and_spread_over_the_trials_at_once(tmp_path):
    p = write(tmp_path, TINY_BASE + "grid:\n  method: [partial, cyclegan]\nseeds: [0, 1, 2]\n")
    out = _dry(p)
    # 24 scenes at 20 %: 4 steps per epoch × 2 epochs = 8 steps per trial; 3 seeds of each method, 2 at once:
    # (3 × 8 × 0.2 + 3 × 8 × 0.05) / 2 = 3.0 s = 0.05 min; 6.0 CPU-worker-seconds
    assert "cyclegan step (tiny preset, 32x32, batch 5): 200.0 ms (measured here (cpu, 1 thread(s)" in out
    assert "expected: about 0.1 min wall with 2 trial(s) at once (this machine (2 CPUs, 0 GPUs) fits 2" in out
    assert "0.0 CPU-worker-hours" in out and "on H100s" not in out


def test_an_assumed_rate_replaces_timing_here(tmp_path):
    p = write(tmp_path, TINY_BASE + "grid:\n  method: [cyclegan]\n  epochs: [3000]\n")
    out = _dry(p, "--assume-tflops", "0.001", "--max-concurrent", "1")
    cfg = resolve_config({**yaml.safe_load(TINY_BASE)["base"], "method": "cyclegan", "epochs": 3000})
    steps, flops = trial_flops(cfg)
    seconds = flops / 1e9  # 0.001 TFLOP/s
    assert "at 0.001 TFLOP/s" in out and steps == 4 * 3000
    assert f"expected: about {seconds / 3600:,.1f} h wall with 1 trial(s) at once" in out


def test_table1_on_voc_plans_with_the_standard_train_list_and_prints_h100_gpu_hours():
    out = _dry("table1")
    assert planned_train_size(resolve_config({"dataset": "voc"})) == 10_582 - hold_out_count(10_582, 0.1) == 9_524
    assert "voc 9,524 train images" in out and "not timed: one step on this CPU would take about" in out
    specs = load_space("table1").expand({})
    total = sum(trial_flops(s.cfg, planned=True)[1] for s in specs)
    hours = total / (estimate.H100_ASSUMED_TFLOPS * 1e12) / 3600
    m = re.search(r"on H100s: about ([\d,.]+) GPU-hours, assuming 297 TFLOP/s sustained", out)
    assert m and float(m.group(1).replace(",", "")) == pytest.approx(hours, abs=0.05), out[-800:]
    assert max(step_flops(s.cfg) for s in specs) > 1e12  # TFLOPs per step: far too slow to time on a CPU


def test_a_rate_that_is_not_a_positive_number_is_refused(tmp_path):
    r = CliRunner().invoke(main, ["sweep", "demo", "--dry-run", "--assume-tflops", "-3"])
    assert r.exit_code == 2 and "--assume-tflops must be a number > 0" in r.output
