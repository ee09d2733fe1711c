"""Nodata parsing, masks and masked moments, against numpy and exact Python-integer oracles."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from chanstats.errors import BadSpecError
from chanstats.stats.histogram import ChannelHistogram
from chanstats.stats.nodata import (
    BandNodata,
    NodataOption,
    masked_float_moments,
    masked_integer_moments,
    nonfinite_reason,
    parse_nodata,
)

INTEGER_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32")


@pytest.mark.parametrize(
    "text, values",
    [("0", (0,)), ("65535", (65535,)), ("0,0,65535", (0, 0, 65535)), (" -9999 ", (-9999,)), ("1e4", (10000,)), ("0.5", (0.5,))],
)
def test_parse_numbers(text, values):
    parsed = parse_nodata(text)
    assert parsed.values == values
    assert all(type(a) is type(b) for a, b in zip(parsed.values, values))


def test_parse_nan_none_and_float32_limit():
    assert math.isnan(parse_nodata("NaN").values[0])
    assert parse_nodata("none").is_none and str(parse_nodata("None")) == "none"
    assert parse_nodata("-3.4028234663852886e+38").values == (-3.4028234663852886e38,)
    assert str(parse_nodata("0,nan")) == "0,nan"


@pytest.mark.parametrize("text", ["", "abc", "0,,1", "1;2", "nodata"])
def test_parse_refuses_other_text_with_one_line(text):
    with pytest.raises(BadSpecError, match="--nodata .* is not a number, nan or none"):
        parse_nodata(text)


def test_precedence_option_then_file_then_nothing():
    assert BandNodata.resolve(parse_nodata("7"), file_value=0, bands=2).values == (7, 7)
    assert BandNodata.resolve(parse_nodata("none"), file_value=0, bands=2).values == (None, None)
    assert BandNodata.resolve(None, file_value=0, bands=3).values == (0, 0, 0)
    assert not BandNodata.resolve(None, file_value=None, bands=3).active
    assert BandNodata.resolve(parse_nodata("1,2,3"), None, 3).values == (1, 2, 3)


def test_a_count_of_values_other_than_one_or_the_bands_is_a_usage_error():
    with pytest.raises(BadSpecError, match="--nodata gives 2 values but the image has 3 bands"):
        BandNodata.resolve(NodataOption((0, 1)), None, 3)


def test_mask_per_band_values_in_the_pixels_own_type():
    pixels = np.array([[[0, 65535, 7], [1, 2, 65535]]], dtype=np.uint16)
    mask = BandNodata((0, 65535, None)).mask(pixels)
    assert mask.tolist() == [[[True, True, False], [False, False, False]]]
    assert BandNodata((None, None, None)).mask(pixels) is None


@pytest.mark.parametrize("value", [-9999, 0.5, float("nan"), 70000])
def test_a_value_the_integer_type_cannot_hold_matches_nothing(value):
    pixels = np.array([[0, 1, 65535]], dtype=np.uint16)
    assert not BandNodata((value,)).mask(pixels).any()


def test_float_nodata_is_compared_as_the_band_type_like_gdal():
    pixels = np.array([[np.float32(0.1), -np.finfo(np.float32).max, 3.0, np.nan]], dtype=np.float32)
    assert BandNodata((0.1,)).mask(pixels)[..., 0].tolist() == [[True, False, False, False]]
    assert BandNodata((-3.4028234663852886e38,)).mask(pixels)[..., 0].tolist() == [[False, True, False, False]]
    assert BandNodata((float("nan"),)).mask(pixels)[..., 0].tolist() == [[False, False, False, True]]
    assert not BandNodata((-1e300,)).mask(pixels).any()


def exact_oracle(pixels, mask):
    """Per channel (count, sum, sum of squares, min, max) with Python integers."""
    result = []
    for c in range(pixels.shape[2]):
        kept = [int(v) for v in pixels[:, :, c][~mask[:, :, c]].tolist()]
        result.append((len(kept), sum(kept), sum(v * v for v in kept), min(kept, default=None), max(kept, default=None)))
    return result


@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
def test_masked_integer_moments_are_exact_at_the_extremes_of_each_type(dtype, rng):
    info = np.iinfo(dtype)
    pixels = rng.integers(info.min, info.max, size=(40, 30, 3), dtype=dtype, endpoint=True)
    pixels[:10, :, 0] = info.max  # squares that overflow 64 bits when summed naively
    pixels[:10, :, 1] = info.min
    mask = rng.random(pixels.shape) < 0.25
    mask[:, :, 2] = True  # one channel with nothing left
    moments = masked_integer_moments(pixels, mask)
    columns = list(zip(*exact_oracle(pixels, mask)))
    assert (moments.counts, moments.sums, moments.sums_of_squares, moments.mins, moments.maxs) == tuple(
        tuple(column) for column in columns
    )


def test_masked_integer_moments_without_mask_and_two_dimensional_input():
    pixels = np.array([[4294967295, 4294967295], [0, 1]], dtype=np.uint32)
    moments = masked_integer_moments(pixels)
    assert moments.counts == (4,) and moments.sums == (2 * 4294967295 + 1,)
    assert moments.sums_of_squares == (2 * 4294967295**2 + 1,)


def test_histogram_and_moments_agree_on_the_same_mask(rng):
    pixels = rng.integers(0, 4096, size=(50, 40, 4), dtype=np.uint16)
    pixels[rng.random(pixels.shape) < 0.1] = 0
    mask = BandNodata.resolve(parse_nodata("0"), None, 4).mask(pixels)
    histogram = ChannelHistogram.empty(4).update(pixels, mask)
    moments = masked_integer_moments(pixels, mask)
    assert tuple(histogram.counts()) == moments.counts
    assert tuple(histogram.sums()) == moments.sums
    assert tuple(histogram.sums_of_squares()) == moments.sums_of_squares


def test_masked_float_moments_match_an_exact_rational_oracle_on_nearly_equal_values(rng):
    # Large mean, tiny spread: where E[x²] − E[x]² in floating point loses every digit.
    pixels = (1e9 + rng.normal(0.0, 1e-3, size=(30, 20, 2))).astype(np.float64)
    mask = rng.random(pixels.shape) < 0.3
    moments = masked_float_moments(pixels, mask)
    for c in range(2):
        kept = [Fraction(v) for v in pixels[:, :, c][~mask[:, :, c]].tolist()]
        mean = sum(kept) / len(kept)
        m2 = sum((v - mean) ** 2 for v in kept)
        assert moments.counts[c] == len(kept)
        assert moments.means[c] == pytest.approx(float(mean), rel=1e-15)
        assert moments.m2s[c] == pytest.approx(float(m2), rel=1e-6)


def test_masked_float_moments_on_a_float32_raster_with_nan_nodata(rng):
    pixels = rng.normal(300.0, 50.0, size=(25, 35, 2)).astype(np.float32)
    pixels[:4] = np.nan
    pixels[10:12, :, 1] = np.nan
    mask = BandNodata.resolve(parse_nodata("nan"), None, 2).mask(pixels)
    assert nonfinite_reason(pixels, mask) is None
    moments = masked_float_moments(pixels, mask)
    for c in range(2):
        band = pixels[:, :, c].astype(np.float64)
        assert moments.counts[c] == int(np.sum(~np.isnan(band)))
        assert moments.means[c] == pytest.approx(np.nanmean(band), rel=1e-13)
        assert moments.m2s[c] == pytest.approx(np.nanvar(band) * moments.counts[c], rel=1e-10)
        assert (moments.mins[c], moments.maxs[c]) == (np.nanmin(band), np.nanmax(band))
    assert moments.counts[0] != moments.counts[1]


def test_empty_channel_float_moments():
    moments = masked_float_moments(np.ones((2, 2, 1)), np.ones((2, 2), bool))
    assert (moments.counts, moments.means, moments.m2s, moments.mins) == ((0,), (None,), (0.0,), (None,))


def test_nonfinite_values_not_excluded_make_a_reason():
    pixels = np.zeros((3, 3, 2), dtype=np.float32)
    pixels[0, 0, 1] = np.nan
    assert nonfinite_reason(pixels) == "band 2 has 1 NaN pixel (use --nodata nan to leave NaN out)"
    pixels[1, 1, 0] = -np.inf
    nan_excluded = BandNodata((float("nan"), float("nan"))).mask(pixels)
    assert nonfinite_reason(pixels, nan_excluded) == "band 1 has 1 infinite pixel"
    assert nonfinite_reason(pixels, BandNodata((-np.inf, float("nan"))).mask(pixels)) is None
    assert nonfinite_reason(np.zeros((2, 2), np.uint16)) is None


def test_sentinel2_like_geotiff_end_to_end(tmp_path, rng):
    """A 13-band uint16 GeoTIFF with a nodata border: read, mask from its tag, measure."""
    tifffile = pytest.importorskip("tifffile")
    from chanstats.decoding.raster import read_raster

    pixels = rng.integers(1, 10001, size=(60, 50, 13), dtype=np.uint16)
    pixels[:5] = 0
    pixels[:, -7:] = 0
    pixels[20:30, 10:20, 3] = 0  # one band has extra nodata
    path = tmp_path / "tile.tif"
    planes = np.moveaxis(pixels, 2, 0)  # planar files are written band by band
    tifffile.imwrite(path, planes, photometric="minisblack", planarconfig="separate", extratags=[(42113, "s", 0, "0", True)])
    raster = read_raster(path)
    mask = BandNodata.resolve(None, raster.nodata, raster.bands).mask(raster.pixels)
    moments = masked_integer_moments(raster.pixels, mask)
    histogram = ChannelHistogram.empty(13).update(raster.pixels, mask)
    for c in range(13):
        valid = pixels[:, :, c][pixels[:, :, c] != 0].astype(np.int64)
        assert moments.counts[c] == valid.size
        assert moments.sums[c] / moments.counts[c] == pytest.approx(valid.mean(), rel=1e-15)
        expected = np.percentile(valid, [0.5, 2, 50, 98, 99.5], method="inverted_cdf").astype(int).tolist()
        assert [row[c] for row in histogram.percentiles([0.5, 2, 50, 98, 99.5])] == expected
    assert moments.counts[3] == moments.counts[0] - 100
    # --nodata none keeps the zeros.
    assert BandNodata.resolve(parse_nodata("none"), raster.nodata, 13).mask(raster.pixels) is None
