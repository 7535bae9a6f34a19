"""Replicate statistics against hand-computed values (std with ddof=1, t quantiles from tables)."""

import math

import numpy as np
import pytest

from cycleseg.sweep.results import stats

T975_DF1 = 12.706205  # t_{0.975, 1}
T975_DF2 = 4.302653  # t_{0.975, 2}


def test_t_quantiles_match_the_table():
    assert stats.t_quantile(0.95, 2) == pytest.approx(T975_DF2, abs=1e-6)
    assert stats.t_quantile(0.95, 1) == pytest.approx(T975_DF1, abs=1e-6)


def test_summary_mean_sample_std_and_t_interval():
    s = stats.summarize([0.30, 0.32, 0.34])
    # mean 0.96 / 3 = 0.32; squared deviations 0.0004 + 0 + 0.0004 = 0.0008; / (n-1 = 2) = 0.0004 → std 0.02
    assert (s.n, s.mean, s.std) == (3, pytest.approx(0.32), pytest.approx(0.02))
    # half width = t_{0.975,2} · 0.02 / √3 = 4.302653 · 0.011547005 = 0.049682... → [0.270317, 0.369683]
    half = T975_DF2 * 0.02 / math.sqrt(3)
    assert s.ci_low == pytest.approx(0.32 - half, abs=1e-6) and s.ci_high == pytest.approx(0.32 + half, abs=1e-6)
    assert s.ci_low == pytest.approx(0.270317, abs=1e-6)


def test_summary_of_one_or_no_value_has_no_spread():
    one = stats.summarize([0.5])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert stats.summarize([]).n == 0
    assert stats.summarize([0.4, float("nan"), 0.6]).n == 2  # NaN is not a replicate


def test_paired_gain_whose_interval_excludes_zero():
    a = {0: 0.33, 1: 0.36, 2: 0.39}
    b = {0: 0.30, 1: 0.32, 2: 0.34}
    d = stats.paired_difference(a, b)
    # d = 0.03, 0.04, 0.05: mean 0.04, sd = sqrt((0.0001 + 0 + 0.0001) / 2) = 0.01
    assert d.n == 3 and d.mean == pytest.approx(0.04) and d.std == pytest.approx(0.01)
    # half = 4.302653 · 0.01 / √3 = 0.0248414 → [0.0151586, 0.0648414]
    assert d.ci_low == pytest.approx(0.0151586, abs=1e-6) and d.ci_high == pytest.approx(0.0648414, abs=1e-6)
    assert d.excludes_zero
    # t = 0.04 / (0.01/√3) = 4√3; for df=2, P(|T| > t) = 1 - t/√(t² + 2) = 1 - 6.928203/√50 = 0.0202041
    assert d.p_value == pytest.approx(0.0202041, abs=1e-6)
    assert d.keys == (0, 1, 2) and d.only_a == () and d.only_b == ()


def test_paired_gain_within_seed_noise_is_not_flagged():
    d = stats.paired_difference({0: 0.35, 1: 0.34, 2: 0.40}, {0: 0.30, 1: 0.32, 2: 0.34})
    # d = 0.05, 0.02, 0.06: mean 0.043333; deviations 0.006667, -0.023333, 0.016667;
    # squares sum 0.00086667 / 2 = 0.00043333 → sd 0.0208167; se = sd/√3 = 0.0120185;
    # half = 4.302653 · 0.0120185 = 0.0517113 → [-0.0083780, 0.0950447]
    assert d.mean == pytest.approx(0.0433333, abs=1e-6) and d.std == pytest.approx(0.0208167, abs=1e-6)
    assert d.ci_low == pytest.approx(-0.0083780, abs=1e-6) and d.ci_high == pytest.approx(0.0950447, abs=1e-6)
    assert not d.excludes_zero


def test_unpaired_seeds_are_left_out_and_reported():
    d = stats.paired_difference({0: 0.27, 1: 0.29}, {0: 0.26, 1: 0.27, 2: 0.28})
    # pairs only for seeds 0 and 1: d = 0.01, 0.02 → mean 0.015, sd = 0.0070711, se = 0.005;
    # half = t_{0.975,1} · 0.005 = 12.706205 · 0.005 = 0.0635310 → [-0.0485310, 0.0785310]
    assert d.n == 2 and d.only_a == () and d.only_b == (2,)
    assert d.mean == pytest.approx(0.015) and d.ci_low == pytest.approx(-0.0485310, abs=1e-6)
    assert d.ci_high == pytest.approx(0.0785310, abs=1e-6)
    nan_seed = stats.paired_difference({0: 0.3, 1: float("nan")}, {0: 0.2, 1: 0.2})
    assert nan_seed.n == 1 and nan_seed.only_b == (1,) and math.isnan(nan_seed.ci_low)


