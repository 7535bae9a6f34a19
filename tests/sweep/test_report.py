"""`cycleseg report` on synthetic sweeps written with the Results schema (docs/ARCHITECTURE.md).

Every number checked here is computed by hand in the comments (std with ddof=1, t_{0.975,2} = 4.302653).
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from cli import main
from model.config import TrialConfig
from sweep import report

T975_DF2 = 4.302653
VOC_NAMES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
LOSSES = {
    "partial": ["S_gen", "G_total"], "full": ["S_gen", "G_total"],
    "hung": ["S_gen", "adv_G", "semi_adv_G", "semi_G", "G_total", "D_total"],
    "cyclegan": ["S_gen", "I_gen", "S_cycle", "I_cycle", "S_adv_G", "I_adv_G", "G_total", "S_adv_D", "I_adv_D",
                 "D_total"],
}


def write_trial(sweep_dir: Path, trial_id: str, *, method: str, fraction: float, seed: int, value: float,
                status: str = "completed", variant: str | None = None, class_iou: list | None = None,
                class_names: list | None = None, checkpoint_path: str | None = None, error: str | None = None,
                epochs: int = 2, **cfg_fields) -> None:
    """One trials/<id>.parquet row and its epochs/<id>.parquet rows, as sweep/results.py writes them."""
    cfg = TrialConfig(dataset=cfg_fields.pop("dataset", "voc"), method=method, labeled_fraction=fraction, seed=seed,
                      epochs=epochs, preset="tiny", ngf=8, ndf=8, n_blocks=2, **cfg_fields)
    names = class_names or VOC_NAMES
    iou = class_iou if class_iou is not None else [value] * len(names)
    row = {
        "sweep": sweep_dir.name, "trial_id": trial_id, "config_hash": cfg.hash(),
        "group_hash": cfg.hash(exclude=("seed",)), "variant": variant, "status": status, **cfg.to_dict(),
        "config_json": json.dumps(cfg.to_dict()), "best_val_miou": value,
        "final_val_miou": value - 0.01 if value is not None else None, "best_epoch": epochs,
        "best_class_iou": iou, "final_class_iou": iou, "final_pixel_acc": 0.9, "class_names": names,
        "epochs_run": epochs, "wall_seconds": 1.0, "gpu_seconds": 0.0, "checkpoint_path": checkpoint_path,
        "error": error, "cycleseg_version": "0.1.0", "torch_version": "2.13.0", "ray_version": "2.60.0",
        "git_commit": "abc",
    }
    (sweep_dir / "trials").mkdir(parents=True, exist_ok=True)
    (sweep_dir / "epochs").mkdir(parents=True, exist_ok=True)
    pd.DataFrame([row]).to_parquet(sweep_dir / "trials" / f"{trial_id}.parquet", index=False)
    write_epochs(sweep_dir, trial_id, method, cfg.hash(), value if value is not None else 0.1, epochs)


def write_epochs(sweep_dir: Path, trial_id: str, method: str, config_hash: str, value: float, epochs: int) -> None:
    rows = [
        {"sweep": sweep_dir.name, "trial_id": trial_id, "config_hash": config_hash, "epoch": e,
         "val_miou": value * e / epochs, "val_pixel_acc": 0.9, "lr": 2e-4, "epoch_seconds": 1.0,
         **{f"loss_{k}": 1.0 / e for k in LOSSES[method]}}
        for e in range(1, epochs + 1)
    ]
    (sweep_dir / "epochs").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(sweep_dir / "epochs" / f"{trial_id}.parquet", index=False)


def class_iou(value: float, nan_at: tuple[int, ...] = ()) -> list[float]:
    """IoU of class k = value + 0.001·k, NaN where the class was absent and never predicted."""
    return [math.nan if k in nan_at else value + 0.001 * k for k in range(len(VOC_NAMES))]


# best_val_miou per (method, fraction) for seeds 0, 1, 2 (hung: seeds 0, 1 only)
MAIN = {
    ("partial", 0.1): [0.20, 0.22, 0.24],
    ("cyclegan", 0.1): [0.25, 0.26, 0.30],
    ("partial", 0.2): [0.26, 0.27, 0.28],
    ("cyclegan", 0.2): [0.29, 0.27, 0.31],
    ("hung", 0.2): [0.27, 0.29],
    ("full", 1.0): [0.50, 0.52, 0.54],
}


def make_table1_sweep(root: Path, name: str = "table1") -> Path:
    d = root / name
    for (method, frac), values in MAIN.items():
        for seed, v in enumerate(values):
            nan_at = (5,) if (method == "partial" and seed == 0) else (6,) if method == "cyclegan" else ()
            write_trial(d, f"{method}_{frac}_{seed}", method=method, fraction=frac, seed=seed, value=v,
                        variant="proposed" if method == "cyclegan" else None, class_iou=class_iou(v, nan_at))
    # trials that must be listed, never averaged: their values would move every mean they touched
    write_trial(d, "cyclegan_0.1_3", method="cyclegan", fraction=0.1, seed=3, value=0.99, status="diverged")
    write_trial(d, "partial_0.2_3", method="partial", fraction=0.2, seed=3, value=None, status="failed",
                error="RuntimeError: injected crash in epoch 1\nTraceback ...")
    write_trial(d, "cyclegan_0.2_4", method="cyclegan", fraction=0.2, seed=4, value=0.95, status="early_stopped")
    # a sweep still running: a writer's temp file and epochs of a trial without a result yet
    (d / "trials" / ".running_0.parquet.tmp.parquet").write_bytes(b"not parquet yet")
    write_epochs(d, "running_0", "partial", "h", 0.1, 1)
    return d


ABLATION = {
    "no_label_cycle": ({"lambda_2": 0.0}, [0.26, 0.25, 0.30]),
    "no_image_disc": ({"lambda_5": 0.0}, [0.25, 0.22, 0.25]),
}


def make_ablation_sweep(root: Path) -> Path:
    d = root / "ablation"
    for variant, (lambdas, values) in ABLATION.items():
        for seed, v in enumerate(values):
            write_trial(d, f"{variant}_{seed}", method="cyclegan", fraction=0.2, seed=seed, value=v, variant=variant,
                        **lambdas)
    return d


@pytest.fixture
def sweeps(tmp_path):
    return make_table1_sweep(tmp_path), make_ablation_sweep(tmp_path)


def test_table1_means_stds_and_paired_gains(sweeps):
    t = report.prepare(report.load_results(list(sweeps)), "best_val_miou")
    summary, gains = report.table1(t, report.Paper.load(), "t")
    s = summary.set_index(["row", "labeled_fraction"])
    # partial 10 %: (0.20 + 0.22 + 0.24) / 3 = 0.22; deviations ±0.02, 0 → var 0.0008/2 → std 0.02
    assert s.loc[("partial", 0.1), ["n", "mean", "std"]].tolist() == pytest.approx([3, 0.22, 0.02])
    # cyclegan 10 %: mean 0.81/3 = 0.27; deviations -0.02, -0.01, 0.03 → 0.0014/2 = 0.0007 → std 0.0264575
    # (the diverged seed 3 with 0.99 is not in it)
    assert s.loc[("cyclegan", 0.1), ["n", "mean", "std"]].tolist() == pytest.approx([3, 0.27, 0.0264575], abs=1e-6)
    # full: 0.52 ± 0.02 at 100 %; the paper's numbers sit beside ours (voc is a paper dataset)
    assert s.loc[("full", 1.0), ["mean", "std", "paper"]].tolist() == pytest.approx([0.52, 0.02, 0.5543])
    assert s.loc[("cyclegan", 0.1), "paper"] == 0.2543 and s.loc[("partial", 0.2), "paper"] == 0.2688
    g = gains.set_index(["row", "labeled_fraction"])
    # 10 %: d = 0.05, 0.04, 0.06 → mean 0.05, sd 0.01; half = 4.302653 · 0.01/√3 = 0.0248414 → flagged
    r = g.loc[("cyclegan", 0.1)]
    assert (r["n_pairs"], r["mean"], r["std"]) == (3, pytest.approx(0.05), pytest.approx(0.01))
    assert r["ci_low"] == pytest.approx(0.05 - T975_DF2 * 0.01 / math.sqrt(3), abs=1e-6)
    assert r["ci_low"] == pytest.approx(0.0251586, abs=1e-6)
    assert r["ci_high"] == pytest.approx(0.0748414, abs=1e-6) and r["excludes_zero"]
    assert r["paper"] == pytest.approx(0.2543 - 0.2158)  # paper gain beside ours
    # 20 %: d = 0.03, 0.00, 0.03 → mean 0.02; deviations 0.01, -0.02, 0.01 → sd √(0.0006/2) = 0.0173205;
    # se = 0.01; half = 0.0430265 → [-0.0230265, 0.0630265]: seed noise, not flagged
    r = g.loc[("cyclegan", 0.2)]
    assert r["mean"] == pytest.approx(0.02) and r["ci_low"] == pytest.approx(-0.0230265, abs=1e-6)
    assert r["ci_high"] == pytest.approx(0.0630265, abs=1e-6) and not r["excludes_zero"]


def test_incomplete_seed_sets_are_flagged(sweeps):
    t = report.prepare(report.load_results(list(sweeps)), "best_val_miou")
    summary, gains = report.table1(t, report.Paper.load(), "t")
    s = summary.set_index(["row", "labeled_fraction"])
    # hung ran seeds 0, 1 only: 0.28 ± √0.0002 = 0.0141421 over n=2, fewer than the block's 3
    assert s.loc[("hung", 0.2), ["n", "mean", "std"]].tolist() == pytest.approx([2, 0.28, 0.0141421], abs=1e-6)
    assert s.loc[("hung", 0.2), "incomplete"] and not s.loc[("partial", 0.2), "incomplete"]
    g = gains.set_index(["row", "labeled_fraction"]).loc[("hung", 0.2)]
    # pairs for seeds 0, 1: d = 0.01, 0.02; partial's seed 2 has no partner → flagged as unpaired
    assert g["n_pairs"] == 2 and g["unpaired_seeds"] == "2" and g["incomplete"]
    assert g["ci_low"] == pytest.approx(0.015 - 12.706205 * 0.005, abs=1e-6)
    headers, rows = report.table1_layout(summary, gains, "voc")
    hung_cell = rows[[r[0] for r in rows].index("hung")][headers.index("20 %")]
    assert hung_cell == f"0.2800 ± 0.0141 (n=2){report.INCOMPLETE}"


def test_failed_diverged_and_early_stopped_trials_are_listed_not_averaged(sweeps, tmp_path, capsys):
    out = tmp_path / "rep"
    report.build_report(list(sweeps), out, no_samples=True)
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


def test_table2_pairs_each_variant_with_proposed(sweeps):
    t = report.prepare(report.load_results(list(sweeps)), "best_val_miou")
    t2 = report.table2(t, report.Paper.load(), "t").set_index("variant")
    assert t2.loc["proposed", "mean"] == pytest.approx(0.29) and t2.loc["proposed", "paper"] == 0.2981
    # no_label_cycle − proposed: 0.26-0.29, 0.25-0.27, 0.30-0.31 = -0.03, -0.02, -0.01 → mean -0.02, sd 0.01,
    # half 0.0248414 → [-0.0448414, 0.0048414]: includes 0
    r = t2.loc["no_label_cycle"]
    assert r["zeroed"] == "lambda_2" and r["n_pairs"] == 3 and r["diff_mean"] == pytest.approx(-0.02)
    assert r["diff_ci_low"] == pytest.approx(-0.0448414, abs=1e-6)
    assert r["diff_ci_high"] == pytest.approx(0.0048414, abs=1e-6)
    assert not r["excludes_zero"] and r["paper_diff"] == pytest.approx(0.2627 - 0.2981)
    # no_image_disc: -0.04, -0.05, -0.06 → mean -0.05, sd 0.01 → [-0.0748414, -0.0251586]: a real loss
    r = t2.loc["no_image_disc"]
    assert r["zeroed"] == "lambda_5" and r["diff_ci_high"] == pytest.approx(-0.0251586, abs=1e-6) and r["excludes_zero"]
    # ablation variants are never mixed into Table 1's cyclegan row
    summary, _ = report.table1(t, report.Paper.load(), "t")
    assert set(summary["row"]) == {"partial", "cyclegan", "hung", "full"}


def test_class_iou_table_is_nan_aware_with_paper_columns(sweeps):
    t = report.prepare(report.load_results(list(sweeps)), "best_val_miou")
    ct = report.class_iou_table(t, "voc", 0.1, "best_class_iou", report.Paper.load()).set_index("class")
    # partial 10 %: IoU_k = v + 0.001k over v = 0.20, 0.22, 0.24; bottle (k=5) NaN for seed 0 →
    # mean over seeds 1, 2 = (0.225 + 0.245) / 2 = 0.235 with n=2; aeroplane = 0.22 + 0.001 with n=3
    assert ct.loc["bottle", "partial"] == pytest.approx(0.235) and ct.loc["bottle", "partial n"] == 2
    assert ct.loc["aeroplane", "partial"] == pytest.approx(0.221) and ct.loc["aeroplane", "partial n"] == 3
    assert math.isnan(ct.loc["bus", "cyclegan"]) and ct.loc["bus", "cyclegan n"] == 0  # NaN in every seed
    # the paper's Table 3 at 10 %: aeroplane 0.4236 (Partial) / 0.4369 (Ours); no background row in the paper
    assert ct.loc["aeroplane", "paper partial"] == 0.4236 and ct.loc["aeroplane", "paper cyclegan"] == 0.4369
    assert math.isnan(ct.loc["background", "paper partial"])


def test_report_writes_every_file_and_pngs_open(sweeps, tmp_path, capsys):
    out = tmp_path / "rep"
    index = report.build_report(list(sweeps), out, labeled_fraction=None)
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
    assert "no checkpoint on this machine" in md
    assert "1 trial(s) have epochs but no result yet" in md and "skipped unreadable" not in md
    printed = capsys.readouterr().out
    assert "Table 1 — voc" in printed and "cyclegan − partial" in printed
    assert "+0.0500 [+0.0252, +0.0748] (n=3)*" in printed  # the 10 % gain, flagged


def test_terminal_table_is_fixed_width():
    rows = [["partial", "0.2200 ± 0.0200 (n=3)"], ["cyclegan − partial", "+0.05"]]
    text = report.text_table(["method", "10 %"], rows)
    lines = text.splitlines()
    # column widths 18 (len "cyclegan − partial") and 21 (len "0.2200 ± 0.0200 (n=3)"), two spaces between
    assert lines[0] == "method" + " " * 12 + "  " + " " * 17 + "10 %"
    assert lines[1] == "-" * 18 + "  " + "-" * 21
    assert lines[3].startswith("cyclegan − partial") and lines[3].endswith("+0.05")
    assert len({len(line) for line in lines}) == 1


def test_settings_that_differ_between_sweeps_are_separate_blocks(tmp_path):
    a = make_table1_sweep(tmp_path, "short")
    b = tmp_path / "long"
    for seed, v in enumerate([0.40, 0.41, 0.42]):
        write_trial(b, f"p{seed}", method="partial", fraction=0.1, seed=seed, value=v, epochs=4)
    t = report.prepare(report.load_results([a, b]), "best_val_miou")
    summary, _ = report.table1(t, report.Paper.load(), "t")
    s = summary.set_index(["block", "row", "labeled_fraction"])
    assert s.loc[("voc (epochs=2)", "partial", 0.1), "mean"] == pytest.approx(0.22)
    assert s.loc[("voc (epochs=4)", "partial", 0.1), "mean"] == pytest.approx(0.41)  # not averaged with epochs=2


def test_lambda_search_importance_and_parallel_coordinates(sweeps, tmp_path):
    d = tmp_path / "lambdas"
    l2 = [0.01, 0.1, 0.2, 0.4, 0.6, 0.8, 0.3, 0.5]
    l3 = [0.5, 2.0, 1.5, 0.7, 1.2, 0.9, 1.8, 0.6]
    for i, (a, b) in enumerate(zip(l2, l3, strict=True)):  # the metric depends on lambda_2 only
        write_trial(d, f"s{i}", method="cyclegan", fraction=0.2, seed=0, value=0.2 + 0.1 * a, lambda_2=a, lambda_3=b)
    out = tmp_path / "rep"
    report.build_report([*sweeps, d], out, no_samples=True)
    imp = pd.read_csv(out / "lambda_importance_lambdas_voc_cyclegan_20.csv").set_index("param")["importance"]
    assert set(imp.index) == {"lambda_2", "lambda_3"} and imp.sum() == pytest.approx(1.0)
    assert imp["lambda_2"] > imp["lambda_3"]
    top = pd.read_csv(out / "lambda_search_lambdas_voc_cyclegan_20.csv")
    assert top["best_val_miou"].iloc[0] == pytest.approx(0.28) and top["lambda_2"].iloc[0] == 0.8
    for png in ("lambda_importance_lambdas_voc_cyclegan_20.png", "lambda_parallel_lambdas_voc_cyclegan_20.png"):
        with Image.open(out / png) as im:
            assert im.size[0] > 400 and im.size[1] > 200
    # the searched settings stay out of Table 1: its cyclegan row is still the paper-default λ's 3 seeds
    t1 = pd.read_csv(out / "table1.csv").set_index(["row", "labeled_fraction"])
    assert t1.loc[("cyclegan", 0.2), "n"] == 3 and t1.loc[("cyclegan", 0.2), "mean"] == pytest.approx(0.29)
    assert "8 trials of searched settings are not in Table 1" in (out / "index.md").read_text()


def test_final_metric_and_fraction_choice(sweeps, tmp_path):
    out = tmp_path / "rep"
    report.build_report(list(sweeps), out, metric="final_val_miou", labeled_fraction=0.2, no_samples=True)
    t1 = pd.read_csv(out / "table1.csv").set_index(["row", "labeled_fraction"])
    assert t1.loc[("partial", 0.1), "mean"] == pytest.approx(0.21)  # final = best - 0.01 in these trials
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


@pytest.mark.slow
def test_sample_grid_from_real_checkpoints(tmp_path, monkeypatch):
    """Two real tiny trials (partial, cyclegan) → their checkpoints → the report's sample grid."""
    from model.config import resolve_config
    from model.datasets import DIGITS_INFO
    from model.trainer import CHECKPOINT, run_trial

    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))
    sweep_dir = tmp_path / "demo"
    tiny = {"dataset": "digits", "preset": "tiny", "epochs": 1, "digits_train": 20, "digits_val": 8,
            "image_height": 32, "image_width": 32, "labeled_fraction": 0.2, "device": "cpu"}
    for method in ("partial", "cyclegan"):
        cfg = resolve_config(tiny, {"method": method})
        work = tmp_path / "work" / method
        hist = run_trial(cfg, workdir=work)
        write_trial(sweep_dir, method, method=method, fraction=0.2, seed=0, value=hist[-1]["val_miou"], epochs=1,
                    dataset="digits", digits_train=20, digits_val=8, image_height=32, image_width=32,
                    class_iou=list(np.nan_to_num(hist[-1]["val_class_iou"])), class_names=list(DIGITS_INFO.class_names),
                    checkpoint_path=str(work / CHECKPOINT))
    out = tmp_path / "rep"
    report.build_report([sweep_dir], out)
    md = (out / "index.md").read_text()
    assert "![samples](samples_digits_20.png)" in md and "no checkpoint" not in md and "not drawn" not in md
    with Image.open(out / "samples_digits_20.png") as im:
        # 5 columns (image | truth | partial | cyclegan | G_SI(truth)) × 4 rows of square cells
        w, h = im.size
        assert 1.1 < w / h < 1.4 and h > 300


