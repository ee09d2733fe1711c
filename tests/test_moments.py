"""Accumulators against independent oracles: Python integers, fractions and decimal square roots."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chanstats.stats.moments import (
    FloatMoments,
    IntegerMoments,
    MomentsTable,
    float_moments_of,
    integer_moments_from_histogram,
    integer_moments_of,
    integer_sample_row,
    sqrt_ratio_to_float,
)


def decimal_sqrt_ratio(numerator: int, denominator: int) -> float:
    """Oracle: sqrt(numerator/denominator) to 80 digits, then one correctly rounded conversion."""
    with localcontext() as context:
        context.prec = 80
        return float((Decimal(numerator) / Decimal(denominator)).sqrt())


def oracle_stats(values: list[int]) -> tuple[Fraction, Fraction]:
    """Exact mean and population variance of a list of integers."""
    n = len(values)
    mean = Fraction(sum(values), n)
    variance = sum((Fraction(v) - mean) ** 2 for v in values) / n
    return mean, variance


@given(st.integers(0, 10**40), st.integers(1, 10**40))
@settings(max_examples=300, deadline=None)
def test_sqrt_ratio_is_correctly_rounded(numerator, denominator):
    assert sqrt_ratio_to_float(numerator, denominator) == decimal_sqrt_ratio(numerator, denominator)


def test_sqrt_ratio_of_perfect_squares_is_exact():
    assert sqrt_ratio_to_float(9, 16) == 0.75
    assert sqrt_ratio_to_float(1, 510 * 510) == 1 / 510


@given(st.lists(st.integers(0, 255), min_size=1, max_size=200))
@settings(max_examples=200, deadline=None)
def test_integer_moments_match_fraction_oracle(values):
    moments = integer_moments_of(np.array(values, dtype=np.uint8).reshape(-1, 1))
    stats = moments.finalize(scale=255)
    mean, variance = oracle_stats(values)
    assert stats.mean_raw[0] == float(mean)
    assert stats.mean[0] == float(mean / 255)
    assert stats.std_raw[0] == decimal_sqrt_ratio(variance.numerator, variance.denominator)
    scaled = variance / 255**2
    assert stats.std[0] == decimal_sqrt_ratio(scaled.numerator, scaled.denominator)
    assert stats.min[0] == min(values) and stats.max[0] == max(values)


@given(st.lists(st.lists(st.integers(0, 65535), min_size=1, max_size=30), min_size=1, max_size=8), st.randoms())
@settings(max_examples=100, deadline=None)
def test_integer_merge_is_exact_in_any_order(groups, random):
    parts = [integer_moments_of(np.array(g, dtype=np.uint16).reshape(-1, 1)) for g in groups]
    forward = IntegerMoments.empty(1)
    for part in parts:
        forward.merge(part)
    random.shuffle(parts)
    shuffled = IntegerMoments.empty(1)
    for part in parts:
        shuffled.merge(part)
    everything = integer_moments_of(np.array([v for g in groups for v in g], dtype=np.uint16).reshape(-1, 1))
    assert forward == shuffled == everything


@given(
    st.lists(
        st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=30), min_size=1, max_size=8
    ),
    st.randoms(),
)
@settings(max_examples=100, deadline=None)
def test_float_merge_order_independent_and_matches_pooled(groups, random):
    parts = [float_moments_of(np.array(g).reshape(-1, 1)) for g in groups]
    random.shuffle(parts)
    merged = FloatMoments.empty(1)
    for part in parts:
        merged.merge(part)
    pooled = np.array([v for g in groups for v in g], dtype=np.float64)
    exact_mean = Fraction(math.fsum(pooled)) / len(pooled)  # fsum is exact here before rounding
    assert merged.pixels == len(pooled)
    assert merged.mean[0] == pytest.approx(float(exact_mean), rel=1e-12, abs=1e-9)
    assert merged.finalize().std[0] == pytest.approx(float(np.std(pooled)), rel=1e-9, abs=1e-9)


def test_histogram_moments_equal_direct_moments(rng):
    pixels = rng.integers(0, 256, size=(31, 17, 3), dtype=np.uint8)
    histogram = np.stack([np.bincount(pixels[..., c].ravel(), minlength=256) for c in range(3)])
    assert integer_moments_from_histogram(histogram) == integer_moments_of(pixels)


def test_alternating_254_255_has_std_exactly_half():
    pixels = np.tile(np.array([254, 255], dtype=np.uint8), 5000).reshape(100, 100)
    stats = integer_moments_of(pixels).finalize(scale=255)
    assert stats.mean_raw == (254.5,)
    assert stats.std_raw == (0.5,)
    assert stats.std == (0.5 / 255,)


def test_rare_outliers_on_a_large_constant_image():
    """4 Mpx of 204 with one pixel in 1000 at 205: float32 E[x²]−E[x]² cannot resolve this."""
    pixels = np.full(4_000_000, 204, dtype=np.uint8)
    pixels[::1000] = 205
    stats = integer_moments_of(pixels.reshape(2000, 2000)).finalize(scale=255)
    k, n = 4000, 4_000_000
    mean = Fraction(204 * n + k, n)
    variance = Fraction(k, n) - Fraction(k, n) ** 2  # Bernoulli(p = k/n) spread of 1 level
    assert stats.mean_raw[0] == float(mean)
    assert stats.std_raw[0] == decimal_sqrt_ratio(variance.numerator, variance.denominator)
    # The naive recipe really is wrong here, which is what makes this case worth testing.
    x = pixels.astype(np.float32)
    naive_variance = float(np.mean(x * x, dtype=np.float32) - np.mean(x, dtype=np.float32) ** 2)
    assert abs(naive_variance - float(variance)) > 0.1 * float(variance)


def test_integer_moments_json_roundtrip():
    moments = integer_moments_of(np.array([[[1, 2, 65535]]], dtype=np.uint16))
    assert IntegerMoments.from_json(moments.to_json()) == moments


def test_sample_row_and_table_totals_match_pooled_pixels(rng):
    images = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in [(5, 7), (9, 4), (3, 3)]]
    rows = [integer_sample_row(integer_moments_of(image), 255) for image in images]
    table = MomentsTable.from_rows(rows, 3)
    pooled = np.concatenate([image.reshape(-1, 3) for image in images]).astype(np.float64) / 255
    totals = table.totals()
    assert totals.pixels == pooled.shape[0]
    np.testing.assert_allclose(totals.mean, pooled.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(np.sqrt(totals.m2 / totals.pixels), pooled.std(axis=0), rtol=1e-12)


def test_merging_different_channel_counts_is_refused():
    with pytest.raises(ValueError):
        integer_moments_of(np.zeros((2, 2, 3), np.uint8)).merge(integer_moments_of(np.zeros((2, 2), np.uint8)))
