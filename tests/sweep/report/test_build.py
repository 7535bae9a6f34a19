"""The whole report: files, PNGs, excluded trials, searches, options and the CLI."""


import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from cycleseg.cli import main
from cycleseg.sweep.report import build_report
from tests.records import epoch_record
from tests.sweep.report.synthetic import write_trial


def test_failed_diverged_and_early_stopped_trials_are_listed_not_averaged(sweeps, tmp_path, capsys):
    out = tmp_path / "rep"
    build_report(list(sweeps), out, no_samples=True)
    excluded = pd.read_csv(out / "excluded_trials.csv")
    assert sorted(excluded["trial_id"]) == ["cyclegan_0.1_3", "cyclegan_0.2_4", "partial_0.2_3"]
    assert dict(zip(excluded["trial_id"], excluded["status"], strict=True)) == {
        "cyclegan_0.1_3": "diverged", "cyclegan_0.2_4": "early_stopped", "partial_0.2_3": "failed"}
    t1 = pd.read_csv(out / "table1.csv").set_index(["row", "labeled_fraction"])
    assert t1.loc[("cyclegan", 0.1), "excluded"] == 1 and t1.loc[("cyclegan", 0.1), "mean"] == pytest.approx(0.27)
    index = (out / "index.md").read_text()
    assert "diverged: 1" in index and "failed: 1" in index and "early_stopped: 1" in index
    assert "RuntimeError: injected crash in epoch 1" in index and "Traceback" not in index  # first line only
    printed = capsys.readouterr().out
    assert "excluded trials: " in printed


def test_report_writes_every_file_and_pngs_open(sweeps, tmp_path, capsys):
    out = tmp_path / "rep"
    index = build_report(list(sweeps), out, labeled_fraction=None)
    files = {p.name for p in out.iterdir()}
    expected = {
        "index.md", "table1.csv", "table1_gains.csv", "table2.csv", "class_iou_voc_10.csv", "excluded_trials.csv",
        "miou_vs_fraction_voc.png", "ablation_voc_20.png", "val_miou_voc.png", "curves_voc_partial.png",
        "curves_voc_cyclegan.png", "curves_voc_hung.png", "curves_voc_full.png", "curves_voc_no-label-cycle.png",
    }
    assert expected <= files and not any(f.startswith(".") for f in files)
    # figure size (inches) × 110 dpi
    with Image.open(out / "miou_vs_fraction_voc.png") as im:
        assert im.size == (704, 462)
    with Image.open(out / "ablation_voc_20.png") as im:
        assert im.size == (1100, 462)
    with Image.open(out / "curves_voc_cyclegan.png") as im:  # 11 panels (val_miou + 10 loss terms) in 4 columns
        assert im.size == (round(3.4 * 4 * 110), round(2.7 * 3 * 110))
    for png in out.glob("*.png"):
        with Image.open(png) as im:
            im.verify()
    md = index.read_text()
    for f in expected - {"index.md"}:
        assert f"({f})" in md, f
    assert "paired t intervals" in md and "t₀.₉₇₅,₂ = 4.303" in md and "bootstrap" in md
    # no checkpoints in a synthetic sweep: the report still works and says why the grid is missing
    assert "no checkpoint this machine can read" in md
    assert "1 trial(s) have epochs but no result yet" in md and "skipped unreadable" not in md
    printed = capsys.readouterr().out
    assert "Table 1 — voc" in printed and "cyclegan − partial" in printed
    assert "+0.0500 [+0.0252, +0.0748] (n=3)*" in printed  # the 10 % gain, flagged


def test_lambda_search_importance_and_parallel_coordinates(sweeps, tmp_path):
    d = tmp_path / "lambdas"
    l2 = [0.01, 0.1, 0.2, 0.4, 0.6, 0.8, 0.3, 0.5]
    l3 = [0.5, 2.0, 1.5, 0.7, 1.2, 0.9, 1.8, 0.6]
    for i, (a, b) in enumerate(zip(l2, l3, strict=True)):  # the metric depends on lambda_2 only
        write_trial(d, f"s{i}", method="cyclegan", fraction=0.2, seed=0, value=0.2 + 0.1 * a, lambda_2=a, lambda_3=b)
    out = tmp_path / "rep"
    build_report([*sweeps, d], out, no_samples=True)
    imp = pd.read_csv(out / "lambda_importance_lambdas_voc_cyclegan_20.csv").set_index("param")["importance"]
    assert set(imp.index) == {"lambda_2", "lambda_3"} and imp.sum() == pytest.approx(1.0)
    assert imp["lambda_2"] > imp["lambda_3"]
    top = pd.read_csv(out / "lambda_search_lambdas_voc_cyclegan_20.csv")
    # ranked on val (= test + 0.1 here), the reported test beside it
    assert top["val_miou"].iloc[0] == pytest.approx(0.38) and top["lambda_2"].iloc[0] == 0.8
    assert top["test_miou"].iloc[0] == pytest.approx(0.28)
    for png in ("lambda_importance_lambdas_voc_cyclegan_20.png", "lambda_parallel_lambdas_voc_cyclegan_20.png"):
        with Image.open(out / png) as im:
            assert im.size[0] > 400 and im.size[1] > 200
    # the searched settings stay out of Table 1: its cyclegan row is still the paper-default λ's 3 seeds
    t1 = pd.read_csv(out / "table1.csv").set_index(["row", "labeled_fraction"])
    assert t1.loc[("cyclegan", 0.2), "n"] == 3 and t1.loc[("cyclegan", 0.2), "mean"] == pytest.approx(0.29)
    assert "8 trials of searched settings are not in Table 1" in (out / "index.md").read_text()


