"""A state's per-image table: columns that read back as the records put in, and stay small."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np

from chanstats.decoding.formats import PixelFormat
from chanstats.stats.moments import FloatMoments
from chanstats.scale.table import ImageRecord, ImageTable, pack_rows
from chanstats.sources.base import ImageSource

RGB = PixelFormat(("R", "G", "B"), 255)
GREY = PixelFormat(("L",), 255)


def record(index: int, fmt: PixelFormat = RGB, epochs: int = 1, floats=None) -> ImageRecord:
    channels = len(fmt.channels)
    rows = [(100 + index, [index / 7 + e] * channels, [index / 3 + e] * channels) for e in range(epochs)]
    source = ImageSource("/data", f"{index}.png", 1000 + index)
    return ImageRecord(index, source, fmt, index % 2 == 0, 640 + index, 480 + index, pack_rows(rows), floats)


def test_records_read_back_as_they_were_added():
    originals = [record(i, RGB if i < 3 else GREY, epochs=2) for i in range(5)]
    table = ImageTable()
    for original in originals:
        table.append(original)
    assert len(table) == 5
    assert list(table) == originals
    assert table[4].rows == originals[4].rows


def moments_fields(moments):
    if moments is None:
        return None
    return [(m.pixels, m.mean.tolist(), m.m2.tolist(), m.mins.tolist(), m.maxs.tolist(),
             None if m.counts is None else m.counts.tolist()) for m in moments]


def test_float_moments_stay_aligned_when_they_start_late():
    floats = [FloatMoments.empty(3), FloatMoments(12, np.array([0.1, 0.2, 1 / 3]), np.array([1e-300, 2.5, 3.0]),
                                                  np.array([-1.0, 0.0, 0.5]), np.array([2.0, 3.0, 4.0]),
                                                  np.array([12, 11, 10]))]
    table = ImageTable()
    table.append(record(0))
    table.append(record(1, floats=floats))
    table.append(record(2))
    assert [moments_fields(r.float_moments) for r in table] == [None, moments_fields(floats), None]


def test_listing_order_and_packed_samples():
    table = ImageTable()
    for index in (5, 6, 0, 1, 2):  # as a merge of two shards may leave them
        table.append(record(index, epochs=2))
    ordered = table.in_listing_order()
    assert [r.index for r in ordered] == [0, 1, 2, 5, 6]
    samples = ordered.packed_samples(epochs=2)
    assert samples.shape == (5, 2, 7)
    expected = np.array([list(pack_rows(record(i, epochs=2).rows)) for i in (0, 1, 2, 5, 6)]).reshape(5, 2, 7)
    np.testing.assert_array_equal(samples, expected)
    assert ordered.in_listing_order() is ordered


def packed_chunk(listing, start, stop):
    from chanstats.measure import Measurement
    from chanstats.scale.chunk import pack_chunk
    from chanstats.stats.moments import IntegerMoments

    expected = [record(i) for i in range(start, stop)]
    outcomes = [Measurement(r.format, r.width, r.height, r.dropped_alpha, [IntegerMoments.empty(3)], r.rows)
                for r in expected]
    return pack_chunk(start, listing[start:stop], outcomes)


def test_a_run_table_holds_nothing_per_image_in_memory(tmp_path):
    from chanstats.sources.base import Listing

    listing = Listing(ImageSource("/data", f"{i}.png", 1000 + i) for i in range(60_000))
    chunks = [packed_chunk(listing, start, start + 1000) for start in range(0, 60_000, 1000)]  # built first
    table = ImageTable(listing, str(tmp_path / "columns"))
    tracemalloc.start()
    for chunk in chunks[:10]:
        table.append_chunk(chunk, [table.format_number(totals.format) for totals in chunk.formats])
    after_10k = tracemalloc.get_traced_memory()[0]
    for chunk in chunks[10:]:
        table.append_chunk(chunk, [table.format_number(totals.format) for totals in chunk.formats])
    grown = tracemalloc.get_traced_memory()[0] - after_10k
    tracemalloc.stop()
    assert len(table) == 60_000
    assert grown / 50_000 < 2, grown  # the columns are files: memory does not grow with the images
    table.sync()
    on_disk = sum(os.path.getsize(tmp_path / "columns" / name) for name in os.listdir(tmp_path / "columns"))
    assert on_disk == 60_000 * (8 + 1 + 1 + 8 + 8 + 7 * 8 + 8 + 8)  # index, flags, sizes, one RGB row, two ends
    assert table[59_999] == record(59_999)


def test_a_packed_chunk_reads_back_as_its_records_named_by_the_listing():
    from chanstats.measure import Measurement
    from chanstats.scale.chunk import pack_chunk
    from chanstats.sources.base import Listing
    from chanstats.stats.moments import IntegerMoments

    listing = Listing(ImageSource("/data", f"{i}.png", 1000 + i) for i in range(10))
    expected = [record(i, RGB if i != 7 else GREY, epochs=2) for i in range(4, 9)]
    outcomes = [Measurement(r.format, r.width, r.height, r.dropped_alpha, [IntegerMoments.empty(len(r.format.channels))],
                            r.rows) for r in expected]
    chunk = pack_chunk(4, listing[4:9], outcomes)
    table = ImageTable(listing)
    table.append_chunk(chunk, [table.format_number(totals.format) for totals in chunk.formats])
    assert [totals.format for totals in chunk.formats] == [RGB, GREY]
    assert list(table) == expected  # sources are the listing's, indexed by the images' indices
    assert [s.name for s in table.sources] == ["4.png", "5.png", "6.png", "7.png", "8.png"]
