"""best-config: seed-aware ranking, filters, the exported YAML runs unchanged; bad requests exit 2."""

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from cycleseg.cli import main
from cycleseg.model.resolve import load_config_file, resolve_config
from cycleseg.sweep.planning.plan import PLAN_FILE, Plan
from cycleseg.sweep.planning.space import load_space
from cycleseg.sweep.results import parquet as res
from cycleseg.sweep.results.export import rank_configs
from tests.records import epoch_record

BASE = {"dataset": "digits", "preset": "tiny", "epochs": 2, "image_height": 32, "image_width": 32,
        "digits_train": 24, "digits_val": 8, "digits_test": 8, "device": "cpu"}
VERSIONS = {"cycleseg_version": None, "torch_version": "2", "ray_version": "2.60.0", "git_commit": None}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))


def add_trial(sweep_dir, tid, scores, *, status_error=None, diverged=False, **fields):
    cfg = resolve_config({**BASE, **fields})
    # test = 1 − val (tests/records.py): a choice that read test would pick the opposite winner
    hist = [epoch_record(e, s, diverged=diverged and e == len(scores)) for e, s in enumerate(scores, 1)]
    row = res.trial_row(sweep="toy", trial_id=tid, cfg=cfg, variant=None, history=hist, error=status_error,
                        wall_seconds=5.0, gpus=0.0, checkpoint_path=None, versions=VERSIONS)
    res.write_trial(sweep_dir, row, hist)
    return cfg


@pytest.fixture
def sweep_dir(tmp_path):
    d = tmp_path / "toy"
    # A (lambda_2=0.5): seeds 0.9 and 0.1 (mean 0.5, one lucky seed); B (lambda_2=0.1): 0.6 and 0.6
    add_trial(d, "a0", [0.2, 0.9], lambda_2=0.5, seed=0)
    add_trial(d, "a1", [0.1, 0.1], lambda_2=0.5, seed=1)
    add_trial(d, "b0", [0.3, 0.6], lambda_2=0.1, seed=0)
    add_trial(d, "b1", [0.6, 0.5], lambda_2=0.1, seed=1)
    # higher scores that must not count: failed, diverged, early-stopped (1 of 2 epochs)
    add_trial(d, "f0", [0.99, 0.99], lambda_2=0.2, status_error="RuntimeError: x")
    add_trial(d, "d0", [0.98, 0.97], lambda_2=0.3, diverged=True)
    add_trial(d, "e0", [0.97], lambda_2=0.4)
    # another fraction, for --where
    add_trial(d, "c0", [0.7, 0.7], lambda_2=0.1, labeled_fraction=0.5, seed=0)
    add_trial(d, "c1", [0.1, 0.2], lambda_2=0.1, labeled_fraction=0.5, seed=1)
    return d


def export(*args):
    return CliRunner().invoke(main, ["best-config", *map(str, args)], catch_exceptions=False)


def test_mean_over_seeds_beats_one_lucky_seed(sweep_dir, tmp_path):
    out = tmp_path / "best.yaml"
    r = export(sweep_dir, "--where", "labeled_fraction == 0.2", "-o", out)
    assert r.exit_code == 0, r.output
    text = yaml.safe_load(out.read_text())
    assert text["lambda_2"] == 0.1 and text["seed"] == 0  # B: mean 0.6 > A: mean 0.5
    src = text["_source"]
    assert src["value"] == pytest.approx(0.6) and src["n"] == 2 and src["seeds"] == [0, 1]
    assert sorted(src["trial_ids"]) == ["b0", "b1"] and src["selected"] == "mean over seeds"
    # --per-seed: the single best trial wins
    r = export(sweep_dir, "--where", "labeled_fraction == 0.2", "--per-seed", "-o", out)
    assert r.exit_code == 0 and yaml.safe_load(out.read_text())["_source"]["trial_ids"] == ["a0"]


def test_only_completed_trials_count_and_where_filters(sweep_dir, tmp_path):
    out = tmp_path / "best.yaml"
    assert export(sweep_dir, "--where", "labeled_fraction == 0.2", "-o", out).exit_code == 0
    assert yaml.safe_load(out.read_text())["_source"]["trial_ids"] == ["b0", "b1"]  # not f0, d0, e0
    r = export(sweep_dir, "--where", "labeled_fraction == 0.5", "--metric", "final_val_miou", "-o", out)
    assert r.exit_code == 0
    got = yaml.safe_load(out.read_text())
    assert got["labeled_fraction"] == 0.5 and got["_source"]["value"] == pytest.approx(0.45)
    # mode=min picks the worst mean
    assert export(sweep_dir, "--where", "labeled_fraction == 0.2", "--mode", "min", "-o", out).exit_code == 0
    assert yaml.safe_load(out.read_text())["_source"]["trial_ids"] == ["a0", "a1"]  # mean 0.5 < 0.6


