"""Every good image of a run as fixed-width columns: :class:`ImageTable` and its row view
:class:`ImageRecord`.

A run keeps one entry per image for its whole length, so the table holds flat arrays rather than
an object per image; partial states, checkpoints and merges move these columns.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..decoding.formats import PixelFormat
from ..errors import ChanstatsError
from ..measure import SampleRow
from ..sources.base import ImageSource, Listing
from ..stats.moments import FloatMoments


@dataclass(slots=True)
class ImageRecord:
    """One image that was read: its place in the global listing and its statistics.

    A view of one row of an :class:`ImageTable`, made when the table is iterated (a state keeps
    columns, not one of these per image). ``packed_rows`` holds each sample's count, means and
    M2s; counts are integers below 2⁵³, exact in a double.
    """

    index: int
    source: ImageSource
    format: PixelFormat
    dropped_alpha: bool
    width: int
    height: int
    packed_rows: array
    float_moments: list[FloatMoments] | None = None  # float pipelines only; integer ones go to totals

    @property
    def rows(self) -> list[SampleRow]:
        """The per-sample (count, mean, M2) rows, unpacked."""
        channels = len(self.format.channels)
        values = self.packed_rows
        if self.format.masked:  # counts per channel
            width = 3 * channels
            return [
                ([int(v) for v in values[i : i + channels]], list(values[i + channels : i + 2 * channels]),
                 list(values[i + 2 * channels : i + width]))
                for i in range(0, len(values), width)
            ]
        width = 1 + 2 * channels
        return [
            (int(values[i]), list(values[i + 1 : i + 1 + channels]), list(values[i + 1 + channels : i + width]))
            for i in range(0, len(values), width)
        ]


class ImageTable:
    """Every good image of a state, column by column, in the order added.

    A run keeps one entry per image for its whole length, so this holds flat arrays (about 90
    bytes per image for RGB: the run's table names its images by listing index, not by source)
    rather than an object per image with its own small ints and arrays (about 400 bytes).
    Iterating yields :class:`ImageRecord` views.
    """

    __slots__ = ("_sources", "origin", "index", "format_id", "dropped_alpha", "width", "height", "rows", "row_start",
                 "formats", "float_moments")

    def __init__(self, origin: Sequence[ImageSource] | None = None) -> None:
        # A run's table keeps listing indices only: its sources are ``origin[index]`` (the run's
        # listing). A table read from a file or merged keeps its own sources, as columns.
        self.origin = origin
        self._sources = None if origin is not None else Listing()
        self.index = array("q")
        self.format_id = array("B")
        self.dropped_alpha = array("B")
        self.width = array("q")
        self.height = array("q")
        self.rows = array("d")  # every image's packed sample rows, one after the other
        self.row_start = array("q", [0])  # image i's rows are rows[row_start[i]:row_start[i + 1]]
        self.formats: list[PixelFormat] = []
        self.float_moments: list[list[FloatMoments] | None] | None = None  # only once a float image came

    def __len__(self) -> int:
        return len(self.index)

    @property
    def sources(self) -> Sequence[ImageSource]:
        """Each image's source, in table order (made when read for a run's table)."""
        if self._sources is not None:
            return self._sources
        return _Picked(self.origin, self.index)

    def adopt(self, origin: Sequence[ImageSource]) -> None:
        """Read sources from ``origin[index]`` from now on (a resumed run's own listing, which holds
        the same images at the same indices) instead of keeping a copy."""
        self.origin, self._sources = origin, None

    def _own_sources(self) -> Listing:
        if self._sources is None:
            self._sources = Listing(self.sources)
            self.origin = None
        return self._sources

    def format_number(self, pixel_format: PixelFormat) -> int:
        """The table's number for ``pixel_format``, given one on first sight."""
        try:
            return self.formats.index(pixel_format)
        except ValueError:
            if len(self.formats) == 255:
                raise ChanstatsError("more than 255 kinds of pixel format in one run") from None
            self.formats.append(pixel_format)
            return len(self.formats) - 1

    def append(self, record: ImageRecord) -> None:
        format_id = self.format_number(record.format)
        self._own_sources().append(record.source)
        self.index.append(record.index)
        self.format_id.append(format_id)
        self.dropped_alpha.append(int(record.dropped_alpha))
        self.width.append(record.width)
        self.height.append(record.height)
        self.rows.extend(record.packed_rows)
        self.row_start.append(len(self.rows))
        if record.float_moments is not None and self.float_moments is None:
            self.float_moments = [None] * (len(self.index) - 1)
        if self.float_moments is not None:
            self.float_moments.append(record.float_moments)

    def append_chunk(self, chunk, format_ids: Sequence[int]) -> None:
        """Append a :class:`~chanstats.scale.chunk.ChunkResult`'s images (its format ``i`` being this
        table's ``format_ids[i]``): a few array copies, nothing per image."""
        if self.origin is None:  # nothing would name the chunk's images
            raise ValueError("append_chunk needs a table that reads its sources from the run's listing (adopt)")
        count = len(chunk.index)
        before = len(self.index)
        self.index.frombytes(chunk.index.astype(np.int64, copy=False).tobytes())
        mapping = np.array(format_ids, dtype=np.uint8)
        self.format_id.frombytes(mapping[chunk.format_id].tobytes() if count else b"")
        self.dropped_alpha.frombytes(chunk.dropped_alpha.astype(np.uint8, copy=False).tobytes())
        self.width.frombytes(chunk.width.astype(np.int64, copy=False).tobytes())
        self.height.frombytes(chunk.height.astype(np.int64, copy=False).tobytes())
        ends = len(self.rows) + np.cumsum(chunk.row_lengths, dtype=np.int64)
        self.rows.frombytes(chunk.rows.astype(np.float64, copy=False).tobytes())
        self.row_start.frombytes(ends.tobytes())
        if chunk.float_moments is not None and self.float_moments is None:
            self.float_moments = [None] * before
        if self.float_moments is not None:
            self.float_moments.extend(chunk.float_moments if chunk.float_moments is not None else [None] * count)

    def extend(self, other: "ImageTable") -> None:
        for record in other:
            self.append(record)

    def __getitem__(self, i: int) -> ImageRecord:
        return ImageRecord(
            index=self.index[i],
            source=self._sources[i] if self._sources is not None else self.origin[self.index[i]],
            format=self.formats[self.format_id[i]],
            dropped_alpha=bool(self.dropped_alpha[i]),
            width=self.width[i],
            height=self.height[i],
            packed_rows=self.rows[self.row_start[i] : self.row_start[i + 1]],
            float_moments=None if self.float_moments is None else self.float_moments[i],
        )

    def __iter__(self) -> Iterator[ImageRecord]:
        return (self[i] for i in range(len(self)))

    def in_listing_order(self) -> "ImageTable":
        """This table, or a reordered copy, sorted by listing index (merged partials may not be)."""
        indices = np.array(self.index, dtype=np.int64)
        if np.all(indices[1:] > indices[:-1]):
            return self
        ordered = ImageTable()
        ordered._own_sources()
        for i in np.argsort(indices, kind="stable"):
            ordered.append(self[int(i)])
        return ordered

    def packed_samples(self, epochs: int) -> np.ndarray:
        """All rows as an (images, epochs, 1 + 2·channels) float64 array, a view of the table's own
        buffer (no copy; the table cannot grow while the view lives); every image must have the
        same pixel format."""
        if len(self.formats) != 1:
            raise ValueError("packed_samples needs images of one pixel format")
        width = row_width(self.formats[0])
        return np.frombuffer(self.rows, dtype=np.float64).reshape(len(self), epochs, width)


class _Picked(Sequence[ImageSource]):
    """``origin[indices[i]]`` for each i, made when read."""

    __slots__ = ("origin", "indices")

    def __init__(self, origin: Sequence[ImageSource], indices: Sequence[int]) -> None:
        self.origin, self.indices = origin, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.origin[j] for j in self.indices[i]]
        return self.origin[self.indices[i]]

    def __iter__(self) -> Iterator[ImageSource]:
        origin = self.origin
        return (origin[j] for j in self.indices)


def row_width(pixel_format: PixelFormat) -> int:
    """Doubles per packed sample row: one count (or one per channel under nodata), means, M2s."""
    channels = len(pixel_format.channels)
    return (channels if pixel_format.masked else 1) + 2 * channels


def pack_rows(rows: Sequence[SampleRow]) -> array:
    """Sample rows as one flat array of doubles: count (or counts), means, M2s for each sample."""
    packed = array("d")
    for count, mean, m2 in rows:
        if isinstance(count, list):
            packed.extend(count)
        else:
            packed.append(count)
        packed.extend(mean)
        packed.extend(m2)
    return packed
