"""Report tables: Table 1 means and paired gains, Table 2, per-class IoU, the text layout."""

import math

import pytest

from cycleseg.sweep.report import tables
from cycleseg.sweep.report.derive import prepare
from cycleseg.sweep.report.paper import Paper
from cycleseg.sweep.results import stats
from cycleseg.sweep.results.parquet import read_sweeps
from cycleseg.sweep.results.text import text_table
from tests.sweep.report.synthetic import T975_DF2, write_trial


def test_table1_means_stds_and_paired_gains(sweeps):
    t = prepare(read_sweeps(list(sweeps)).trials, "test_miou")
    summary, gains = tables.table1(t, Paper.load(), "t")
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
    t = prepare(read_sweeps(list(sweeps)).trials, "test_miou")
    summary, gains = tables.table1(t, Paper.load(), "t")
    s = summary.set_index(["row", "labeled_fraction"])
    # hung ran seeds 0, 1 only: 0.28 ± √0.0002 = 0.0141421 over n=2, fewer than the block's 3
    assert s.loc[("hung", 0.2), ["n", "mean", "std"]].tolist() == pytest.approx([2, 0.28, 0.0141421], abs=1e-6)
    assert s.loc[("hung", 0.2), "incomplete"] and not s.loc[("partial", 0.2), "incomplete"]
    g = gains.set_index(["row", "labeled_fraction"]).loc[("hung", 0.2)]
    # pairs for seeds 0, 1: d = 0.01, 0.02; partial's seed 2 has no partner → flagged as unpaired
    assert g["n_pairs"] == 2 and g["unpaired_seeds"] == "2" and g["incomplete"]
    assert g["ci_low"] == pytest.approx(0.015 - 12.706205 * 0.005, abs=1e-6)
    headers, rows = tables.table1_layout(summary, gains, "voc")
    hung_cell = rows[[r[0] for r in rows].index("hung")][headers.index("20 %")]
    assert hung_cell == f"0.2800 ± 0.0141 (n=2){tables.INCOMPLETE}"


def test_table2_pairs_each_variant_with_proposed(sweeps):
    t = prepare(read_sweeps(list(sweeps)).trials, "test_miou")
    t2 = tables.table2(t, Paper.load(), "t").set_index("variant")
    assert t2.loc["proposed", "mean"] == pytest.approx(0.29) and t2.loc["proposed", "paper"] == 0.2981
    # no_label_cycle − proposed: 0.26-0.29, 0.25-0.27, 0.30-0.31 = -0.03, -0.02, -0.01 → mean -0.02, sd 0.01,
    # half 0.0248414 → [-0.0448414, 0.0048414]: includes 0
    r = t2.loc["no_label_cycle"]
    assert r["zeroed"] == "lambda_2" and r["n_pairs"] == 3 and r["diff_mean"] == pytest.approx(-0.02)
    assert r["changes"] == "lambda_2=0" and t2.loc["proposed", "changes"] == ""
    assert r["diff_ci_low"] == pytest.approx(-0.0448414, abs=1e-6)
    assert r["diff_ci_high"] == pytest.approx(0.0048414, abs=1e-6)
    assert not r["excludes_zero"] and r["paper_diff"] == pytest.approx(0.2627 - 0.2981)
    # no_image_disc: -0.04, -0.05, -0.06 → mean -0.05, sd 0.01 → [-0.0748414, -0.0251586]: a real loss
    r = t2.loc["no_image_disc"]
    assert r["zeroed"] == "lambda_5" and r["diff_ci_high"] == pytest.approx(-0.0251586, abs=1e-6) and r["excludes_zero"]
    # ablation variants are never mixed into Table 1's cyclegan row: each is a row of its own
    summary, _ = tables.table1(t, Paper.load(), "t")
    assert set(summary["row"]) == {"partial", "cyclegan", "hung", "full", "no_label_cycle", "no_image_disc"}
    assert summary.set_index(["row", "labeled_fraction"]).loc[("cyclegan", 0.2), "mean"] == pytest.approx(0.29)


def test_every_variant_is_a_table1_row_paired_with_partial(sweeps):
    t = prepare(read_sweeps(list(sweeps)).trials, "test_miou")
    summary, gains = tables.table1(t, Paper.load(), "t")
    s = summary.set_index(["row", "labeled_fraction"])
    # no_image_disc at 20 %: (0.25 + 0.22 + 0.25) / 3 = 0.24; deviations 0.01, -0.02, 0.01 → std √(0.0006/2)
    assert s.loc[("no_image_disc", 0.2), ["n", "mean", "std"]].tolist() == pytest.approx([3, 0.24, 0.0173205],
                                                                                       abs=1e-6)
    g = gains.set_index(["row", "labeled_fraction"])
    # − partial (0.26, 0.27, 0.28) by seed: -0.01, -0.05, -0.03 → mean -0.03, sd 0.02, half 4.302653 · 0.02/√3
    r = g.loc[("no_image_disc", 0.2)]
    assert (r["reference"], r["n_pairs"], r["mean"], r["std"]) == ("partial", 3, pytest.approx(-0.03),
                                                                   pytest.approx(0.02))
    assert r["ci_low"] == pytest.approx(-0.0796827, abs=1e-6) and r["ci_high"] == pytest.approx(0.0196827, abs=1e-6)
    assert r["equal_budget"] and not r["positive_control"]
    # no_label_cycle: 0, -0.02, +0.02 → mean 0
    assert g.loc[("no_label_cycle", 0.2), "mean"] == pytest.approx(0.0, abs=1e-12)
    _, rows = tables.table1_layout(summary, gains, "voc")
    assert "no_image_disc" in [r[0] for r in rows]