def test_variant_names_only_ablate_cyclegan_and_duplicate_seeds_are_averaged(tmp_path):
    d = tmp_path / "abl"
    # an ablation space crossing methods with variants: partial ignores λ's, so its "variants" are
    # the same experiment and fold into the partial row (one value per seed: the mean of its runs)
    for variant, v in (("proposed", 0.20), ("no_label_cycle", 0.24)):
        write_trial(d, f"p_{variant}", method="partial", fraction=0.2, seed=0, value=v, variant=variant,
                    **({"lambda_2": 0.0} if variant != "proposed" else {}))
    write_trial(d, "c_proposed", method="cyclegan", fraction=0.2, seed=0, value=0.30, variant="proposed")
    write_trial(d, "c_nlc", method="cyclegan", fraction=0.2, seed=0, value=0.27, variant="no_label_cycle", lambda_2=0.0)
    out = tmp_path / "rep"
    report.build_report([d], out, no_samples=True)
    t1 = pd.read_csv(out / "table1.csv").set_index("row")
    assert t1.loc["partial", "n"] == 1 and t1.loc["partial", "mean"] == pytest.approx(0.22)  # (0.20 + 0.24) / 2
    t2 = pd.read_csv(out / "table2.csv").set_index("variant")
    assert list(t2.index) == ["proposed", "no_label_cycle"]
    assert t2.loc["no_label_cycle", "diff_mean"] == pytest.approx(-0.03)
    assert "1 seed(s) have more than one completed run in the same cell" in (out / "index.md").read_text()


