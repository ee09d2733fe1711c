"""Every good image of a run as fixed-width column files: :class:`ImageTable` and its row view
:class:`ImageRecord`.

A run keeps one entry per image for its whole length, so the table keeps flat files on disk
rather than an object (or even an array entry) per image in memory; partial states, checkpoints
and merges move these columns.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from array import array
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..decoding.formats import PixelFormat
from ..errors import ChanstatsError
from ..measure import SampleRow
from ..sources.base import ImageSource, Listing
from ..stats.moments import FloatMoments
from .columns import ColumnFile, remove_directory

# Each column's file is NAME.col in the table's directory; values little-endian.
COLUMN_SUFFIX = ".col"
COLUMNS = {
    "index": "<i8",  # global listing index
    "format_id": "u1",  # into the table's formats
    "dropped_alpha": "u1",
    "width": "<i8",
    "height": "<i8",
    "rows": "<f8",  # every image's packed sample rows, one after the other
    "row_end": "<i8",  # image i's rows are rows[row_end[i - 1]:row_end[i]]
    "floats": "<f8",  # float pipelines: per sample, see _pack_floats
    "float_end": "<i8",  # image i's float records end here (no records: an integer image)
}
_NO_DOUBLES = np.zeros(0, dtype=np.float64)


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
    """Every good image of a state, column by column, in the order added: append-only files in
    a directory (see :mod:`.columns`), read back through memory maps.

    Per image: listing index (int64), format number (uint8), whether alpha was dropped (uint8),
    width and height (int64), the end of its packed sample rows in ``rows`` (float64), and, for
    float pipelines, the end of its float64 moments records in ``floats``: about 100 bytes of disk
    per RGB image and nothing per image in memory. ``directory`` is where the files go (made if
    missing; a fresh table replaces column files already there); without one, a private
    temporary folder made on first use and removed with the table.

    A run's table names its images by listing index: its sources are ``origin[index]`` (the
    run's listing, or the sources stored with a partial state). A table filled record by record
    (:meth:`append`, a JSON partial state) keeps its own sources in memory instead. Iterating
    yields :class:`ImageRecord` views.
    """

    __slots__ = ("_sources", "origin", "formats", "directory", "_columns", "_owned", "__weakref__")

    def __init__(self, origin: Sequence[ImageSource] | None = None, directory: str | None = None) -> None:
        self.origin = origin
        self._sources = None if origin is not None else Listing()
        self.formats: list[PixelFormat] = []
        self.directory = directory
        self._columns: dict[str, ColumnFile] | None = None
        self._owned = None

    @classmethod
    def open(cls, directory: str, lengths: dict[str, int], formats: Sequence[PixelFormat],
             origin: Sequence[ImageSource] | None = None, *, writable: bool = False,
             checksums: dict[str, int] | None = None) -> "ImageTable":
        """The saved table in ``directory`` whose columns held ``lengths`` records when saved
        (later bytes are cut when ``writable``: the table then grows from there), verified
        against ``checksums`` (each column's CRC-32 when saved) when given."""
        table = cls(origin, directory)
        table.formats = list(formats)
        table._columns = {
            name: ColumnFile(os.path.join(directory, name + COLUMN_SUFFIX), dtype, int(lengths[name]),
                             writable=writable, fresh=False, checksum=None if checksums is None else int(checksums[name]))
            for name, dtype in COLUMNS.items()
        }
        table._check_consistent()
        return table

    def _check_consistent(self) -> None:
        """Cheap checks that catch columns which do not belong together (a damaged copy)."""
        columns = self._columns or {}
        count = len(columns["index"])
        for name in ("format_id", "dropped_alpha", "width", "height", "row_end", "float_end"):
            if len(columns[name]) != count:
                raise ChanstatsError(f"{columns[name].path}: damaged column file ({len(columns[name])} values, {count} images)")
        for name, data in (("row_end", "rows"), ("float_end", "floats")):
            ends = columns[name].view()
            if count and int(ends[-1]) != len(columns[data]):
                raise ChanstatsError(f"{columns[name].path}: damaged column file (ends at {int(ends[-1])}, "
                                     f"{os.path.basename(columns[data].path)} holds {len(columns[data])} values)")
        for block in columns["format_id"].blocks():
            if len(block) and int(block.max()) >= len(self.formats):
                raise ChanstatsError(f"{columns['format_id'].path}: damaged column file (pixel format "
                                     f"{int(block.max())} of {len(self.formats)})")

    @property
    def columns(self) -> dict[str, ColumnFile]:
        if self._columns is None:
            if self.directory is None:
                self.directory = tempfile.mkdtemp(prefix="chanstats-table-")
                self._owned = weakref.finalize(self, remove_directory, self.directory)
            os.makedirs(self.directory, exist_ok=True)
            self._columns = {name: ColumnFile(os.path.join(self.directory, name + COLUMN_SUFFIX), dtype)
                             for name, dtype in COLUMNS.items()}
        return self._columns

    def lengths(self) -> dict[str, int]:
        """How many records each column holds (what a header records)."""
        return {name: len(column) for name, column in self.columns.items()}

    def checksums(self) -> dict[str, int]:
        """Each column's CRC-32 over its records (what a header records beside the lengths)."""
        return {name: column.checksum for name, column in self.columns.items()}

    def sync(self) -> None:
        """Flush and fsync every column (before a header that counts their records is written)."""
        for column in self.columns.values():
            column.sync()

    def detach(self) -> None:
        """Map every column now and close the write buffers: the table stays readable after its
        directory is removed (a removed file stays mapped until the map is dropped)."""
        for column in self.columns.values():
            column.view()
        self.close()

    def close(self) -> None:
        """Close the write buffers (the records stay readable)."""
        for column in (self._columns or {}).values():
            column.close()

    def __len__(self) -> int:
        return 0 if self._columns is None else len(self._columns["index"])

    def _view(self, name: str) -> np.ndarray:
        return self.columns[name].view()

    @property
    def index(self) -> np.ndarray:
        return self._view("index")

    @property
    def format_id(self) -> np.ndarray:
        return self._view("format_id")

    @property
    def dropped_alpha(self) -> np.ndarray:
        return self._view("dropped_alpha")

    @property
    def width(self) -> np.ndarray:
        return self._view("width")

    @property
    def height(self) -> np.ndarray:
        return self._view("height")

    @property
    def sources(self) -> Sequence[ImageSource]:
        """Each image's source, in table order (made when read for a run's table)."""
        if self._sources is not None:
            return self._sources
        return _Picked(self.origin, self.index)

    def by_index(self) -> Sequence[ImageSource]:
        """Sources looked up by global listing index (for tables merged with others)."""
        return self.origin if self.origin is not None else _ByIndex(self)

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
        """Add one image (JSON partial states and tests; runs append whole chunks)."""
        format_id = self.format_number(record.format)
        self._own_sources().append(record.source)
        columns = self.columns
        floats = _pack_floats(record.float_moments)
        columns["index"].append(np.array([record.index]))
        columns["format_id"].append(np.array([format_id]))
        columns["dropped_alpha"].append(np.array([int(record.dropped_alpha)]))
        columns["width"].append(np.array([record.width]))
        columns["height"].append(np.array([record.height]))
        columns["rows"].append(np.frombuffer(record.packed_rows, dtype=np.float64) if len(record.packed_rows) else _NO_DOUBLES)
        columns["row_end"].append(np.array([len(columns["rows"])]))
        columns["floats"].append(floats)
        columns["float_end"].append(np.array([len(columns["floats"])]))

    def append_chunk(self, chunk, format_ids: Sequence[int]) -> None:
        """Append a :class:`~chanstats.scale.chunk.ChunkResult`'s images (its format ``i`` being this
        table's ``format_ids[i]``): a few buffered writes, nothing per image in this process's memory."""
        if self.origin is None:  # nothing would name the chunk's images
            raise ValueError("append_chunk needs a table that reads its sources from the run's listing (adopt)")
        columns = self.columns
        count = len(chunk.index)
        columns["index"].append(chunk.index)
        mapping = np.array(format_ids, dtype=np.uint8)
        columns["format_id"].append(mapping[chunk.format_id] if count else np.zeros(0, np.uint8))
        columns["dropped_alpha"].append(chunk.dropped_alpha)
        columns["width"].append(chunk.width)
        columns["height"].append(chunk.height)
        columns["row_end"].append(len(columns["rows"]) + np.cumsum(chunk.row_lengths, dtype=np.int64))
        columns["rows"].append(chunk.rows)
        if chunk.float_moments is None:
            columns["float_end"].append(np.full(count, len(columns["floats"]), dtype=np.int64))
        else:
            packed = [_pack_floats(moments) for moments in chunk.float_moments]
            columns["float_end"].append(len(columns["floats"]) + np.cumsum([len(p) for p in packed], dtype=np.int64))
            columns["floats"].append(np.concatenate(packed) if packed else _NO_DOUBLES)

    def extend(self, other: "ImageTable") -> None:
        for record in other:
            self.append(record)

    def _bounds(self, name: str, i: int) -> tuple[int, int]:
        ends = self._view(name)
        return (int(ends[i - 1]) if i else 0), int(ends[i])

    def __getitem__(self, i: int) -> ImageRecord:
        if not 0 <= i < len(self):
            raise IndexError("image table index out of range")
        start, stop = self._bounds("row_end", i)
        fmt = self.formats[int(self.format_id[i])]
        return ImageRecord(
            index=int(self.index[i]),
            source=self._sources[i] if self._sources is not None else self.origin[int(self.index[i])],
            format=fmt,
            dropped_alpha=bool(self.dropped_alpha[i]),
            width=int(self.width[i]),
            height=int(self.height[i]),
            packed_rows=array("d", self._view("rows")[start:stop].tobytes()),
            float_moments=self.float_moments_of(i),
        )

    def float_moments_of(self, i: int) -> list[FloatMoments] | None:
        """Image ``i``'s float64 moments, one per sample (``None`` for an integer image)."""
        start, stop = self._bounds("float_end", i)
        if start == stop:
            return None
        channels = len(self.formats[int(self.format_id[i])].channels)
        return _unpack_floats(np.array(self._view("floats")[start:stop]), channels)

    @property
    def float_moments(self) -> Sequence[list[FloatMoments] | None] | None:
        """Each image's float64 moments (``None`` for integer images), made when read; ``None``
        when no image has any."""
        if len(self) == 0 or len(self.columns["floats"]) == 0:
            return None
        return _FloatMomentsView(self)

    def __iter__(self) -> Iterator[ImageRecord]:
        return (self[i] for i in range(len(self)))

    def sample_rows(self, i: int) -> list[SampleRow]:
        """Image ``i``'s per-sample (count, mean, M2) rows, without making its source."""
        start, stop = self._bounds("row_end", i)
        record = ImageRecord(0, None, self.formats[int(self.format_id[i])], False, 0, 0,  # type: ignore[arg-type]
                             array("d", self._view("rows")[start:stop].tobytes()))
        return record.rows

    def in_listing_order(self) -> "ImageTable":
        """This table, or a reordered copy, sorted by listing index (tables filled out of order)."""
        if all(bool(np.all(block[1:] > block[:-1])) for block in _overlapping_blocks(self.index)):
            return self
        ordered = ImageTable()
        ordered._own_sources()
        for i in np.argsort(self.index, kind="stable"):
            ordered.append(self[int(i)])
        return ordered

    def packed_samples(self, epochs: int) -> np.ndarray:
        """All rows as an (images, epochs, 1 + 2·channels) float64 array, a read-only view of the
        rows file (no copy); every image must have the same pixel format."""
        if len(self.formats) != 1:
            raise ValueError("packed_samples needs images of one pixel format")
        width = row_width(self.formats[0])
        return self._view("rows").reshape(len(self), epochs, width)

    def copy_columns_to(self, directory: str) -> None:
        """Copy every column file (as far as written) into ``directory``, in bounded pieces."""
        self.sync()
        os.makedirs(directory, exist_ok=True)
        for name, column in self.columns.items():
            target = os.path.join(directory, name + COLUMN_SUFFIX)
            with open(target, "wb") as out:
                for block in column.blocks():
                    out.write(block.tobytes())
                out.flush()
                os.fsync(out.fileno())

    @classmethod
    def concatenate(cls, tables: Sequence["ImageTable"], origin: Sequence[ImageSource] | None,
                    directory: str | None = None) -> "ImageTable":
        """One table holding ``tables``' images one after the other, copied column by column in
        bounded pieces (format numbers and row offsets renumbered); sources from ``origin``."""
        merged = cls(origin, directory)
        if origin is None:
            merged._sources = None
        columns = merged.columns
        for table in tables:
            if not len(table):
                continue
            mapping = np.array([merged.format_number(fmt) for fmt in table.formats], dtype=np.uint8)
            shift = {"row_end": len(columns["rows"]), "float_end": len(columns["floats"])}
            for name, column in table.columns.items():
                for block in column.blocks():
                    if name == "format_id":
                        block = mapping[block]
                    elif name in shift:
                        block = block + shift[name]
                    columns[name].append(block)
        return merged


class _Picked(Sequence[ImageSource]):
    """``origin[indices[i]]`` for each i, made when read."""

    __slots__ = ("origin", "indices")

    def __init__(self, origin: Sequence[ImageSource], indices: Sequence[int]) -> None:
        self.origin, self.indices = origin, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.origin[int(j)] for j in self.indices[i]]
        return self.origin[int(self.indices[i])]

    def __iter__(self) -> Iterator[ImageSource]:
        origin = self.origin
        return (origin[int(j)] for j in self.indices)


