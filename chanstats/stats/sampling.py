"""``--sample``: measure a seeded random subset of the images and say how far off that can be.

Which images. The first ``k`` positions of the seeded permutation
``np.random.default_rng([seed, SAMPLE_STREAM]).permutation(N)``, sorted back into listing order:
simple random sampling without replacement, reproducible, and nested (with the same seed a larger
sample contains a smaller one). ``SAMPLE_STREAM`` keeps it independent of the BatchNorm shuffle,
which draws from ``[seed, epoch]``.

Why clusters. The unit that is sampled is an image, not a pixel, and pixels of one image are
strongly correlated (one photo is dark, the next bright). A per-pixel formula (std/√pixels) would
give intervals hundreds of times too narrow. The dataset mean ``μ = Σ Sᵢ / Σ nᵢ`` (``Sᵢ`` an
image's pixel sum, ``nᵢ`` its pixel count) is a ratio of two population totals, so it is
estimated by the ratio estimator ``r = Σₛ Sᵢ / Σₛ nᵢ`` over the sampled images (exactly the
pooled mean of the sample, what the exact statistics report), with the usual linearised variance
(Cochran, *Sampling Techniques*, §6.4)::

    V(r) ≈ (1 − k/N) / (k · n̄²) · Σₛ (Sᵢ − r·nᵢ)² / (k − 1)

``n̄`` the mean pixel count of the sampled images and ``1 − k/N`` the finite-population
correction (a sample of every image has a zero-width interval: it is the exact answer).

The population variance ``σ² = Σ Σ (x − μ)² / Σ nᵢ`` is a ratio too: with
``zᵢ = M2ᵢ + nᵢ·(meanᵢ − r)²`` (an image's squared deviations about ``r``) the pooled sample
variance is ``v = Σₛ zᵢ / Σₛ nᵢ``, and because ``Σₛ zᵢ`` is stationary in ``r`` at ``r`` (its
derivative ``−2 Σₛ nᵢ (meanᵢ − r)`` is zero) the delta method gives the same formula with residuals
``zᵢ − v·nᵢ``. The std interval is ``√v ± q · se(v) / (2√v)`` (delta method again), clipped at 0.

The quantile ``q`` is Student's t with ``k − 1`` degrees of freedom rather than the normal one:
the variance is itself estimated from ``k`` clusters, and for the small samples people try first
(``--sample 50``) the normal quantile under-covers; for large ``k`` the two agree. Coverage of
these intervals is checked by simulation in ``tests/test_sampling.py``. Like every linearised
interval it is approximate: it assumes ``k`` large enough that the sample totals are roughly normal
(tens of images at least) and treats bad images left out with ``--on-error skip`` as not part of
the population.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

from ..errors import ChanstatsError
from .moments import FloatMoments, MomentsTable

SAMPLE_STREAM = 0x73616D70  # "samp": the seed-sequence key of the sampling draw
LEVEL = 0.95


@dataclass(frozen=True)
class SampleSpec:
    """``--sample``: a number of images or a percentage of the listing."""

    count: int | None = None
    percent: Fraction | None = None

    @classmethod
    def parse(cls, text: str | int | None) -> "SampleSpec | None":
        """``"500"`` → 500 images; ``"10%"`` → a tenth of the images found.

        >>> SampleSpec.parse("10%").size(1005)
        101
        >>> SampleSpec.parse(500).size(120)
        120
        """
        if text is None:
            return None
        raw = str(text).strip()
        try:
            if raw.endswith("%"):
                percent = Fraction(raw[:-1].strip())
                if not 0 < percent <= 100:
                    raise ValueError
                return cls(percent=percent)
            count = int(raw)
            if count < 1:
                raise ValueError
            return cls(count=count)
        except ValueError:
            raise ChanstatsError(
                f"--sample {raw!r}: expected a number of images (>= 1) such as 500 or a percentage in (0, 100] such as 10%"
            ) from None

    def size(self, population: int) -> int:
        """How many of ``population`` images to take: at least 1, at most all, percentages rounded
        half up."""
        if self.count is not None:
            return min(self.count, population)
        assert self.percent is not None
        return max(1, min(population, math.floor(self.percent * population / 100 + Fraction(1, 2))))

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return f"{float(self.percent):g}%"


def sample_indices(population: int, size: int, seed: int, workdir: str | None = None) -> np.ndarray:
    """Sorted listing indices of a seeded simple random sample of ``size`` out of ``population``:
    the first ``size`` of ``np.random.default_rng([seed, SAMPLE_STREAM]).permutation(population)``.

    ``permutation(n)`` shuffles ``arange(n)`` in memory (8 bytes per image). Beyond
    :data:`IN_MEMORY_POPULATION` the same shuffle, which draws the same numbers whatever the
    array's item size, runs on 4-byte integers in a memory-mapped temporary file (under
    ``workdir``, default the system's temporary folder; removed at once): the memory it takes is
    the operating system's page cache, not the process's heap, and the result is the same.

    >>> sample_indices(10, 3, seed=0).tolist() == sorted(sample_indices(10, 3, seed=0).tolist())
    True
    """
    if seed < 0:
        raise ChanstatsError(f"--seed {seed}: must be 0 or more")
    if not 0 <= size <= population:
        raise ValueError("sample size out of range")
    generator = np.random.default_rng([seed, SAMPLE_STREAM])
    if population <= IN_MEMORY_POPULATION:
        return np.sort(generator.permutation(population)[:size])
    return _shuffled_on_disk(generator, population, size, workdir)


# Below this population the permutation is drawn in memory (at most 512 KiB).
IN_MEMORY_POPULATION = 1 << 16


def _shuffled_on_disk(generator: np.random.Generator, population: int, size: int, workdir: str | None) -> np.ndarray:
    import mmap
    import tempfile

    dtype = np.dtype(np.int32 if population < 2**31 else np.int64)
    try:
        handle = tempfile.TemporaryFile(prefix="chanstats-sample-", dir=workdir)
    except OSError as error:
        where = workdir if workdir is not None else tempfile.gettempdir()
        raise ChanstatsError(f"{where}: cannot write the sample's permutation there: {error.strerror or error}") from None
    with handle:
        block = 1 << 20
        try:
            for start in range(0, population, block):
                np.arange(start, min(population, start + block), dtype=dtype).tofile(handle)
            handle.flush()
        except OSError as error:
            raise ChanstatsError(f"{handle.name}: cannot write the sample's permutation: {error.strerror or error}") from None
        with mmap.mmap(handle.fileno(), population * dtype.itemsize) as mapping:
            # A plain ndarray over the mapping (not np.memmap) takes numpy's fast in-place shuffle.
            order = np.frombuffer(mapping, dtype=dtype)
            generator.shuffle(order)
            chosen = np.sort(order[:size].astype(np.int64))
            del order  # the mapping cannot close while an array still points into it
    return chosen


@dataclass(frozen=True)
class SampleIntervals:
    """Confidence intervals (on the table's units, [0, 1] for integer images) from a sample of
    ``images`` out of ``population`` images; ``None`` bounds when fewer than 2 images were read."""

    images: int
    population: int
    level: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mean_ci: tuple[tuple[float, float], ...] | None
    std_ci: tuple[tuple[float, float], ...] | None
    quantile: float | None


def cluster_intervals(
    table: MomentsTable, population: int, level: float = LEVEL, bounds: tuple[float, float] | None = None
) -> SampleIntervals:
    """Ratio-estimator intervals for the dataset mean and population std (ddof 0), treating each
    row of ``table`` (one sampled image) as a cluster of pixels; see the module docstring.

    ``bounds``: the range the mean cannot leave ((0, 1) for integer images on the [0, 1] scale);
    mean intervals are clipped to it, which can only help coverage.
    """
    k = len(table)
    if k == 0:
        raise ValueError("empty sample")
    if k > population:
        raise ValueError("sample larger than the population")
    counts = table.channel_count().astype(np.float64)
    total = counts.sum(axis=0)
    mean = (counts * table.mean).sum(axis=0) / total
    deviation = table.mean - mean
    z = table.m2 + counts * deviation**2
    var = z.sum(axis=0) / total
    std = np.sqrt(np.maximum(var, 0.0))
    if k < 2:
        return SampleIntervals(k, population, level, _tuple(mean), _tuple(std), None, None, None)
    n_bar = total / k
    factor = (1.0 - k / population) / (k * n_bar * n_bar * (k - 1))
    var_mean = factor * ((counts * deviation) ** 2).sum(axis=0)
    var_var = factor * ((z - var * counts) ** 2).sum(axis=0)
    q = t_quantile(0.5 + level / 2, k - 1)
    half_mean = q * np.sqrt(var_mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        se_std = np.where(std > 0, np.sqrt(var_var) / (2 * std), 0.0)
    half_std = q * se_std
    return SampleIntervals(
        images=k,
        population=population,
        level=level,
        mean=_tuple(mean),
        std=_tuple(std),
        mean_ci=tuple(_clip(float(m - h), float(m + h), bounds) for m, h in zip(mean, half_mean)),
        std_ci=tuple((float(max(s - h, 0.0)), float(s + h)) for s, h in zip(std, half_std)),
        quantile=q,
    )


def cluster_table(rows_per_image: Sequence[Sequence[tuple[int, Any, Any]]], channels: int) -> MomentsTable:
    """One row per image: the Chan merge of that image's samples' (count, mean, M2) rows (an
    image seen under K augmentations is still one cluster)."""
    merged = []
    for rows in rows_per_image:
        if len(rows) == 1:
            merged.append(rows[0])
            continue
        total = FloatMoments.empty(channels)
        for count, mean, m2 in rows:
            total.merge(FloatMoments(count, np.asarray(mean, float), np.asarray(m2, float), np.zeros(channels), np.zeros(channels)))
        merged.append((total.pixels, total.mean, total.m2))
    return MomentsTable.from_rows(merged, channels)


def describe(spec: SampleSpec, intervals: SampleIntervals, seed: int) -> dict[str, Any]:
    """The ``sample`` block of the output config."""
    return {
        "images": intervals.images,
        "of": intervals.population,
        "fraction": intervals.images / intervals.population,
        "requested": str(spec),
        "seed": seed,
        "level": intervals.level,
        "method": "cluster ratio estimator over images, finite-population correction, Student t (k-1 df); std by delta method",
        "ci": {
            "mean": None if intervals.mean_ci is None else [list(pair) for pair in intervals.mean_ci],
            "std": None if intervals.std_ci is None else [list(pair) for pair in intervals.std_ci],
        },
    }


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` (integer >= 1) degrees of freedom.

    Exact for ``df <= 1000`` (bisection on the closed-form CDF of Abramowitz & Stegun 26.7.3-4),
    the Cornish-Fisher expansion (A&S 26.7.5, error below 1e-9 there) beyond.

    >>> round(t_quantile(0.975, 1), 6), round(t_quantile(0.975, 10), 6), round(t_quantile(0.975, 5000), 6)
    (12.706205, 2.228139, 1.960439)
    """
    if not 0 < p < 1 or df < 1:
        raise ValueError("need 0 < p < 1 and df >= 1")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    if p == 0.5:
        return 0.0
    if df > 1000:
        z = NormalDist().inv_cdf(p)
        g1 = (z**3 + z) / 4
        g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
        g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
        g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
        return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4
    target = 2 * p - 1  # P(|T| <= t)
    low, high = 0.0, 1.0
    while _t_central(high, df) < target:
        low, high = high, high * 2
    for _ in range(100):
        middle = (low + high) / 2
        if _t_central(middle, df) < target:
            low = middle
        else:
            high = middle
        if high - low <= 1e-15 * high:
            break
    return (low + high) / 2


def _t_central(t: float, df: int) -> float:
    """P(|T| <= t) for integer ``df`` (Abramowitz & Stegun 26.7.3 and 26.7.4)."""
    theta = math.atan(t / math.sqrt(df))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2:
        if df == 1:
            return 2 * theta / math.pi
        term = total = math.cos(theta)
        for j in range(3, df - 1, 2):  # cos θ · (1 + 2/3 cos² θ + 2·4/(3·5) cos⁴ θ + ...)
            term *= cos2 * (j - 1) / j
            total += term
        return 2 / math.pi * (theta + sin * total)
    term = total = 1.0
    for j in range(2, df - 1, 2):  # 1 + 1/2 cos² θ + 1·3/(2·4) cos⁴ θ + ...
        term *= cos2 * (j - 1) / j
        total += term
    return sin * total


def _clip(low: float, high: float, bounds: tuple[float, float] | None) -> tuple[float, float]:
    if bounds is None:
        return low, high
    return max(low, bounds[0]), min(high, bounds[1])


def _tuple(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)
