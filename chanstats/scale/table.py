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

    A run keeps one entry per image for its whole length, so this holds flat arrays (about 100
    bytes per image, the source object being the listing's own) rather than an object per image
    with its own small ints and arrays (about 400 bytes). Iterating yields :class:`ImageRecord`
    views.
    """

    __slots__ = ("sources", "index", "format_id", "dropped_alpha", "width", "height", "rows", "row_start",
                 "formats", "float_moments")

    def __init__(self) -> None:
        self.sources = Listing()  # columns, not an object per image
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

    def append(self, record: ImageRecord) -> None:
        try:
            format_id = self.formats.index(record.format)
        except ValueError:
            if len(self.formats) == 255:
                raise ChanstatsError("more than 255 kinds of pixel format in one run") from None
            format_id = len(self.formats)
            self.formats.append(record.format)
        self.sources.append(record.source)
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

    def extend(self, other: "ImageTable") -> None:
        for record in other:
            self.append(record)

    def __getitem__(self, i: int) -> ImageRecord:
        return ImageRecord(
            index=self.index[i],
            source=self.sources[i],
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
