"""``--dry-run``: the expanded trials as a table and the compute they need; nothing runs."""

import pytest
import yaml
from click.testing import CliRunner

from cycleseg.cli import main
from cycleseg.model.flops import step_flops
from cycleseg.model.resolve import resolve_config
from tests.sweep.planning.test_space import TINY_BASE, write


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))


def _sweep(*args):
    return CliRunner().invoke(main, ["sweep", *map(str, args)], catch_exceptions=False)


def test_dry_run_counts_and_runs_nothing(tmp_path):
    r = _sweep("table1", "--set", "dataset=acdc", "--dry-run", "--storage", tmp_path)
    assert r.exit_code == 0, r.output
    assert "75 trials (3 seed(s) × 25 configurations" in r.output  # the paper's 13 and 3 cyclegan variants' 12
    assert "per optimizer step: cyclegan " in r.output and "unknown until their on-disk dataset" in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip().split(" ")[0].isdigit()]) == 75
    assert list(tmp_path.iterdir()) == []  # nothing written, Ray never started
    r = _sweep("lambdas", "--dry-run")
    assert r.exit_code == 0 and "80 trials = 4 grid cell(s) × 20 tpe samples" in r.output


def test_dry_run_budget_is_steps_and_compute_is_step_flops_times_steps(tmp_path):
    p = write(tmp_path, TINY_BASE + "grid:\n  method: [partial, cyclegan]\n")
    r = _sweep(p, "--dry-run")
    assert r.exit_code == 0, r.output
    # 24 scenes at 20 %: 5 labeled, 19 unlabeled → ceil(19 / 5) = 4 steps per epoch × 2 epochs, for both methods
    rows = [ln.split() for ln in r.output.splitlines() if ln.strip()[:1].isdigit()]
    assert [(row[-4], row[-2]) for row in rows] == [("cyclegan", "8"), ("partial", "8")]  # costliest first
    cfg = {**yaml.safe_load(TINY_BASE)["base"], "device": "cpu"}
    flops = sum(step_flops(resolve_config({**cfg, "method": m})) for m in ("partial", "cyclegan"))
    assert "16 optimizer steps in all" in r.output and f"compute: {flops * 8 / 1e9:.3g} GFLOP" in r.output


def test_dry_run_guidance_names_what_sweep_takes_and_the_measured_overhead(tmp_path):
    r = _sweep("table1", "--dry-run", "--storage", tmp_path)
    assert r.exit_code == 0, r.output
    assert "--set data_root=/path/to/voc" in r.output  # sweep has no --data-root
    assert "15 s" not in r.output and "0.3–0.6 s of Ray overhead per trial" in r.output
    help_text = " ".join(CliRunner().invoke(main, ["sweep", "--help"]).output.split())
    assert "each trained by Ray Train" not in help_text and "--workers-per-trial N > 1" in help_text
    assert "CPUs per worker" in help_text


def test_a_dry_run_checks_the_address_syntax_and_says_it_did_not_contact_it(tmp_path):
    r = _sweep("demo", "--dry-run", "--storage", tmp_path, "--address", "10.0.0.5:6379")
    assert r.exit_code == 0, r.output
    assert "a dry run does not contact --address 10.0.0.5:6379" in r.output
