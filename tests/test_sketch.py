"""The float quantile sketch: its stated bound against numpy, merging, determinism."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest

from chanstats.stats.sketch import QuantileSketch

QS = tuple(np.round(np.arange(0, 100.01, 0.5), 1).tolist()) + (0.1, 0.05, 99.9, 99.95, 33.3)


def distributions(rng, n):
    """Values a float raster can hold: symmetric, heavy-tailed, bounded, with ties and zeros."""
    mixture = np.concatenate([rng.normal(-50, 5, n // 2), np.zeros(n // 4), rng.exponential(1e-4, n - n // 2 - n // 4)])
    return {
        "normal": rng.normal(0.0, 1.0, n),
        "lognormal": rng.lognormal(2.0, 3.0, n),
        "uniform_float32": rng.uniform(0.0, 10000.0, n).astype(np.float32),
        "mixed_signs_zeros": rng.permutation(mixture),
        "elevation_like": np.round(rng.normal(1200.0, 800.0, n), 1),
    }


def worst_relative_error(estimates, exact):
    estimates, exact = np.asarray(estimates, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    error = np.abs(estimates - exact)
    scale = np.abs(exact)
    assert np.all(error[scale == 0] == 0)
    return float(np.max(error[scale > 0] / scale[scale > 0]))


def sketch_in_parts(values, parts, mantissa_bits=10):
    """One sketch per part (as workers would), merged in order into an empty one."""
    merged = QuantileSketch.empty(1, mantissa_bits)
    for chunk in np.array_split(values, parts):
        merged.merge(QuantileSketch.empty(1, mantissa_bits).update(chunk.reshape(1, -1)))
    return merged


@pytest.mark.parametrize(
    "name",
    [
        "normal",
        "mixed_signs_zeros",
        pytest.param("lognormal", marks=pytest.mark.slow),
        pytest.param("uniform_float32", marks=pytest.mark.slow),
        pytest.param("elevation_like", marks=pytest.mark.slow),
    ],
)
def test_bound_holds_on_a_million_values_merged_from_fifty_sketches(name):
    rng = np.random.default_rng(2024)
    values = distributions(rng, 1_000_000)[name]
    sketch = sketch_in_parts(values, 50)
    exact = np.percentile(values, QS, method="inverted_cdf")
    estimates = [row[0] for row in sketch.percentiles(QS)]
    assert worst_relative_error(estimates, exact) <= sketch.relative_error
    assert sketch.counts() == [values.size]
    assert (estimates[0], estimates[QS.index(100.0)]) == (values.min(), values.max())


def test_the_bound_is_tight_enough_to_be_tested():
    # With 4 mantissa bits the stated bound is 1/32: it must hold, and the sketch must really be
    # approximate (errors above a quarter of the bound), or the test above would prove nothing.
    rng = np.random.default_rng(9)
    values = rng.lognormal(0.0, 1.0, 200_000)
    sketch = sketch_in_parts(values, 7, mantissa_bits=4)
    exact = np.percentile(values, QS, method="inverted_cdf")
    worst = worst_relative_error([row[0] for row in sketch.percentiles(QS)], exact)
    assert sketch.relative_error / 4 < worst <= sketch.relative_error == 1 / 32


def test_merge_order_and_grouping_do_not_change_a_byte():
    rng = np.random.default_rng(1)
    values = distributions(rng, 60_000)["mixed_signs_zeros"]
    parts = [QuantileSketch.empty(1).update(chunk.reshape(1, -1)) for chunk in np.array_split(values, 50)]
    reference = json.dumps(QuantileSketch.empty(1).update(values.reshape(1, -1)).to_json())
    shuffler = random.Random(8)
    for _ in range(3):
        groups = [pickle.loads(pickle.dumps(part)) for part in parts]
        shuffler.shuffle(groups)
        while len(groups) > 1:
            a = groups.pop(shuffler.randrange(len(groups)))
            b = groups.pop(shuffler.randrange(len(groups)))
            groups.append(a.merge(b))
        assert json.dumps(groups[0].to_json()) == reference


def test_json_round_trip_is_lossless_and_deterministic():
    rng = np.random.default_rng(4)
    pixels = rng.normal(size=(30, 40, 3)).astype(np.float32)
    sketch = QuantileSketch.empty(3).update(pixels)
    text = json.dumps(sketch.to_json())
    again = QuantileSketch.from_json(json.loads(text))
    assert again == sketch and json.dumps(again.to_json()) == text
    assert again.percentiles(QS) == sketch.percentiles(QS)
    assert text == json.dumps(QuantileSketch.empty(3).update(pixels.copy()).to_json())


def test_nan_is_skipped_and_masked_pixels_are_excluded_per_channel():
    rng = np.random.default_rng(12)
    pixels = rng.normal(10.0, 2.0, size=(50, 60, 2))
    pixels[rng.random(pixels.shape) < 0.1] = np.nan
    mask = rng.random(pixels.shape) < 0.2
    sketch = QuantileSketch.empty(2).update(pixels, mask)
    for channel in range(2):
        kept = pixels[:, :, channel][~mask[:, :, channel]]
        kept = kept[~np.isnan(kept)]
        assert sketch.counts()[channel] == kept.size
        exact = np.percentile(kept, QS, method="inverted_cdf")
        estimates = [row[channel] for row in sketch.percentiles(QS)]
        assert worst_relative_error(estimates, exact) <= sketch.relative_error


def test_infinity_is_refused_and_empty_channels_have_no_percentiles():
    with pytest.raises(ValueError, match="infinite"):
        QuantileSketch.empty(1).update(np.array([[1.0, np.inf]]))
    sketch = QuantileSketch.empty(2).update(np.array([[[1.0, np.nan]]]))
    assert sketch.finalize([50]).percentiles == ((1.0, None),)
    assert sketch.finalize([50]).mins == (1.0, None)


def test_extreme_magnitudes_stay_within_the_bound():
    values = np.array([-np.finfo(np.float64).max, -1e-300, -0.0, 0.0, 5e-324, 1e-310, 1.0, np.finfo(np.float64).max])
    sketch = QuantileSketch.empty(1).update(values.reshape(1, -1))
    qs = [12.5 * k for k in range(9)]
    exact = np.percentile(values, qs, method="inverted_cdf")
    estimates = np.array([row[0] for row in sketch.percentiles(qs)])
    normal = np.abs(exact) >= np.finfo(np.float64).tiny
    assert np.all(np.abs(estimates - exact)[normal] <= sketch.relative_error * np.abs(exact)[normal])
    assert np.all(np.abs(estimates - exact)[~normal] <= 2.0 ** -(1022 + 10))
    assert estimates[exact == 0].tolist() == [0.0] * int(np.sum(exact == 0))
