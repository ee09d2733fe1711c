"""Exact histograms and percentiles against numpy on the pooled pixels."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest

from chanstats.stats.histogram import DEFAULT_PERCENTILES, DENSE_SPAN, ChannelHistogram, percentile_rank

QS = (0, 0.1, 0.5, 1, 2, 5, 25, 33.3, 50, 75, 98, 99, 99.5, 99.9, 100)
DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32")


def random_images(rng, dtype, count, channels, wide=False):
    """Images of one integer dtype with random sizes and value ranges (narrow or full)."""
    info = np.iinfo(dtype)
    images = []
    for _ in range(count):
        if wide:
            low, high = info.min, info.max
        else:
            centre = int(rng.integers(info.min, info.max, endpoint=True))
            width = int(rng.integers(1, 300))
            low, high = max(info.min, centre - width), min(info.max, centre + width)
        shape = (int(rng.integers(1, 20)), int(rng.integers(1, 20)), channels)
        images.append(rng.integers(low, high, size=shape, dtype=dtype, endpoint=True))
    return images


def pooled(images, masks=None):
    """Per channel, the 1-D arrays of every pixel kept (the oracle's input)."""
    channels = images[0].shape[2]
    result = []
    for c in range(channels):
        parts = []
        for i, image in enumerate(images):
            band = image[:, :, c]
            if masks is not None:
                mask = masks[i] if masks[i].ndim == 2 else masks[i][:, :, c]
                band = band[~mask]
            parts.append(band.ravel().astype(np.int64))
        result.append(np.concatenate(parts))
    return result


def oracle_percentiles(bands, qs):
    return tuple(
        tuple(int(np.percentile(band, q, method="inverted_cdf")) if band.size else None for band in bands)
        for q in qs
    )


def histogram_of(images, masks=None):
    histogram = ChannelHistogram.empty(images[0].shape[2])
    for i, image in enumerate(images):
        histogram.update(image, None if masks is None else masks[i])
    return histogram


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wide", [False, True])
def test_percentiles_sums_and_extremes_match_numpy(dtype, wide):
    rng = np.random.default_rng(abs(hash((dtype, wide))) % 2**32)
    for _ in range(5):
        images = random_images(rng, dtype, count=int(rng.integers(1, 8)), channels=3, wide=wide)
        histogram = histogram_of(images)
        bands = pooled(images)
        assert histogram.percentiles(QS) == oracle_percentiles(bands, QS)
        stats = histogram.finalize(QS)
        assert stats.pixels == tuple(band.size for band in bands)
        assert stats.sums == tuple(sum(band.tolist()) for band in bands)
        assert stats.sums_of_squares == tuple(sum(v * v for v in band.tolist()) for band in bands)
        assert stats.mins == tuple(int(band.min()) for band in bands)
        assert stats.maxs == tuple(int(band.max()) for band in bands)


@pytest.mark.parametrize("dtype", DTYPES)
def test_merge_order_does_not_change_a_byte(dtype):
    rng = np.random.default_rng(7)
    images = random_images(rng, dtype, count=12, channels=2, wide=dtype in ("uint32", "int32"))
    parts = [ChannelHistogram.empty(2).update(image) for image in images]
    reference = json.dumps(histogram_of(images).to_json())
    shuffler = random.Random(3)
    for _ in range(4):
        order = list(range(len(parts)))
        shuffler.shuffle(order)
        # A tree of merges in a random order, as workers and shards would produce.
        groups = [pickle.loads(pickle.dumps(parts[i])) for i in order]
        while len(groups) > 1:
            a, b = groups.pop(shuffler.randrange(len(groups))), groups.pop(shuffler.randrange(len(groups)))
            groups.append(a.merge(b))
        assert json.dumps(groups[0].to_json()) == reference
    assert histogram_of(images).percentiles(QS) == oracle_percentiles(pooled(images), QS)


def test_merging_dense_histograms_into_a_wide_range_goes_sparse_and_back():
    low = ChannelHistogram.empty(1).update(np.array([[5, 6]], dtype=np.int32))
    high = ChannelHistogram.empty(1).update(np.array([[5 + DENSE_SPAN, 7 + DENSE_SPAN]], dtype=np.int32))
    both = low.merge(high)
    assert "values" in both.to_json()["channels"][0]
    assert both.percentiles([0, 50, 100]) == ((5,), (6,), (7 + DENSE_SPAN,))
    # The same values counted at once give the identical canonical form.
    direct = ChannelHistogram.empty(1).update(np.array([[5, 6, 5 + DENSE_SPAN, 7 + DENSE_SPAN]], dtype=np.int32))
    assert both == direct


def test_json_and_pickle_round_trips_are_lossless():
    rng = np.random.default_rng(11)
    for dtype in DTYPES:
        histogram = histogram_of(random_images(rng, dtype, 3, 2, wide=True) + random_images(rng, dtype, 3, 2))
        text = json.dumps(histogram.to_json())
        again = ChannelHistogram.from_json(json.loads(text))
        assert again == histogram and json.dumps(again.to_json()) == text
        assert pickle.loads(pickle.dumps(histogram)) == histogram


def test_counts_beyond_two_to_the_53_stay_exact():
    big = 2**60 + 1  # a float64 would round this count
    histogram = ChannelHistogram.from_json({"channels": [{"low": 10, "counts": [big, 0, 3]}]})
    doubled = histogram.merge(ChannelHistogram.from_json(histogram.to_json()))
    assert doubled.counts() == [2 * big + 6]
    assert doubled.sums() == [2 * big * 10 + 2 * 3 * 12]
    assert doubled.percentiles([50, 100]) == ((10,), (12,))


def test_a_boolean_mask_excludes_pixels_per_channel():
    rng = np.random.default_rng(5)
    images = random_images(rng, "uint16", 6, 3)
    masks = [rng.random(image.shape) < 0.3 for image in images]
    histogram = histogram_of(images, masks)
    bands = pooled(images, masks)
    assert histogram.counts() == [band.size for band in bands]
    assert len(set(histogram.counts())) > 1  # channels really differ
    assert histogram.percentiles(QS) == oracle_percentiles(bands, QS)


def test_a_two_dimensional_mask_excludes_the_pixel_in_every_channel():
    image = np.array([[[1, 2], [3, 4]], [[5, 6], [0, 0]]], dtype=np.uint16)
    mask = np.array([[False, False], [False, True]])
    histogram = ChannelHistogram.empty(2).update(image, mask)
    assert histogram.counts() == [3, 3]
    assert histogram.finalize().mins == (1, 2)


def test_a_fully_masked_channel_has_no_percentiles():
    image = np.zeros((2, 2, 2), dtype=np.uint8)
    mask = np.zeros((2, 2, 2), dtype=bool)
    mask[:, :, 1] = True
    stats = ChannelHistogram.empty(2).update(image, mask).finalize([50])
    assert stats.pixels == (4, 0) and stats.percentiles == ((0, None),) and stats.maxs == (0, None)


def test_exact_rank_where_floating_point_would_hesitate():
    # 0.1 % of 1000 pixels is exactly pixel 1; a binary 0.1 is slightly above one tenth.
    values = np.arange(1000, dtype=np.uint16).reshape(1, 1000)
    assert ChannelHistogram.empty(1).update(values).percentiles([0.1]) == ((0,),)
    assert percentile_rank(0.1, 1000) == 1 and percentile_rank(0.1, 1001) == 2


@pytest.mark.parametrize("bad", [-1, 100.5])
def test_percentile_outside_range_is_refused(bad):
    with pytest.raises(ValueError, match="outside 0..100"):
        percentile_rank(bad, 10)


def test_refuses_float_and_64_bit_pixels_and_wrong_channel_count():
    with pytest.raises(TypeError):
        ChannelHistogram.empty(1).update(np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError):
        ChannelHistogram.empty(1).update(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="3 channels"):
        ChannelHistogram.empty(2).update(np.zeros((2, 2, 3), np.uint8))


def test_default_percentiles_are_the_documented_clip_points():
    assert DEFAULT_PERCENTILES == (0.5, 1, 2, 50, 98, 99, 99.5)


def test_8_bit_count_arrays_merge_in_place_and_equal_the_canonical_histogram():
    rng = np.random.default_rng(5)
    images = [rng.integers(10, 200, size=(9, 7, 3), dtype=np.uint8) for _ in range(4)]
    counts = [np.stack([np.bincount(im[:, :, c].ravel(), minlength=256) for c in range(3)]) for im in images]
    pooled = np.concatenate([im.reshape(-1, 3) for im in images])
    fast = ChannelHistogram.from_counts(counts[0])
    for more in counts[1:]:
        fast.merge(ChannelHistogram.from_counts(more))
    slow = ChannelHistogram.empty(3)
    for im in images:
        slow.update(im)
    mixed = ChannelHistogram.empty(3).merge(ChannelHistogram.from_counts(counts[0]))
    mixed.merge(ChannelHistogram.empty(3).update(images[1])).merge(ChannelHistogram.from_counts(counts[2]))
    mixed.merge(ChannelHistogram.from_counts(counts[3]))
    assert fast.to_json() == slow.to_json() == mixed.to_json()
    assert pickle.loads(pickle.dumps(fast)).to_json() == slow.to_json()
    assert fast.sums() == pooled.astype(np.int64).sum(axis=0).tolist()
    expected = np.percentile(pooled, [0.5, 50, 99.5], axis=0, method="inverted_cdf")
    assert np.array_equal(np.array(fast.percentiles([0.5, 50, 99.5])), expected)
