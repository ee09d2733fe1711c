"""measure_pixels: the one entry point for in-memory arrays, against numpy on the same pixels."""

import numpy as np
import pytest

from chanstats.errors import BadImageError, BadSpecError
from chanstats.measure import measure_pixels
from chanstats.stats.nodata import parse_nodata


def _kept(pixels, nodata):
    flat = pixels.reshape(-1, pixels.shape[-1])
    return [flat[:, c][flat[:, c] != nodata] for c in range(flat.shape[1])]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "uint32", "int32"])
def test_integer_arrays_are_exact_with_nodata(dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    pixels = rng.integers(max(info.min, -40000), min(info.max, 70000), (31, 17, 5), endpoint=True).astype(dtype)
    pixels[:4] = 7  # a nodata border
    pixels[10, :, 2] = 7
    measured = measure_pixels(pixels, "array", nodata=parse_nodata("7"), scale=1000)
    stats = measured.moments[0].finalize(1000)
    kept = _kept(pixels, 7)
    assert stats.pixels == tuple(v.size for v in kept)
    for c, values in enumerate(kept):
        exact = values.astype(np.float64)
        assert stats.mean_raw[c] == pytest.approx(exact.mean(), rel=1e-15, abs=1e-12)
        assert stats.std_raw[c] == pytest.approx(exact.std(), rel=1e-12)
        assert stats.mean[c] == pytest.approx(exact.mean() / 1000, rel=1e-15, abs=1e-12)
        assert (stats.min[c], stats.max[c]) == (values.min(), values.max())
    qs = (0.5, 2, 50, 99.5)
    expected = [[np.percentile(v, q, method="inverted_cdf") for v in kept] for q in qs]
    assert [list(row) for row in measured.histogram.percentiles(qs)] == expected
    assert measured.format.masked and measured.format.dtype == dtype


def test_unmasked_uint8_matches_the_image_path_and_counts_stay_one_number():
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    measured = measure_pixels(pixels, "rgb")
    stats = measured.moments[0].finalize(255)
    assert stats.pixels == 600
    assert measured.format.channels == ("R", "G", "B") and measured.format.scale == 255
    assert stats.mean == tuple(pixels.reshape(-1, 3).astype(np.float64).sum(axis=0) / (600 * 255))
    assert measured.rows[0][0] == 600


def test_float_arrays_need_nodata_nan_for_nan_and_then_skip_it():
    pixels = np.random.default_rng(1).normal(5, 2, (40, 40, 2)).astype(np.float32)
    pixels[0, :5, 1] = np.nan
    with pytest.raises(BadImageError, match=r"dem\.npy.*band 2 has 5 NaN pixels"):
        measure_pixels(pixels, "dem.npy")
    measured = measure_pixels(pixels, "dem.npy", nodata=parse_nodata("nan"), scale=10)
    stats = measured.moments[0].finalize(10)
    band = pixels[:, :, 1].astype(np.float64)
    band = band[~np.isnan(band)]
    assert stats.pixels == (1600, 1595)
    assert stats.mean_raw[1] == pytest.approx(band.mean(), rel=1e-14)
    assert stats.std[1] == pytest.approx(band.std() / 10, rel=1e-12)
    median = measured.histogram.percentiles([50])[0][1]
    truth = np.percentile(band, 50, method="inverted_cdf")
    assert abs(median - truth) <= measured.histogram.relative_error * abs(truth)


def test_infinite_values_are_a_bad_image():
    pixels = np.ones((4, 4), dtype=np.float64)
    pixels[1, 1] = np.inf
    with pytest.raises(BadImageError, match="infinite"):
        measure_pixels(pixels, "x")


def test_wrong_channel_names_or_nodata_count_or_dtype_are_refused():
    pixels = np.zeros((2, 2, 3), dtype=np.uint16)
    with pytest.raises(BadSpecError, match="--channels names 2 channels but the image has 3"):
        measure_pixels(pixels, "x", channels=["a", "b"])
    with pytest.raises(BadSpecError, match="--nodata gives 2 values"):
        measure_pixels(pixels, "x", nodata=parse_nodata("0,1"))
    with pytest.raises(BadImageError, match="int64 pixels"):
        measure_pixels(pixels.astype(np.int64), "x")


def test_big_endian_arrays_are_measured_in_their_values():
    pixels = np.arange(12, dtype=">u2").reshape(2, 2, 3) * 1000
    stats = measure_pixels(pixels, "be").moments[0].finalize(65535)
    assert stats.max == (9000.0, 10000.0, 11000.0)