def test_val_metric_and_fraction_choice(sweeps, tmp_path):
    out = tmp_path / "rep"
    build_report(list(sweeps), out, metric="val_miou", labeled_fraction=0.2, no_samples=True)
    t1 = pd.read_csv(out / "table1.csv").set_index(["row", "labeled_fraction"])
    assert t1.loc[("partial", 0.1), "mean"] == pytest.approx(0.32)  # val = test + 0.1 in these trials
    assert "val-split mIoU" in (out / "index.md").read_text()
    assert (out / "class_iou_voc_20.csv").is_file() and not (out / "class_iou_voc_10.csv").exists()


def test_cli_report_prints_table1_and_rejects_bad_input(sweeps, tmp_path):
    r = CliRunner().invoke(main, ["report", *map(str, sweeps), "-o", str(tmp_path / "r"), "--no-samples"])
    assert r.exit_code == 0, r.output
    assert "Table 1 — voc" in r.output and "report: " in r.output
    r = CliRunner().invoke(main, ["report", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "not a sweep folder" in r.output
    r = CliRunner().invoke(main, ["report", str(sweeps[0]), "-o", str(tmp_path / "r2"), "--labeled-fraction", "0.3"])
    assert r.exit_code == 2 and "--labeled-fraction 0.3 has no completed trials; present: 0.1, 0.2, 1" in r.output
    assert not (tmp_path / "r2").exists()  # checked before anything is written
    empty = tmp_path / "empty"
    (empty / "epochs").mkdir(parents=True)
    r = CliRunner().invoke(main, ["report", str(empty)])
    assert r.exit_code == 2 and "no finished trials yet" in r.output


def test_report_reads_what_the_sweep_writer_writes(tmp_path):
    """Files from sweep/results/parquet.py (the real writer, with its Arrow schema) go through unchanged."""
    from cycleseg.model.resolve import resolve_config
    from cycleseg.sweep.results import parquet as results

    d = tmp_path / "demo"
    versions = {"cycleseg_version": "0", "torch_version": "0", "ray_version": "0", "git_commit": None}
    for seed, (p, c) in enumerate([(0.20, 0.26), (0.22, 0.25), (0.24, 0.30)]):
        for method, v in (("partial", p), ("cyclegan", c)):
            cfg = resolve_config({"method": method, "labeled_fraction": 0.1, "seed": seed, "epochs": 2})
            hist = [epoch_record(e, 0.5 * e / 2, test_miou=v * e / 2) for e in (1, 2)]
            row = results.trial_row(sweep="demo", trial_id=f"{method}{seed}", cfg=cfg, variant=None, history=hist,
                                    error=None, wall_seconds=1.0, gpus=0.0, checkpoint_path=None, versions=versions)
            results.write_trial(d, row, hist)
    out = tmp_path / "rep"
    build_report([d], out, no_samples=True)
    gains = pd.read_csv(out / "table1_gains.csv")
    # d = 0.06, 0.03, 0.06 → mean 0.05; deviations 0.01, -0.02, 0.01 → sd √(0.0006/2) = 0.0173205
    assert gains.loc[0, "mean"] == pytest.approx(0.05) and gains.loc[0, "std"] == pytest.approx(0.0173205, abs=1e-6)
    assert (out / "curves_digits_cyclegan.png").is_file() and (out / "class_iou_digits_10.csv").is_file()


def test_no_importance_from_noise_or_from_a_handful_of_configurations(sweeps, tmp_path):
    noise, few = tmp_path / "noise", tmp_path / "few"
    for i, a in enumerate([0.01, 0.1, 0.2, 0.4, 0.6, 0.8, 0.3, 0.5]):  # λ2 does nothing: only the seed moves it
        for seed in (0, 1):
            write_trial(noise, f"n{i}s{seed}", method="cyclegan", fraction=0.2, seed=seed, value=0.2 + 0.01 * seed
                        + 0.001 * (i % 2), lambda_2=a)
    for i, a in enumerate([0.01, 0.1, 0.2, 0.4]):
        write_trial(few, f"f{i}", method="cyclegan", fraction=0.2, seed=0, value=0.2 + 0.1 * a, lambda_2=a)
    out = tmp_path / "rep"
    build_report([*sweeps, noise, few], out, no_samples=True)
    md = (out / "index.md").read_text()
    assert "differ no more than their seeds do (one-way ANOVA p = 1.00)" in md
    assert "4 configurations: too few for an importance analysis" in md
    assert not list(out.glob("lambda_importance_*"))


def test_a_search_over_named_levers_gets_its_importance_and_parallel_axes(tmp_path):
    d = tmp_path / "levers"
    inputs = ["softmax", "straight_through", "gumbel", "detached_argmax"] * 2
    noise = [0.0, 0.1, 0.2, 0.3, 0.05, 0.15, 0.25, 0.35]
    for i, (mode, sigma) in enumerate(zip(inputs, noise, strict=True)):  # the metric depends on d_s_input only
        value = 0.3 if mode == "straight_through" else 0.2
        write_trial(d, f"s{i}", method="cyclegan", fraction=0.2, seed=0, value=value, d_s_input=mode,
                    instance_noise=sigma)
    out = tmp_path / "rep"
    build_report([d], out, no_samples=True)
    imp = pd.read_csv(out / "lambda_importance_levers_voc_cyclegan_20.csv").set_index("param")["importance"]
    assert set(imp.index) == {"d_s_input", "instance_noise"} and imp["d_s_input"] > imp["instance_noise"]
    top = pd.read_csv(out / "lambda_search_levers_voc_cyclegan_20.csv")
    assert set(top["d_s_input"].iloc[:2]) == {"straight_through"}  # ranked on val
    with Image.open(out / "lambda_parallel_levers_voc_cyclegan_20.png") as im:
        assert im.size[0] > 400
