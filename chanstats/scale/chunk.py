"""What a worker sends back for one chunk of consecutive images: :class:`ChunkResult`.

The main process of a large run must not do Python work per image, or it caps the throughput of
every core. So a worker does the per-image work itself: it merges the chunk's exact integer totals
and histograms per pixel format (exact and order free: the run's totals are byte-identical for any
chunking or number of workers) and packs the per-image columns into a few numpy arrays. The main
process then merges a handful of totals and appends a few arrays per chunk
(:meth:`~chanstats.scale.state.PartialState.add_chunk`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import BadImageError
from ..measure import Measurement
from ..sources.base import ImageSource
from ..stats.moments import FloatMoments, IntegerMoments
from .state import BadRecord, FormatTotals
from .table import pack_rows


@dataclass
class ChunkResult:
    """Images ``[start, stop)`` of the listing, measured.

    ``formats``: per pixel format met in the chunk (in order of first appearance), its merged
    totals, first index and example. Per good image, in listing order: ``index``, ``format_id``
    (into ``formats``), ``dropped_alpha``, ``width``, ``height`` and ``row_lengths`` (how many
    doubles of ``rows`` are its packed sample rows); ``float_moments`` only when a float image
    came. ``bad``: the chunk's bad images.
    """

    start: int
    stop: int
    formats: list[FormatTotals]
    index: np.ndarray
    format_id: np.ndarray
    dropped_alpha: np.ndarray
    width: np.ndarray
    height: np.ndarray
    rows: np.ndarray
    row_lengths: np.ndarray
    float_moments: list[list[FloatMoments] | None] | None
    bad: list[BadRecord]
    # With a measurement cache: the chunk's new entries and reuses, for the main process to store
    # (a :class:`~chanstats.scale.cache.Drained`).
    cache: Any = None

    def __len__(self) -> int:
        return self.stop - self.start


def pack_chunk(start: int, sources: Sequence[ImageSource], outcomes: Sequence[Measurement | BadImageError],
               positions: Sequence[int] | None = None) -> ChunkResult:
    """The :class:`ChunkResult` of ``outcomes`` (one per source, images ``start, start + 1, ...``,
    or at the listing indices ``positions``)."""
    formats: dict = {}
    index, format_id, alpha, width, height, lengths = [], [], [], [], [], []
    rows: list[float] = []
    floats: list[list[FloatMoments] | None] = []
    any_float = False
    bad: list[BadRecord] = []
    for offset, (source, outcome) in enumerate(zip(sources, outcomes)):
        position = start + offset if positions is None else positions[offset]
        if isinstance(outcome, BadImageError):
            bad.append(BadRecord(position, source.display, outcome.path, outcome.reason))
            continue
        totals = formats.get(outcome.format)
        if totals is None:
            totals = formats[outcome.format] = FormatTotals(outcome.format, position, source.display, None)
        _merge_into(totals, outcome)
        integer = all(isinstance(m, IntegerMoments) for m in outcome.moments)
        any_float = any_float or not integer
        floats.append(None if integer else list(outcome.moments))  # type: ignore[arg-type]
        packed = pack_rows(outcome.rows)
        index.append(position)
        format_id.append(list(formats).index(outcome.format))
        alpha.append(outcome.dropped_alpha)
        width.append(outcome.width)
        height.append(outcome.height)
        lengths.append(len(packed))
        rows.extend(packed)
    return ChunkResult(
        start, start + len(outcomes), list(formats.values()),
        np.array(index, dtype=np.int64), np.array(format_id, dtype=np.uint8), np.array(alpha, dtype=np.uint8),
        np.array(width, dtype=np.int64), np.array(height, dtype=np.int64), np.array(rows, dtype=np.float64),
        np.array(lengths, dtype=np.int64), floats if any_float else None, bad,
    )


def _merge_into(totals: FormatTotals, outcome: Measurement) -> None:
    if outcome.histogram is not None:
        totals.histogram = outcome.histogram if totals.histogram is None else totals.histogram.merge(outcome.histogram)
    if all(isinstance(m, IntegerMoments) for m in outcome.moments):
        if totals.integer is None:
            totals.integer = IntegerMoments.empty(len(outcome.format.channels))
        for moments in outcome.moments:
            totals.integer.merge(moments)  # type: ignore[arg-type]