def test_one_winner_per_cell_a_grid_sweep_per_labeled_fraction(sweep_dir, tmp_path):
    # two labeled fractions, one -o file: which is meant? say how to pick one, write nothing
    r = export(sweep_dir, "-o", tmp_path / "best.yaml")
    assert r.exit_code == 2 and "holds 2 grid cells" in r.output
    assert "(labeled_fraction=0.2; labeled_fraction=0.5)" in r.output
    assert "--where \"labeled_fraction == 0.2\"" in r.output and "-o best/" in r.output
    assert not (tmp_path / "best.yaml").exists()
    # a folder takes one file per cell
    r = export(sweep_dir, "-o", f"{tmp_path}/best/")
    assert r.exit_code == 0, r.output
    files = {f.name: yaml.safe_load(f.read_text()) for f in (tmp_path / "best").iterdir()}
    assert set(files) == {"best_labeled-fraction-0p2.yaml", "best_labeled-fraction-0p5.yaml"}
    assert files["best_labeled-fraction-0p2.yaml"]["_source"]["trial_ids"] == ["b0", "b1"]
    assert files["best_labeled-fraction-0p5.yaml"]["_source"]["trial_ids"] == ["c0", "c1"]


def test_a_search_sweeps_cells_are_its_grid_cells(sweep_dir, tmp_path):
    # another lr at 20 %, better than every λ: in a grid sweep lr is one more choice, so it wins the 20 % cell...
    add_trial(sweep_dir, "g0", [0.8, 0.8], lambda_2=0.1, lr=0.01, seed=0)
    add_trial(sweep_dir, "g1", [0.8, 0.8], lambda_2=0.1, lr=0.01, seed=1)
    assert export(sweep_dir, "-o", f"{tmp_path}/grid/").exit_code == 0
    assert len(list((tmp_path / "grid").iterdir())) == 2
    best = yaml.safe_load((tmp_path / "grid" / "best_labeled-fraction-0p2.yaml").read_text())
    assert best["lr"] == 0.01
    # ...but a search over lambda_2 (sweep.json says so) compares λ's within each grid cell: lr is a grid factor
    plan = Plan(space_path="space.yaml", sets={}, num_trials=8, trials=[], cells=[], seeds=[0, 1],
                searched=["lambda_2"])
    (sweep_dir / PLAN_FILE).write_text(plan.to_json())
    r = export(sweep_dir, "-o", f"{tmp_path}/search/")
    assert r.exit_code == 0, r.output
    picked = [yaml.safe_load(f.read_text()) for f in sorted((tmp_path / "search").iterdir())]
    assert sorted((b["labeled_fraction"], b["lr"], b["lambda_2"]) for b in picked) == [
        (0.2, 0.0002, 0.1), (0.2, 0.01, 0.1), (0.5, 0.0002, 0.1)]


def test_trial_option_exports_that_exact_trial(sweep_dir, tmp_path):
    out = tmp_path / "t.yaml"
    r = export(sweep_dir, "--trial", "f0", "-o", out)
    assert r.exit_code == 0, r.output
    got = yaml.safe_load(out.read_text())
    assert got["lambda_2"] == 0.2 and got["_source"]["status"] == "failed"


def test_ranking_table_is_mean_std_n():
    df = pd.DataFrame({"group_hash": ["x", "x", "y"], "trial_id": ["1", "2", "3"], "m": [0.2, 0.4, 0.35]})
    r = rank_configs(df, "m", "max", per_seed=False)
    assert list(r["group_hash"]) == ["y", "x"]
    assert r.iloc[1]["mean"] == pytest.approx(0.3) and r.iloc[1]["std"] == pytest.approx(0.1414, abs=1e-4)
    assert list(r["n"]) == [1, 2] and r.iloc[0]["std"] == 0.0


