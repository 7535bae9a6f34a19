"""Which trials are compared: blocks by differing settings, rows and ablation arms."""


import pandas as pd
import pytest

from cycleseg.sweep.report import build_report, tables
from cycleseg.sweep.report.derive import prepare
from cycleseg.sweep.report.paper import Paper
from cycleseg.sweep.results.parquet import read_sweeps
from tests.sweep.report.synthetic import (
    make_table1_sweep,
    write_trial,
)


def test_settings_that_differ_between_sweeps_are_separate_blocks(tmp_path):
    a = make_table1_sweep(tmp_path, "short")
    b = tmp_path / "long"
    for seed, v in enumerate([0.40, 0.41, 0.42]):
        write_trial(b, f"p{seed}", method="partial", fraction=0.1, seed=seed, value=v, epochs=4)
    t = prepare(read_sweeps([a, b]).trials, "test_miou")
    summary, _ = tables.table1(t, Paper.load(), "t")
    s = summary.set_index(["block", "row", "labeled_fraction"])
    assert s.loc[("voc (epochs=2)", "partial", 0.1), "mean"] == pytest.approx(0.22)
    assert s.loc[("voc (epochs=4)", "partial", 0.1), "mean"] == pytest.approx(0.41)  # not averaged with epochs=2


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
    build_report([d], out, no_samples=True)
    t1 = pd.read_csv(out / "table1.csv").set_index("row")
    assert t1.loc["partial", "n"] == 1 and t1.loc["partial", "mean"] == pytest.approx(0.22)  # (0.20 + 0.24) / 2
    t2 = pd.read_csv(out / "table2.csv").set_index("variant")
    assert list(t2.index) == ["proposed", "no_label_cycle"]
    assert t2.loc["no_label_cycle", "diff_mean"] == pytest.approx(-0.03)
    assert "1 seed(s) have more than one completed run in the same cell" in (out / "index.md").read_text()


def test_what_a_choice_may_draw_from_never_depends_on_a_test_value(tmp_path):
    d = tmp_path / "s"
    write_trial(d, "a", method="partial", fraction=0.2, seed=0, value=0.3)
    write_trial(d, "b", method="partial", fraction=0.2, seed=1, value=0.3)
    trials = read_sweeps([d]).trials
    trials.loc[trials["trial_id"] == "b", "test_miou"] = float("nan")  # e.g. an empty test split
    t = prepare(trials, "test_miou").set_index("trial_id")
    assert list(t["included"]) == [True, False]  # the test table has no value for b
    assert list(t["choosable"]) == [True, True]  # but a val ranking still sees it


def test_a_variant_named_arm_at_cell_is_the_row_arm(tmp_path):
    """cycleseg confirm's arms: each fraction's winner is one row, its defaults the plain cyclegan row."""
    d = tmp_path / "conf"
    for seed in (5, 6):
        for frac, w, p, c in ((0.1, 0.30, 0.25, 0.26), (0.2, 0.36, 0.33, 0.31)):
            tag = f"f{frac}"
            write_trial(d, f"w{tag}_{seed}", method="cyclegan", fraction=frac, seed=seed, value=w + seed / 100,
                        variant=f"winner@{tag}", lambda_2=0.2 if frac == 0.1 else 0.3)
            write_trial(d, f"p{tag}_{seed}", method="partial", fraction=frac, seed=seed, value=p,
                        variant=f"partial@{tag}")
            write_trial(d, f"d{tag}_{seed}", method="cyclegan", fraction=frac, seed=seed, value=c,
                        variant=f"default@{tag}")
    t = prepare(read_sweeps([d]).trials, "test_miou")
    assert set(t["row"]) == {"winner", "partial", "cyclegan"}
    _, gains = tables.table1(t, Paper.load(), "t")
    g = gains.set_index(["row", "labeled_fraction"])
    # winner − partial at 10 %: 0.35 − 0.25 and 0.36 − 0.25 → 0.105; at 20 %: 0.41 − 0.33, 0.42 − 0.33 → 0.085
    assert g.loc[("winner", 0.1), "mean"] == pytest.approx(0.105)
    assert g.loc[("winner", 0.2), "mean"] == pytest.approx(0.085)
    assert g.loc[("cyclegan", 0.2), "mean"] == pytest.approx(-0.02)  # the defaults: 0.31 − 0.33
    t2 = tables.table2(t, Paper.load(), "t").set_index(["variant", "labeled_fraction"])
    assert t2.loc[("winner", 0.1), "diff_mean"] == pytest.approx(0.095)  # winner − defaults, paired by seed


def test_arm_at_cell_variants_that_meet_at_one_fraction_stay_apart(tmp_path):
    d = tmp_path / "meet"
    for seed in (0, 1):
        for tag, v in (("gumbel", 0.30), ("softmax", 0.20)):  # two winners at 10 %: different configurations
            write_trial(d, f"{tag}{seed}", method="cyclegan", fraction=0.1, seed=seed, value=v,
                        variant=f"winner@{tag}", d_s_input="gumbel" if tag == "gumbel" else "softmax")
        write_trial(d, f"p{seed}", method="partial", fraction=0.1, seed=seed, value=0.1)
    t = prepare(read_sweeps([d]).trials, "test_miou")
    assert set(t["row"]) == {"winner@gumbel", "winner@softmax", "partial"}  # never averaged into one "winner"
