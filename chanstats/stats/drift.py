"""Distances between two distributions, as ``check`` uses them to call drift.

Histograms are compared bin by bin on the same bins (counts of any scale: each is normalized to
proportions first); per-image columns (a value per image) by the two-sample Kolmogorov–Smirnov
statistic. Everything is float64 numpy, no scipy: the functions agree with
``scipy.stats.wasserstein_distance`` (with weights), the square of
``scipy.spatial.distance.jensenshannon(p, q, base=2)`` and ``scipy.stats.ks_2samp(a, b,
method="exact")``, which the tests check.
"""

from __future__ import annotations

import math

import numpy as np

# Proportion that stands in for an empty bin in PSI (whose terms are infinite otherwise): the
# value Evidently and most PSI write-ups use.
PSI_EMPTY_BIN = 1e-4


def proportions(counts) -> np.ndarray:
    """``counts`` (any non-negative numbers) divided by their sum, as float64."""
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    if not total > 0:
        raise ValueError("a histogram without any count has no distribution")
    return values / total


def wasserstein_1(positions, counts_p, counts_q) -> float:
    """Earth mover's distance between two histograms on the same sorted ``positions``: the area
    between their cumulative distributions, in the units of ``positions``.

    >>> wasserstein_1([0.0, 1.0], [1, 0], [0, 1])
    1.0
    """
    x = np.asarray(positions, dtype=np.float64)
    cdf_gap = np.abs(np.cumsum(proportions(counts_p)) - np.cumsum(proportions(counts_q)))[:-1]
    return float(np.sum(cdf_gap * np.diff(x)))


def js_divergence(counts_p, counts_q) -> float:
    """Jensen–Shannon divergence in bits (log base 2), between 0 (same proportions) and 1 (no bin
    in common). Its square root is the Jensen–Shannon *distance* that
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` returns.

    >>> js_divergence([1, 0], [0, 1]), js_divergence([1, 3], [2, 6])
    (1.0, 0.0)
    """
    p, q = proportions(counts_p), proportions(counts_q)
    m = (p + q) / 2
    return float(max(0.0, (_kl_bits(p, m) + _kl_bits(q, m)) / 2))


def _kl_bits(p: np.ndarray, m: np.ndarray) -> float:
    present = p > 0
    return float(np.sum(p[present] * np.log2(p[present] / m[present])))


def psi(counts_expected, counts_actual, empty_bin: float = PSI_EMPTY_BIN) -> float:
    """Population stability index ``Σ (a − e)·ln(a / e)`` over the bins, ``e`` the recorded
    (expected) and ``a`` the current proportions; an empty bin counts as ``empty_bin`` on that side.
    Rules of thumb: below 0.1 stable, 0.1–0.25 moderate shift, above 0.25 a large one.

    >>> round(psi([50, 50], [40, 60]), 6)
    0.040547
    """
    e, a = proportions(counts_expected), proportions(counts_actual)
    used = (e > 0) | (a > 0)
    e, a = np.maximum(e[used], empty_bin), np.maximum(a[used], empty_bin)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_2samp(sample_a, sample_b) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov test: ``(D, p)``. ``D`` is the largest gap between the two
    empirical distribution functions; ``p`` the exact two-sided p-value (:func:`ks_exact_pvalue`),
    as ``scipy.stats.ks_2samp(a, b, method="exact")`` computes them.

    >>> ks_2samp([1, 2, 3], [1, 2, 3])
    (0.0, 1.0)
    """
    a = np.sort(np.asarray(sample_a, dtype=np.float64))
    b = np.sort(np.asarray(sample_b, dtype=np.float64))
    if a.size == 0 or b.size == 0:
        raise ValueError("the KS test needs at least one value on each side")
    both = np.concatenate([a, b])
    # Integer numerators over n·m: the gap is exact, with no rounding of i/n − j/m.
    gap = np.abs(np.searchsorted(a, both, side="right") * b.size - np.searchsorted(b, both, side="right") * a.size)
    steps = int(gap.max())
    return steps / (a.size * b.size), ks_exact_pvalue(a.size, b.size, steps)


def ks_exact_pvalue(n: int, m: int, steps: int) -> float:
    """``P(D ≥ steps / (n·m))`` for two samples of sizes ``n`` and ``m`` from one continuous
    distribution: one minus the share of the C(n+m, n) monotone lattice paths from (0, 0) to
    (n, m) that keep ``|i·m − j·n| < steps`` (the paths the merged sorted samples can take).
    O(n·m), rows rescaled to stay in float range; below 1e-8, where the subtraction loses digits,
    Kolmogorov's limiting distribution (with Stephens' correction) takes over.

    >>> round(ks_exact_pvalue(3, 3, 9), 4)  # D = 1: the samples do not interleave, 2 of 20 paths
    0.1
    """
    if steps <= 0:
        return 1.0
    columns = np.arange(m + 1, dtype=np.int64)
    row = (columns * n < steps).astype(np.float64)  # i = 0: j·n < steps, from j = 0 on
    log_scale = 0.0
    for i in range(1, n + 1):
        allowed = np.flatnonzero(np.abs(i * m - columns * n) < steps)
        new = np.zeros(m + 1)
        if allowed.size:
            low, high = int(allowed[0]), int(allowed[-1]) + 1
            new[low:high] = np.cumsum(row[low:high])  # a contiguous band: each cell sums those above-left
        peak = new.max()
        if peak == 0:
            return 1.0  # no path keeps within: D ≥ steps always
        row = new / peak
        log_scale += math.log(peak)
    if row[m] == 0:
        return 1.0
    log_paths = math.log(row[m]) + log_scale
    log_all = math.lgamma(n + m + 1) - math.lgamma(n + 1) - math.lgamma(m + 1)
    p_value = 1.0 - math.exp(log_paths - log_all)
    if p_value < 1e-8:
        effective = math.sqrt(n * m / (n + m))
        return kolmogorov_survival((effective + 0.12 + 0.11 / effective) * steps / (n * m))
    return min(1.0, max(0.0, p_value))
def kolmogorov_survival(x: float) -> float:
    """``P(K > x)`` for Kolmogorov's distribution: ``2 Σ (−1)^(k−1) exp(−2k²x²)``.

    >>> round(kolmogorov_survival(1.358), 3)
    0.05
    """
    if x < 0.2:  # the series converges slowly there, and the value is 1 to 1e-9
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * x * x) for k in range(1, 101))
    return min(1.0, max(0.0, 2 * total))