def test_class_iou_table_is_nan_aware_with_paper_columns(sweeps):
    t = prepare(read_sweeps(list(sweeps)).trials, "test_miou")
    ct = tables.class_iou_table(t, "voc", 0.1, "test_class_iou", Paper.load()).set_index("class")
    # partial 10 %: IoU_k = v + 0.001k over v = 0.20, 0.22, 0.24; bottle (k=5) NaN for seed 0 →
    # mean over seeds 1, 2 = (0.225 + 0.245) / 2 = 0.235 with n=2; aeroplane = 0.22 + 0.001 with n=3
    assert ct.loc["bottle", "partial"] == pytest.approx(0.235) and ct.loc["bottle", "partial n"] == 2
    assert ct.loc["aeroplane", "partial"] == pytest.approx(0.221) and ct.loc["aeroplane", "partial n"] == 3
    assert math.isnan(ct.loc["bus", "cyclegan"]) and ct.loc["bus", "cyclegan n"] == 0  # NaN in every seed
    # the paper's Table 3 at 10 %: aeroplane 0.4236 (Partial) / 0.4369 (Ours); no background row in the paper
    assert ct.loc["aeroplane", "paper partial"] == 0.4236 and ct.loc["aeroplane", "paper cyclegan"] == 0.4369
    assert math.isnan(ct.loc["background", "paper partial"])


def test_terminal_table_is_fixed_width():
    rows = [["partial", "0.2200 ± 0.0200 (n=3)"], ["cyclegan − partial", "+0.05"]]
    text = text_table(["method", "10 %"], rows)
    lines = text.splitlines()
    # column widths 18 (len "cyclegan − partial") and 21 (len "0.2200 ± 0.0200 (n=3)"), two spaces between
    assert lines[0] == "method" + " " * 12 + "  " + " " * 17 + "10 %"
    assert lines[1] == "-" * 18 + "  " + "-" * 21
    assert lines[3].startswith("cyclegan − partial") and lines[3].endswith("+0.05")
    assert len({len(line) for line in lines}) == 1


def test_a_gain_without_any_completed_baseline_says_so(tmp_path):
    d = tmp_path / "s"
    write_trial(d, "p0", method="partial", fraction=0.1, seed=0, value=None, status="failed", error="OOM")
    write_trial(d, "c0", method="cyclegan", fraction=0.1, seed=0, value=0.3)
    t = prepare(read_sweeps([d]).trials, "test_miou")
    summary, gains = tables.table1(t, Paper.load(), "t")
    _, rows = tables.table1_layout(summary, gains, "voc")
    assert rows[0][:2] == ["partial", f"— (n=0){tables.INCOMPLETE}"]
    assert rows[-1][:2] == ["cyclegan − partial", f"— (no pairs){tables.INCOMPLETE}"]


def test_budgets_are_shown_and_a_comparison_at_unequal_steps_is_flagged(tmp_path):
    d = tmp_path / "s"
    for seed, (p, c) in enumerate([(0.20, 0.25), (0.22, 0.26), (0.24, 0.30)]):
        write_trial(d, f"p{seed}", method="partial", fraction=0.1, seed=seed, value=p)  # 2 epochs × 10 steps
        write_trial(d, f"c{seed}", method="cyclegan", fraction=0.1, seed=seed, value=c, steps_per_epoch=20)
    t = prepare(read_sweeps([d]).trials, "test_miou")
    summary, gains = tables.table1(t, Paper.load(), "t")
    g = gains.set_index("row").loc["cyclegan"]
    assert (g["steps"], g["reference_steps"], g["equal_budget"]) == (40, 20, False)
    headers, rows = tables.table1_layout(summary, gains, "voc")
    assert rows[-1][0] == "cyclegan − partial" and tables.UNEQUAL in rows[-1][headers.index("10 %")]
    notes = tables.power_notes(gains, "voc")
    assert any("budgets differ (40 vs 20 steps)" in n and "mixes the method with the extra updates" in n
               for n in notes)
    # 5 labeled images per step; partial sees no unlabeled ones
    _, brows = tables.budget_layout(summary, "voc")
    assert brows == [["partial", "20 steps (100 L + 0 U)"], ["cyclegan", "40 steps (200 L + 200 U)"]]


def test_equal_budgets_and_a_detected_positive_control_raise_no_flag(sweeps):
    t = prepare(read_sweeps(list(sweeps)).trials, "test_miou")
    _, gains = tables.table1(t, Paper.load(), "t")
    assert gains["equal_budget"].all()
    control = gains[gains["positive_control"]].set_index("labeled_fraction")
    # full 0.50, 0.52, 0.54 vs partial 10 %: 0.20, 0.22, 0.24 → d = 0.30 for every seed (sd 0): detected
    assert control.loc[0.1, "mean"] == pytest.approx(0.30) and control.loc[0.1, "excludes_zero"]
    assert tables.power_notes(gains, "voc") == []


