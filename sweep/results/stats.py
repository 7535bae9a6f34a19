"""Replicate statistics for reports: means over seeds, paired differences and their intervals.

The paper's claims are 2–4 mIoU-point differences, the size of seed noise, so a gain is only
reported together with an interval from paired replicates: two arms trained with the same seed
see the same labeled subset, init and batch order, so their difference removes that shared noise.

Conventions, fixed here once: standard deviations use ddof=1 (sample std over seeds); intervals
are two-sided at ``LEVEL``; the default interval is the paired t interval
``mean(d) ± t_{(1+LEVEL)/2, n-1} · sd(d) / √n``. The percentile bootstrap is offered for larger
replicate counts; with n ≤ 3 pairs it is unreliable (n = 2 gives only 3 distinct resample means and
the interval can never be wider than the observed range), so reports keep the t interval there.
Beside each paired gain, ``min_detectable_effect`` says what gain this many seeds could detect (power
``POWER`` at the same level), from the differences' sd. No I/O in this module.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps  # scipy ships with scikit-learn, a declared dependency
from scipy.optimize import brentq

LEVEL = 0.95
CI_METHODS = ("t", "bootstrap")
BOOTSTRAP_MIN_PAIRS = 4  # below this a bootstrap interval is not computed (NaN) and reports say why
BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class Summary:
    """Mean ± sample std (ddof=1) of replicate values; ``std`` is NaN for fewer than 2 values."""

    n: int
    mean: float
    std: float
    ci_low: float  # t interval of the mean (NaN for n < 2)
    ci_high: float


@dataclass(frozen=True)
class PairedDiff:
    """``a − b`` over the keys (seeds) both arms have."""

    n: int  # number of pairs
    mean: float
    std: float  # ddof=1 of the differences
    ci_low: float
    ci_high: float
    p_value: float  # two-sided paired t test; NaN when undefined (n < 2 or sd = 0)
    ci_method: str
    keys: tuple[Hashable, ...]  # the paired keys, sorted
    only_a: tuple[Hashable, ...]  # keys without a partner: a cell that cannot be paired is flagged
    only_b: tuple[Hashable, ...]

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies entirely above or below 0 (a gain we can tell from seed noise)."""
        return bool(self.ci_low > 0 or self.ci_high < 0)


def t_quantile(level: float, df: int) -> float:
    """Two-sided critical value t_{(1+level)/2, df}, e.g. t_quantile(0.95, 2) = 4.302653."""
    return float(sps.t.ppf((1.0 + level) / 2.0, df))


def _clean(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]


def sample_std(values: Sequence[float]) -> float:
    """Standard deviation with ddof=1; NaN for fewer than 2 finite values."""
    x = _clean(values)
    return float(np.std(x, ddof=1)) if len(x) >= 2 else math.nan


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student t interval of the mean of ``values``; (NaN, NaN) for fewer than 2 values."""
    x = _clean(values)
    if len(x) < 2:
        return math.nan, math.nan
    half = t_quantile(level, len(x) - 1) * float(np.std(x, ddof=1)) / math.sqrt(len(x))
    m = float(np.mean(x))
    return m - half, m + half


def bootstrap_interval(
    values: Sequence[float], level: float = LEVEL, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; (NaN, NaN) below ``BOOTSTRAP_MIN_PAIRS`` values."""
    x = _clean(values)
    if len(x) < BOOTSTRAP_MIN_PAIRS:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def summarize(values: Sequence[float], level: float = LEVEL) -> Summary:
    """Mean, sample std (ddof=1) and t interval of the finite values."""
    x = _clean(values)
    if len(x) == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    lo, hi = t_interval(x, level)
    return Summary(len(x), float(np.mean(x)), sample_std(x), lo, hi)


