"""Cached measurements in a compact binary form, and a chunk assembled from many of them at once.

Reusing a cached measurement must cost far less than measuring a small image, so the common case
(one sample of integer pixels, no nodata, no histogram) is stored as fixed-width numbers: width,
height, dropped alpha, pixel count, per-channel sums, sums of squares, minima and maxima (int64),
and the image's packed sample row (float64, exactly the doubles :func:`~chanstats.scale.table.pack_rows`
gives). A chunk's reused entries of one format are then decoded by one ``frombuffer`` and their
exact totals added with numpy (sums split into 32-bit halves so that no int64 overflows), and the
result is merged with the chunk's measured items into the :class:`~chanstats.scale.chunk.ChunkResult`
that :func:`~chanstats.scale.chunk.pack_chunk` would have given for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..decoding.formats import PixelFormat
from ..stats.moments import IntegerMoments
from .chunk import ChunkResult
from .state import FormatTotals, merge_totals
from .table import pack_rows

TAG = b"C"  # a compact entry's first byte (a pickled one starts otherwise: see cache.PICKLED)
_LIMIT = 1 << 62  # larger totals (32-bit pixels of huge images) are stored the general way


def encode_compact(measurement, format_tag: bytes) -> bytes | None:
    """``measurement`` as a compact entry (``TAG``, the 16-byte ``format_tag``, the numbers), or
    ``None`` when it is not of the common kind."""
    if measurement.histogram is not None or len(measurement.moments) != 1 or len(measurement.rows) != 1:
        return None
    moments = measurement.moments[0]
    if not isinstance(moments, IntegerMoments) or moments.counts is not None or isinstance(measurement.rows[0][0], list):
        return None
    numbers = [measurement.width, measurement.height, int(bool(measurement.dropped_alpha)), moments.pixels,
               *moments.sums, *moments.sumsq, *moments.mins, *moments.maxs]
    if any(value is None or not -_LIMIT < value < _LIMIT for value in numbers):
        return None
    row = np.frombuffer(pack_rows(measurement.rows), dtype=np.float64)
    return TAG + format_tag + np.array(numbers, dtype=np.int64).tobytes() + row.tobytes()


@dataclass
class CompactHits:
    """A chunk's reused compact entries, grouped by their value's first 17 bytes (the tag and the
    format tag) and length, each group's listing positions and entry values in order."""

    groups: dict[tuple[bytes, int], tuple[list[int], list[bytes]]] = field(default_factory=dict)

    def add(self, position: int, value: bytes) -> None:
        """The compact entry ``value`` (checked) reused for the image at listing ``position``."""
        group = self.groups.get((value[:17], len(value)))
        if group is None:
            group = self.groups[(value[:17], len(value))] = ([], [])
        group[0].append(position)
        group[1].append(value)


def assemble(start: int, stop: int, hits: CompactHits, formats: dict[bytes, PixelFormat],
             measured: ChunkResult | None, display: Callable[[int], str]) -> ChunkResult:
    """The chunk ``[start, stop)`` from its reused ``hits`` (formats by tag) and its ``measured``
    items (a :class:`ChunkResult` of the rest, or ``None``); ``display(index)`` names an image."""
    parts = [_decoded(head[1:], positions, values, formats, display)
             for (head, _), (positions, values) in hits.groups.items()]
    if measured is not None:
        parts.append(measured)
    return _merged(start, stop, parts, [] if measured is None else measured.bad)