def test_an_undetected_positive_control_marks_the_sweep_underpowered(tmp_path):
    d = tmp_path / "s"
    for seed, (p, f) in enumerate([(0.2, 0.3), (0.5, 0.3), (0.3, 0.5)]):
        write_trial(d, f"p{seed}", method="partial", fraction=0.2, seed=seed, value=p)
        write_trial(d, f"f{seed}", method="full", fraction=1.0, seed=seed, value=f)
    t = prepare(read_sweeps([d]).trials, "test_miou")
    _, gains = tables.table1(t, Paper.load(), "t")
    # d = 0.1, −0.2, 0.2: mean 0.0333, sd 0.2082 → CI [−0.48, +0.55] includes 0; MDE = 0.680 at n = 3
    g = gains.iloc[0]
    assert g["positive_control"] and not g["excludes_zero"]
    assert g["mde"] == pytest.approx(stats.min_detectable_effect(g["std"], 3)) and g["mde"] > 0.6
    (note,) = tables.power_notes(gains, "voc")
    assert note.startswith("UNDERPOWERED: the positive control full − partial at 20 %")
    assert f"{int(g['seeds_needed'])} seeds would detect" in note and "add seeds" in note


def test_the_paper_as_coded_is_paired_with_its_own_baseline(tmp_path):
    d = tmp_path / "code"
    for seed in range(3):
        write_trial(d, f"p{seed}", method="partial", fraction=0.2, seed=seed, value=0.30 + seed / 100)
        write_trial(d, f"pc{seed}", method="partial", fraction=0.2, seed=seed, value=0.20 + seed / 100,
                    variant="partial_code", recipe="paper-code", beta1=0.9)
        write_trial(d, f"c{seed}", method="cyclegan", fraction=0.2, seed=seed, value=0.33 + seed / 100,
                    variant="proposed")
        write_trial(d, f"cc{seed}", method="cyclegan", fraction=0.2, seed=seed, value=0.25, variant="paper_code",
                    recipe="paper-code", d_s_input="detached_argmax", lambda_4=0.5, lambda_5=0.5, d_norm="instance",
                    pool_size=50)
    t = prepare(read_sweeps([d]).trials, "test_miou")
    summary, gains = tables.table1(t, Paper.load(), "t")
    g = gains.set_index("row")
    code_partial = "partial (beta1=0.9, recipe=paper-code)"
    assert set(summary["row"]) == {"partial", code_partial, "cyclegan", "paper_code"}
    # paper_code − its own partial: 0.25 − (0.20, 0.21, 0.22) → mean 0.04; cyclegan − partial: 0.03 every seed
    assert g.loc["paper_code", "reference"] == code_partial and g.loc["paper_code", "mean"] == pytest.approx(0.04)
    assert g.loc["cyclegan", "reference"] == "partial" and g.loc["cyclegan", "mean"] == pytest.approx(0.03)
    _, rows = tables.table1_layout(summary, gains, "voc")
    assert f"paper_code − {code_partial}" in [r[0] for r in rows]


def test_two_arms_that_predict_one_class_are_no_evidence_not_a_tight_ci(tmp_path):
    """Both arms predict background in every seed: the difference is ~0 with sd ~0, which a CI would print as
    a precise null ('+0.0000 [+0.0000, +0.0000] MDE 0.0000'); it is flagged instead. One arm alone is not."""
    d = tmp_path / "s"
    background = [0.8] + [0.0] * 20  # IoU of background only: what an untrained segmenter scores
    for seed in range(3):
        write_trial(d, f"p{seed}", method="partial", fraction=0.1, seed=seed, value=0.0381, class_iou=background)
        write_trial(d, f"c{seed}", method="cyclegan", fraction=0.1, seed=seed, value=0.0381, class_iou=background)
        write_trial(d, f"p2{seed}", method="partial", fraction=0.2, seed=seed, value=0.0381, class_iou=background)
        write_trial(d, f"c2{seed}", method="cyclegan", fraction=0.2, seed=seed, value=0.3 + seed / 100)
    t = prepare(read_sweeps([d]).trials, "test_miou")
    summary, gains = tables.table1(t, Paper.load(), "t")
    g = gains.set_index("labeled_fraction")
    assert g.loc[0.1, "one_class"] and not g.loc[0.2, "one_class"]
    headers, rows = tables.table1_layout(summary, gains, "voc")
    assert rows[-1][headers.index("10 %")] == f"+0.0000 (n=3){tables.ONE_CLASS} no evidence: both predict one class"
    assert "[" in rows[-1][headers.index("20 %")]  # a real comparison keeps its CI
    (note,) = tables.power_notes(gains, "voc")
    assert note.startswith(f"{tables.ONE_CLASS} cyclegan − partial at 10 %: both predict one class")
    assert "IoU 0.01" in note