def paired_difference(
    a: Mapping[Hashable, float], b: Mapping[Hashable, float], *, ci: str = "t", level: float = LEVEL
) -> PairedDiff:
    """Mean of ``a[k] − b[k]`` over shared keys with a ``ci`` interval ("t" or "bootstrap"; a bootstrap over fewer
    than ``BOOTSTRAP_MIN_PAIRS`` pairs falls back to t, and ``ci_method`` says which was used).

    Keys with a non-finite value on either side count as unpaired.
    """
    if ci not in CI_METHODS:
        raise ValueError(f"ci must be one of {CI_METHODS}, got {ci!r}")
    ok_a = {k for k, v in a.items() if math.isfinite(v)}
    ok_b = {k for k, v in b.items() if math.isfinite(v)}
    keys = tuple(sorted(ok_a & ok_b, key=repr))
    d = np.array([a[k] - b[k] for k in keys], dtype=np.float64)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    sd = sample_std(d)
    if ci == "bootstrap" and n < BOOTSTRAP_MIN_PAIRS:
        ci = "t"  # too few pairs for a bootstrap (module docstring): the t interval, recorded as such
    lo, hi = t_interval(d, level) if ci == "t" else bootstrap_interval(d, level)
    p = math.nan
    if n >= 2 and sd > 0:
        t_stat = mean / (sd / math.sqrt(n))
        p = float(2.0 * sps.t.sf(abs(t_stat), n - 1))
    return PairedDiff(
        n=n,
        mean=mean,
        std=sd,
        ci_low=lo,
        ci_high=hi,
        p_value=p,
        ci_method=ci,
        keys=keys,
        only_a=tuple(sorted(ok_a - ok_b, key=repr)),
        only_b=tuple(sorted(ok_b - ok_a, key=repr)),
    )


def groups_differ_p(groups: Sequence[Sequence[float]]) -> float:
    """One-way ANOVA p-value: do these groups (a cell's configurations, each its seeds' values) differ by more
    than the spread within them? NaN when it cannot be told: fewer than 2 groups, or no group with 2 values."""
    clean = [_clean(g) for g in groups]
    clean = [g for g in clean if len(g)]
    if len(clean) < 2 or sum(len(g) for g in clean) <= len(clean):
        return math.nan
    if np.ptp(np.concatenate(clean)) == 0:
        return 1.0  # every value equal: nothing differs
    within = sum(float(((g - g.mean()) ** 2).sum()) for g in clean)
    if within == 0:
        return 0.0  # no seed noise at all, yet the groups differ
    return float(sps.f_oneway(*clean).pvalue)


def nanmean_rows(rows: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise mean over equal-length rows ignoring NaN (a class absent from a run's
    validation set and never predicted has IoU NaN); returns (means, finite counts per element).
    An element NaN in every row stays NaN."""
    if len(rows) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    m = np.asarray([np.asarray(r, dtype=np.float64) for r in rows])
    finite = np.isfinite(m)
    counts = finite.sum(axis=0)
    sums = np.where(finite, m, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means, counts.astype(np.int64)


POWER = 0.8  # the chance a real effect of the reported size is detected (the usual design target)


def paired_power(effect: float, sd: float, n: int, level: float = LEVEL) -> float:
    """Probability that the two-sided paired t test at ``1 − level`` with ``n`` pairs rejects 0 when the
    true mean difference is ``effect`` and the differences' sd is ``sd`` (noncentral t)."""
    df = n - 1
    t_crit = t_quantile(level, df)
    nc = effect * math.sqrt(n) / sd
    # scipy's noncentral t can return NaN far in a tail, where the probability is 0 (or 1) to fp precision
    upper = float(np.nan_to_num(sps.nct.sf(t_crit, df, nc), nan=1.0 if nc > t_crit else 0.0))
    lower = float(np.nan_to_num(sps.nct.cdf(-t_crit, df, nc), nan=0.0))
    return upper + lower


def min_detectable_effect(sd: float, n: int, level: float = LEVEL, power: float = POWER) -> float:
    """The smallest true mean difference that ``n`` paired seeds detect with probability ``power``
    (two-sided paired t test at ``1 − level``), given the differences' sd: what a gain must be to be
    seen reliably with this many seeds. NaN for fewer than 2 pairs or an unknown sd; 0 when sd is 0."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    hi = sd
    while paired_power(hi, sd, n, level) < power:
        hi *= 2
    return float(brentq(lambda d: paired_power(d, sd, n, level) - power, 0.0, hi, xtol=1e-12 * hi))


def seeds_needed(effect: float, sd: float, level: float = LEVEL, power: float = POWER, most: int = 1000) -> int | None:
    """The fewest paired seeds whose ``min_detectable_effect`` is at most ``|effect|``; None beyond ``most``."""
    if not (math.isfinite(effect) and math.isfinite(sd)) or effect == 0:
        return None
    for n in range(2, most + 1):
        if min_detectable_effect(sd, n, level, power) <= abs(effect):
            return n
    return None