def _decoded(tag: bytes, listed_at: list[int], entries: list[bytes], formats: dict[bytes, PixelFormat],
             display: Callable[[int], str]) -> ChunkResult:
    """The reused images at listing positions ``listed_at`` (in order), whose compact entries are
    ``entries`` (one format ``tag``, one length), as the part of a chunk they are: their merged
    totals and per-image arrays."""
    pixel_format = formats[tag]
    channels = len(pixel_format.channels)
    count = len(entries)
    width_ints = 4 + 4 * channels
    values = np.frombuffer(b"".join(entries), dtype=np.uint8).reshape(count, -1)[:, 17:]  # past the tags
    ints = np.ascontiguousarray(values[:, : 8 * width_ints]).view(np.int64)
    rows = np.ascontiguousarray(values[:, 8 * width_ints:]).view(np.float64)
    positions = np.array(listed_at, dtype=np.int64)
    c = channels
    moments = IntegerMoments(
        _exact_sum(ints[:, 3:4])[0], _exact_sum(ints[:, 4 : 4 + c]), _exact_sum(ints[:, 4 + c : 4 + 2 * c]),
        [int(v) for v in ints[:, 4 + 2 * c : 4 + 3 * c].min(axis=0)],
        [int(v) for v in ints[:, 4 + 3 * c : 4 + 4 * c].max(axis=0)],
    )
    first_index = int(positions[0])
    totals = FormatTotals(pixel_format, first_index, display(first_index), moments)
    return ChunkResult(first_index, int(positions[-1]) + 1, [totals], positions, np.zeros(count, dtype=np.uint8),
                       ints[:, 2].astype(np.uint8), ints[:, 0].copy(), ints[:, 1].copy(), rows.reshape(-1),
                       np.full(count, rows.shape[1], dtype=np.int64), None, [])


def _exact_sum(columns: np.ndarray) -> list[int]:
    """Exact column sums of int64 values below 2**62 in magnitude, as Python ints (summed in two
    32-bit halves, neither of which can overflow for fewer than 2**31 rows)."""
    high = (columns >> 32).sum(axis=0, dtype=np.int64)
    low = (columns & 0xFFFFFFFF).sum(axis=0, dtype=np.int64)
    return [(int(h) << 32) + int(lo) for h, lo in zip(high, low)]


def _merged(start: int, stop: int, parts: Sequence[ChunkResult], bad: list) -> ChunkResult:
    """One chunk from ``parts`` (chunks of the reused images and of the measured ones; their bad
    images are ``bad``): formats in order of first appearance (equal formats merged, the first
    image's representing them), images in listing order."""
    by_first = sorted(((totals.first_index, p, f) for p, part in enumerate(parts)
                       for f, totals in enumerate(part.formats)), key=lambda item: item[0])
    formats: list[FormatTotals] = []
    numbering: dict[tuple[int, int], int] = {}
    for _, p, f in by_first:
        totals = parts[p].formats[f]
        same = next((n for n, known in enumerate(formats) if known.format == totals.format), None)
        if same is None:
            same = len(formats)
            formats.append(FormatTotals(totals.format, totals.first_index, totals.example, None, None))
        merge_totals(formats[same], totals)
        numbering[(p, f)] = same
    index = np.concatenate([part.index for part in parts]) if parts else np.zeros(0, np.int64)
    order = np.argsort(index, kind="stable")
    format_id = np.concatenate([np.array([numbering[(p, int(f))] for f in range(len(part.formats))],
                                         dtype=np.uint8)[part.format_id] if len(part.index) else
                                np.zeros(0, np.uint8) for p, part in enumerate(parts)])
    lengths = np.concatenate([part.row_lengths for part in parts])
    rows = np.concatenate([part.rows for part in parts])
    ends = np.cumsum(lengths)
    begins = ends - lengths
    # Each image's run of doubles, gathered in listing order.
    take = np.repeat(begins[order] - np.cumsum(lengths[order]) + lengths[order], lengths[order]) + \
        np.arange(int(lengths.sum()), dtype=np.int64)
    floats = None
    if any(part.float_moments is not None for part in parts):
        every = [m for part in parts for m in (part.float_moments or [None] * len(part.index))]
        floats = [every[i] for i in order.tolist()]
    return ChunkResult(
        start, stop, formats, index[order], format_id[order],
        np.concatenate([part.dropped_alpha for part in parts])[order],
        np.concatenate([part.width for part in parts])[order], np.concatenate([part.height for part in parts])[order],
        rows[take], lengths[order], floats, sorted(bad, key=lambda record: record.index),
    )