class _ByIndex(Sequence[ImageSource]):
    """A table's own sources looked up by global listing index (a table filled record by record)."""

    __slots__ = ("table",)

    def __init__(self, table: ImageTable) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index):  # type: ignore[override]
        position = int(np.searchsorted(self.table.index, index))
        if position >= len(self.table) or int(self.table.index[position]) != index:
            raise IndexError(f"image {index} is not in this table")
        return self.table.sources[position]


class _FloatMomentsView(Sequence):
    """Each image's float64 moments, read from the table's columns when indexed."""

    __slots__ = ("table",)

    def __init__(self, table: ImageTable) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.table.float_moments_of(j) for j in range(*i.indices(len(self)))]
        return self.table.float_moments_of(i)

    def __iter__(self):
        return (self.table.float_moments_of(i) for i in range(len(self.table)))


def _overlapping_blocks(values: np.ndarray, step: int = 1 << 20) -> Iterator[np.ndarray]:
    """Pieces of ``values`` that overlap by one, so that pairwise checks see every neighbour."""
    for start in range(0, max(len(values) - 1, 0), step):
        yield values[start : start + step + 1]


def _pack_floats(moments: Sequence[FloatMoments] | None) -> np.ndarray:
    """An image's float64 moments as fixed-width records, one per sample: pixels, whether per-channel
    counts follow (1.0) or not (0.0), then mean, M2, min, max and counts per channel (counts 0
    when absent). Pixel counts are integers below 2⁵³: exact in a double."""
    if not moments:
        return _NO_DOUBLES
    records = []
    for m in moments:
        counts = m.counts if m.counts is not None else np.zeros(len(m.mean))
        records.append(np.concatenate([[float(m.pixels), 0.0 if m.counts is None else 1.0],
                                       m.mean, m.m2, m.mins, m.maxs, counts]).astype(np.float64))
    return np.concatenate(records)


def _unpack_floats(values: np.ndarray, channels: int) -> list[FloatMoments]:
    width = 2 + 5 * channels
    moments = []
    for record in values.reshape(-1, width):
        part = [record[2 + k * channels : 2 + (k + 1) * channels].copy() for k in range(5)]
        counts = part[4].astype(np.int64) if record[1] else None
        moments.append(FloatMoments(int(record[0]), part[0], part[1], part[2], part[3], counts))
    return moments


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
