"""``--dry-run``: the expanded trials as a table and the compute they need; nothing runs."""

import pytest
from click.testing import CliRunner

from cycleseg.cli import main
from cycleseg.model.flops import generator_forward_flops
from tests.sweep.test_space import TINY_BASE, write


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))


def _sweep(*args):
    return CliRunner().invoke(main, ["sweep", *map(str, args)], catch_exceptions=False)


def test_dry_run_counts_and_runs_nothing(tmp_path):
    r = _sweep("table1", "--set", "dataset=acdc", "--dry-run", "--storage", tmp_path)
    assert r.exit_code == 0, r.output
    assert "39 trials (3 seed(s) × 13 configurations" in r.output
    assert "G_IS forward" in r.output and "GFLOP per image" in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip().split(" ")[0].isdigit()]) == 39
    assert list(tmp_path.iterdir()) == []  # nothing written, Ray never started
    r = _sweep("lambdas", "--dry-run")
    assert r.exit_code == 0 and "80 trials = 4 grid cell(s) × 20 tpe samples" in r.output


def test_dry_run_compute_is_flops_times_images_times_epochs(tmp_path):
    p = write(tmp_path, TINY_BASE + "grid:\n  method: [partial, cyclegan]\n")
    r = _sweep(p, "--dry-run")
    assert r.exit_code == 0, r.output
    flops = generator_forward_flops(3, 11, 8, 2, 32, 32)  # tiny preset, digits 3→11 classes at 32×32
    expected = 2 * flops * 24 * 2 / 1e12  # 2 trials × 24 images × 2 epochs
    assert f"{expected:.3g} TFLOP" in r.output and "4 trial-epochs" in r.output
