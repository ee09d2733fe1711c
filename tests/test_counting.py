"""The one-pass histogram + moments kernel for 8/16-bit pixels, against numpy oracles and against
the numpy path it replaces (which stays the fallback without the kernel)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chanstats import api, kernel
from chanstats.measure import measure_pixels
from chanstats.options import RunOptions
from chanstats.stats import counting
from chanstats.stats.nodata import parse_nodata

needs_kernel = pytest.mark.skipif(not kernel.AVAILABLE, reason="the compiled kernel is missing")
DTYPES = ["uint8", "int8", "uint16", "int16"]


def _oracle(pixels: np.ndarray, nodata: list) -> list[tuple]:
    """Per channel (kept, sum, sum of squares, min, max, {value: count}) with numpy and Python ints."""
    result = []
    for c in range(pixels.shape[2]):
        band = pixels[:, :, c].ravel().astype(np.int64)
        value = nodata[c]
        if value is not None and float(value).is_integer():
            band = band[band != int(value)]
        values, counts = np.unique(band, return_counts=True)
        squares = sum(int(v) * int(v) * int(n) for v, n in zip(values, counts))
        result.append((
            band.size, int(band.sum()), squares,
            int(band.min()) if band.size else None, int(band.max()) if band.size else None,
            dict(zip(values.tolist(), counts.tolist())),
        ))
    return result


def _counted(pixels: np.ndarray, nodata: list) -> list[tuple]:
    counted = counting.count_pixels(pixels, nodata, keep_histogram=True)
    m = counted.moments
    histograms = [dict(zip(*(a.tolist() for a in band.pairs()))) for band in counted.histogram.bands]
    return list(zip(m.counts, m.sums, m.sums_of_squares, m.mins, m.maxs, histograms))


@st.composite
def _images(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    info = np.iinfo(dtype)
    channels = draw(st.sampled_from([1, 2, 3, 4, 5, 7, 13, 17]))
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 70))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    low = draw(st.integers(int(info.min), int(info.max)))
    high = draw(st.integers(low, int(info.max)))
    pixels = rng.integers(low, high, (height, width, channels), dtype=dtype, endpoint=True)
    candidates = st.one_of(st.none(), st.integers(low - 2, high + 2), st.sampled_from([float("nan"), 0.5, 1e30]))
    nodata = draw(st.lists(candidates, min_size=channels, max_size=channels))
    if draw(st.booleans()) and height > 2:
        pixels[: height // 3] = pixels.dtype.type(low)  # a border of one value, as a nodata frame
    return pixels, nodata


@needs_kernel
@given(_images())
@settings(max_examples=200, deadline=None)
def test_counts_and_moments_equal_numpy_for_any_dtype_channels_and_nodata(image):
    pixels, nodata = image
    assert _counted(pixels, nodata) == _oracle(pixels, nodata)


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES)
def test_planar_and_strided_layouts_give_the_same_as_chunky(dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(5)
    planes = rng.integers(info.min, info.max, (6, 53, 1031), dtype=dtype, endpoint=True)
    planar = planes.transpose(1, 2, 0)  # (H, W, C) view of planar bands, as a planar TIFF reads
    assert not planar.flags.c_contiguous
    strided = np.ascontiguousarray(planar)[::2, ::3, ::2]  # neither chunky nor planar: copied
    nodata = [int(info.min), None, 3, int(info.max), 0, None]
    assert _counted(planar, nodata) == _oracle(planar, nodata)
    assert _counted(strided, nodata[::2]) == _oracle(strided, nodata[::2])


@needs_kernel
def test_extreme_values_and_large_images_stay_exact():
    # Every pixel 65535 in one channel, -32768 in a signed one: the largest squares, over more
    # pixels than one cache block of the kernel and than 2^16 (uint32 would still hold them, the
    # point is the exact sums of squares built from 128-bit partial sums).
    ones = np.full((700, 1100, 13), 65535, dtype=np.uint16)
    ones[::5, :, 3] = 0
    assert _counted(ones, [None] * 13) == _oracle(ones, [None] * 13)
    signed = np.full((300, 301, 2), -32768, dtype=np.int16)
    signed[:, ::2, 1] = 32767
    assert _counted(signed, [None, 32767]) == _oracle(signed, [None, 32767])


@needs_kernel
def test_a_channel_left_all_nodata_has_no_min_max_and_an_empty_histogram():
    pixels = np.zeros((4, 5, 2), dtype=np.uint16)
    pixels[:, :, 1] = 9
    counted = counting.count_pixels(pixels, [0, None], keep_histogram=True)
    assert counted.moments.counts == (0, 20)
    assert counted.moments.mins == (None, 9) and counted.moments.sums == (0, 180)
    assert counted.histogram.bands[0].is_empty


def _measured_json(measurement) -> str:
    moments = [m.to_json() for m in measurement.moments]
    histogram = None if measurement.histogram is None else measurement.histogram.to_json()
    return json.dumps([moments, measurement.rows, histogram, str(measurement.format)])


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES + ["uint32"])
@pytest.mark.parametrize("channels", [1, 3, 13])
@pytest.mark.parametrize("nodata", [None, "0", "none"])
@pytest.mark.parametrize("percentiles", [True, False])
def test_measure_pixels_gives_the_numpy_path_result(monkeypatch, dtype, channels, nodata, percentiles):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(channels)
    pixels = rng.integers(max(info.min, -5), min(info.max, 4000), (37, 29, channels), endpoint=True).astype(dtype)
    pixels[:3] = 0
    planar = np.ascontiguousarray(pixels.transpose(2, 0, 1)).transpose(1, 2, 0)
    option = None if nodata is None else parse_nodata(nodata)

    def both_paths(array):
        fast = measure_pixels(array, "a", nodata=option, file_nodata=0, percentiles=percentiles, epochs=2)
        with monkeypatch.context() as patch:
            patch.setattr(counting, "_histogram_moments", None)
            slow = measure_pixels(array, "a", nodata=option, file_nodata=0, percentiles=percentiles, epochs=2)
        return _measured_json(fast), _measured_json(slow)

    for array in (pixels, planar):
        fast, slow = both_paths(array)
        assert fast == slow


def _tiles(folder, count: int, dtype: str, planar: bool = False):
    import tifffile

    rng = np.random.default_rng(11)
    info = np.iinfo(dtype)
    for i in range(count):
        height, width = rng.integers(3, 30, 2)
        pixels = rng.integers(max(info.min, -300), min(info.max, 3000), (height, width, 5), endpoint=True).astype(dtype)
        pixels[0] = 0
        if planar:
            tifffile.imwrite(folder / f"t{i:03d}.tif", np.ascontiguousarray(pixels.transpose(2, 0, 1)),
                             photometric="minisblack", planarconfig="separate", extratags=[(42113, "s", 0, "0", True)])
        else:
            tifffile.imwrite(folder / f"t{i:03d}.tif", pixels, photometric="minisblack", planarconfig="contig",
                             extratags=[(42113, "s", 0, "0", True)])


@needs_kernel
@pytest.mark.parametrize(("dtype", "planar"), [("uint16", False), ("int16", True)])
def test_a_worker_pool_run_gives_the_same_bytes_with_and_without_the_kernel(tmp_path, monkeypatch, dtype, planar):
    # 45 files: more than one chunk, so two forked workers really share them (and inherit the
    # patch below, which takes the kernel away from the measurement).
    _tiles(tmp_path, 45, dtype, planar)

    def config(workers: int) -> str:
        return api.compute([str(tmp_path)], RunOptions(mode="keep", percentiles="2,50,98"), workers=workers).dumps()

    fast = config(2)
    with monkeypatch.context() as patch:
        patch.setattr(counting, "_histogram_moments", None)
        slow = config(2)
    assert fast == slow == config(0)