def test_exported_yaml_runs_with_debug_and_as_a_sweep_base(sweep_dir, tmp_path):
    out = tmp_path / "best.yaml"
    assert export(sweep_dir, "--where", "labeled_fraction == 0.2", "-o", out).exit_code == 0
    cfg = resolve_config(load_config_file(out))  # _source is ignored
    assert cfg.hash() == pd.read_parquet(sweep_dir / "trials").set_index("trial_id").loc["b0", "config_hash"]
    space = tmp_path / "again.yaml"
    space.write_text("base: best.yaml\nseeds: [5, 6]\n")
    specs = load_space(space).expand()
    assert [s.cfg.hash() for s in specs] == [resolve_config(cfg.to_dict(), {"seed": s}).hash() for s in (5, 6)]
    r = CliRunner().invoke(main, ["debug", "--config", str(out), "--epochs", "1", "--out", str(tmp_path / "dbg")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert yaml.safe_load((tmp_path / "dbg" / "config.yaml").read_text())["lambda_2"] == 0.1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--metric", "val_mIoU"], "unknown metric 'val_mIoU'"),
        (["--metric", "method"], "unknown metric 'method'"),
        (["--metric", "test_miou"], "'test_miou' is a test metric"),
        (["--metric", "final_test_miou"], "'final_test_miou' is a test metric"),
        (["--where", "labeled_fraction == 0.9"], "matches no completed trial"),
        (["--where", "labeled_fraction =="], "is not an expression on config fields"),
        (["--where", "labeled_fraction.nosuch() > 1"], "is not a valid pandas query"),
        (["--where", "no_such_column > 1"], "may name only config fields"),
        (["--where", "test_miou > 0.3 and labeled_fraction == 0.2"], "test_miou is not one"),
        (["--where", "val_miou == val_miou.max()"], "val_miou is not one"),
        (["--where", "`lambda_2` > 0"], "is not an expression on config fields"),
        (["-o", ""], "-o/--output is empty"),
        (["--trial", "zz"], "--trial 'zz' is not in"),
    ],
)
def test_bad_requests_exit_2(sweep_dir, tmp_path, args, needle):
    r = export(sweep_dir, "-o", tmp_path / "x.yaml", *args)
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.yaml").exists()


def add_scored(sweep_dir, tid, val, class_iou, **fields):
    cfg = resolve_config({**BASE, **fields})
    hist = [epoch_record(e, val, val_class_iou=class_iou) for e in (1, 2)]
    row = res.trial_row(sweep="toy", trial_id=tid, cfg=cfg, variant=None, history=hist, error=None,
                        wall_seconds=5.0, gpus=0.0, checkpoint_path=None, versions=VERSIONS)
    res.write_trial(sweep_dir, row, hist)


def test_a_winner_that_may_mean_nothing_says_why(tmp_path):
    learned = [0.9, 0.5, 0.4] + [0.3] * 8
    clear, noise, blind = tmp_path / "clear", tmp_path / "noise", tmp_path / "blind"
    for seed, jitter in ((0, 0.0), (1, 0.01)):  # λ2 = 0.1 wins by 0.2, far beyond the 0.01 seed spread
        add_scored(clear, f"a{seed}", 0.6 + jitter, learned, lambda_2=0.1, seed=seed)
        add_scored(clear, f"b{seed}", 0.4 + jitter, learned, lambda_2=0.5, seed=seed)
        add_scored(noise, f"a{seed}", 0.5 + 0.1 * seed, learned, lambda_2=0.1, seed=seed)
        add_scored(noise, f"b{seed}", 0.51 + 0.1 * seed, learned, lambda_2=0.5, seed=seed)
        add_scored(blind, f"a{seed}", 0.08, [0.89] + [0.001 * seed] * 10, lambda_2=0.1, seed=seed)
    for ranking in ([], ["--per-seed"]):
        r = export(clear, *ranking, "-o", tmp_path / "c.yaml")
        assert r.exit_code == 0 and "caution" not in r.output, r.output
    r = export(noise, "-o", tmp_path / "n.yaml")
    assert "caution: its configurations differ no more than their seeds do (one-way ANOVA p = 0.9" in r.output
    assert yaml.safe_load((tmp_path / "n.yaml").read_text())["_source"]["caveats"]
    r = export(blind, "-o", tmp_path / "b.yaml")
    assert r.exit_code == 0 and "caution: it predicts essentially one class" in r.output, r.output


def test_no_trials_and_no_completed_trials_exit_2(tmp_path):
    r = export(tmp_path / "nowhere")
    assert r.exit_code == 2 and "is not a sweep folder" in r.output
    add_trial(tmp_path / "bad", "f", [0.5], status_error="RuntimeError: x")
    r = export(tmp_path / "bad", "-o", tmp_path / "x.yaml")
    assert r.exit_code == 2 and "no completed trials" in r.output


def test_without_o_several_cells_go_to_best_and_one_cell_to_best_yaml(sweep_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = export(sweep_dir)  # the demo's case: two labeled fractions, no -o
    assert r.exit_code == 0, r.output
    assert "2 grid cells" in r.output and len(list((tmp_path / "best").iterdir())) == 2
    assert not (tmp_path / "best.yaml").exists()
    r = export(sweep_dir, "--where", "labeled_fraction == 0.2")
    assert r.exit_code == 0, r.output
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["labeled_fraction"] == 0.2
