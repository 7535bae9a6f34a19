"""benchmarks/bench.py: the derived columns, the table, the split of a trial's wall time, and that a worker runs the
step with the kernels and precision it was asked for."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench import (
    H100_BF16_DENSE_TFLOPS,
    WORKER,
    code_env,
    config_layers,
    derive,
    format_table,
    main,
    parse_size,
)
from benchmarks.ray_overhead import split_trial_time


def test_parse_size():
    assert parse_size("200x200") == (200, 200)
    assert parse_size("128x256") == (128, 256)
    for bad in ("64", "64x62", "4x4", "axb"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


def test_derive_columns_by_hand():
    raw = {"steps": 4, "seconds": 2.0, "labeled_per_step": 5, "unlabeled_per_step": 5, "flops_step": 10**12,
           "median_step_ms": 480.0}
    d = derive(raw, H100_BF16_DENSE_TFLOPS, g_fwd_flops=10**11)
    assert d["step_ms"] == 500.0
    assert d["img_s_labeled"] == d["img_s_unlabeled"] == 10.0
    assert d["img_s_total"] == 20.0
    assert d["gflop_step"] == 1000.0
    assert d["g_fwd_equiv"] == 2.0  # 1 TFLOP / (0.1 TFLOP × 5 labeled images)
    assert d["tflops"] == 2.0  # 4 steps × 1 TFLOP / 2 s
    assert d["pct_peak"] == pytest.approx(100 * 2 / 989)
    assert derive(raw, None, 10**11)["pct_peak"] is None


def test_markdown_table_has_one_cell_per_column():
    raw = {"preset": "tiny", "method": "partial", "steps": 2, "seconds": 1.0, "labeled_per_step": 5,
           "unlabeled_per_step": 0, "flops_step": 10**9, "mem_peak": 3 * 2**30, "median_step_ms": None}
    text = format_table([derive(raw, None, 10**8), {"preset": "paper", "method": "hung", "error": "OOM"}], True)
    lines = text.splitlines()
    assert len(lines) == 4
    assert len({ln.count("|") for ln in lines}) == 1
    assert "3.00 GiB" in lines[2] and "error: OOM" in lines[3]


def test_split_trial_time_parts_add_up_to_the_wall_time():
    # started at 970 (= 1000 - 30), epoch of 5 s ended with the checkpoint at 996, row written at 1000
    split = split_trial_time(wall=30.0, epoch_seconds=5.0, t_done=1000.0, t_ckpt=996.0)
    assert split == {"wall": 30.0, "epochs": 5.0, "start_to_first_step": 21.0, "last_epoch_to_result": 4.0,
                     "overhead": 25.0}


ROOT = Path(__file__).resolve().parents[2]


def test_the_measuring_process_imports_only_the_baselines_model(tmp_path):
    """``--baseline`` times another checkout's code: the measuring process must take ``cycleseg.model`` from it and
    import nothing else of cycleseg, or an older checkout would run with today's other modules (``cycleseg`` is a
    namespace package, so a module the checkout lacks would silently come from this install)."""
    before = tmp_path / "before"
    shutil.copytree(ROOT / "model", before / "model", ignore=shutil.ignore_patterns("__pycache__"))
    layers = config_layers(argparse.Namespace(size=(16, 16), cache_dir=str(tmp_path / "cache"), set=[]),
                           "tiny", "partial", "cpu")
    payload = json.dumps({"layers": layers, "spec": {"steps": 1, "warmup": 1, "threads": 1}})
    probe = ("import json, runpy, sys; sys.argv = ['step_worker.py', sys.argv[1]]; "
             f"runpy.run_path({str(WORKER)!r}, run_name='__main__'); import cycleseg.model as m; "
             "print(json.dumps({'model': m.__path__[0], 'cycleseg': sorted(k for k in sys.modules "
             "if k.startswith('cycleseg'))}))")
    run = subprocess.run([sys.executable, "-c", probe, payload], capture_output=True, text=True,
                         env=code_env(before, tmp_path / "shim"), check=True)
    *_, result, seen = run.stdout.strip().splitlines()
    assert json.loads(result)["flops_step"] > 0  # it measured a step
    seen = json.loads(seen)
    assert Path(seen["model"]).resolve() == (before / "model").resolve()
    assert [k for k in seen["cycleseg"] if k != "cycleseg" and not k.startswith("cycleseg.model")] == []


def test_a_worker_times_an_older_checkout_with_the_kernels_and_precision_asked_for(tmp_path, capsys):
    """Both codes' rows and the before/after table come back; the header says what the workers ran (G_IS's output
    dtype, oneDNN's state), not what the flags asked."""
    before = tmp_path / "before"
    before.mkdir()
    (before / "model").symlink_to(ROOT / "model", target_is_directory=True)
    assert main(["--device", "cpu", "--presets", "tiny", "--methods", "partial", "--size", "16x16", "--steps", "1",
                 "--threads", "1", "--markdown", "--cache-dir", str(tmp_path / "cache"), "--baseline", str(before),
                 "--cpu-kernels", "native", "--autocast-bf16"]) == 0
    out = capsys.readouterr().out
    assert "error" not in out
    assert "| before | tiny | partial |" in out and "| after | tiny | partial |" in out
    assert "| tiny | partial |" in out.split("Before = ")[1]  # the before/after table has the row
    assert "bf16 autocast" in out and "fp32" not in out
    assert "native CPU convolutions (oneDNN off)" in out