def test_bootstrap_refuses_too_few_pairs_and_is_reproducible():
    assert all(math.isnan(v) for v in stats.bootstrap_interval([0.01, 0.02, 0.03]))
    d = [0.01, 0.03, 0.02, 0.05, 0.04]
    lo, hi = stats.bootstrap_interval(d)
    assert (lo, hi) == stats.bootstrap_interval(d)  # fixed seed
    assert 0.01 <= lo < 0.03 < hi <= 0.05  # the mean 0.03 inside, never outside the observed range
    boot = stats.paired_difference(dict(enumerate(d)), dict.fromkeys(range(5), 0.0), ci="bootstrap")
    assert (boot.ci_low, boot.ci_high, boot.ci_method) == (lo, hi, "bootstrap")
    few = stats.paired_difference({0: 0.3, 1: 0.2, 2: 0.25}, {0: 0.1, 1: 0.1, 2: 0.1}, ci="bootstrap")
    assert few.ci_method == "t"
    assert (few.ci_low, few.ci_high) == pytest.approx(stats.t_interval([0.2, 0.1, 0.15]))
    with pytest.raises(ValueError):
        stats.paired_difference({0: 1.0}, {0: 1.0}, ci="wald")


def test_nanmean_rows_ignores_missing_classes():
    means, counts = stats.nanmean_rows([[0.5, np.nan, 0.2], [0.7, np.nan, np.nan]])
    # class 0: (0.5 + 0.7) / 2 = 0.6; class 1 absent everywhere → NaN; class 2: only 0.2
    assert means[0] == pytest.approx(0.6) and math.isnan(means[1]) and means[2] == pytest.approx(0.2)
    assert counts.tolist() == [2, 0, 1]


def test_power_of_the_paired_t_test_matches_the_tabulated_value():
    # G*Power, paired (one-sample) t, two-sided α = 0.05, d_z = 1, n = 10: power 0.8030962
    assert stats.paired_power(1.0, 1.0, 10) == pytest.approx(0.8030962, abs=1e-6)
    assert stats.paired_power(0.0, 1.0, 10) == pytest.approx(0.05, abs=1e-9)  # no effect: the test's level


@pytest.mark.parametrize(("n", "sd"), [(3, 0.01), (10, 1.0)])
def test_min_detectable_effect_is_detected_80_percent_of_the_time(n, sd):
    """Checked by simulation, not by the formula it comes from: 200,000 paired t tests at the MDE."""
    mde = stats.min_detectable_effect(sd, n)
    d = np.random.default_rng(0).normal(mde, sd, (200_000, n))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    assert (np.abs(t) > stats.t_quantile(0.95, n - 1)).mean() == pytest.approx(0.8, abs=0.004)
    # the normal approximation (z₀.₉₇₅ + z₀.₈) · sd / √n = 2.8016 · sd / √n is too small for few pairs
    assert mde > 2.8016 * sd / math.sqrt(n)


def test_min_detectable_effect_edges_and_seeds_needed():
    assert math.isnan(stats.min_detectable_effect(0.01, 1)) and math.isnan(stats.min_detectable_effect(math.nan, 3))
    assert stats.min_detectable_effect(0.0, 3) == 0.0
    # a gain of 0.02 with pair sd 0.0173205: 3 seeds detect only 0.0565; n = 9 is the first whose MDE ≤ 0.02
    sd = 0.0173205
    assert stats.min_detectable_effect(sd, 3) == pytest.approx(0.0565, abs=1e-4)
    assert stats.min_detectable_effect(sd, 9) <= 0.02 < stats.min_detectable_effect(sd, 8)
    assert stats.seeds_needed(0.02, sd) == 9 and stats.seeds_needed(0.0, sd) is None


def test_groups_differ_p_matches_a_hand_computed_anova():
    # groups [1,2,3] and [4,5,6]: between SS = 2·... means 2 and 5, grand 3.5 → SSB = 3·1.5²·2 = 13.5 (df 1);
    # within SS = 2 + 2 = 4 (df 4); F = 13.5 / (4/4) = 13.5 → p = P(F(1,4) > 13.5)
    p = stats.groups_differ_p([[1, 2, 3], [4, 5, 6]])
    assert p == pytest.approx(0.02131, abs=1e-4)
    assert stats.groups_differ_p([[0.08, 0.08], [0.08, 0.08]]) == 1.0  # every value equal
    assert stats.groups_differ_p([[1.0, 1.0], [2.0, 2.0]]) == 0.0  # no seed noise, different means
    assert math.isnan(stats.groups_differ_p([[1.0], [2.0]]))  # one seed each: cannot be told
    assert math.isnan(stats.groups_differ_p([[1.0, 2.0]]))  # one configuration