def test_a_gain_without_any_completed_baseline_says_so(tmp_path):
    d = tmp_path / "s"
    write_trial(d, "p0", method="partial", fraction=0.1, seed=0, value=None, status="failed", error="OOM")
    write_trial(d, "c0", method="cyclegan", fraction=0.1, seed=0, value=0.3)
    t = report.prepare(report.load_results([d]), "best_val_miou")
    summary, gains = report.table1(t, report.Paper.load(), "t")
    _, rows = report.table1_layout(summary, gains, "voc")
    assert rows[0][:2] == ["partial", f"— (n=0){report.INCOMPLETE}"]
    assert rows[-1][:2] == ["cyclegan − partial", f"— (no pairs){report.INCOMPLETE}"]


def test_report_reads_what_the_sweep_writer_writes(tmp_path):
    """Files from sweep/results.py (the real writer, with its Arrow schema) go through unchanged."""
    results = pytest.importorskip("sweep.results")
    from model.config import resolve_config

    d = tmp_path / "demo"
    versions = {"cycleseg_version": "0", "torch_version": "0", "ray_version": "0", "git_commit": None}
    for seed, (p, c) in enumerate([(0.20, 0.26), (0.22, 0.25), (0.24, 0.30)]):
        for method, v in (("partial", p), ("cyclegan", c)):
            cfg = resolve_config({"method": method, "labeled_fraction": 0.1, "seed": seed, "epochs": 2})
            hist = [{"epoch": e, "val_miou": v * e / 2, "val_pixel_acc": 0.9, "val_class_iou": [v * e / 2] * 11,
                     "lr": 2e-4, "epoch_seconds": 1.0, "diverged": False, "loss_S_gen": 1 / e, "loss_G_total": 2 / e}
                    for e in (1, 2)]
            row = results.trial_row(sweep="demo", trial_id=f"{method}{seed}", cfg=cfg, variant=None, history=hist,
                                    error=None, wall_seconds=1.0, gpus=0.0, checkpoint_path=None, versions=versions)
            results.write_trial(d, row, results.epoch_rows("demo", f"{method}{seed}", cfg, hist))
    out = tmp_path / "rep"
    report.build_report([d], out, no_samples=True)
    gains = pd.read_csv(out / "table1_gains.csv")
    # d = 0.06, 0.03, 0.06 → mean 0.05; deviations 0.01, -0.02, 0.01 → sd √(0.0006/2) = 0.0173205
    assert gains.loc[0, "mean"] == pytest.approx(0.05) and gains.loc[0, "std"] == pytest.approx(0.0173205, abs=1e-6)
    assert (out / "curves_digits_cyclegan.png").is_file() and (out / "class_iou_digits_10.csv").is_file()
