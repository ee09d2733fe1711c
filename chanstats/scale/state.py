"""The lossless partial state of a run: what ``--shard K/N --partial``, checkpoints and torchrun ranks carry.

A :class:`PartialState` covers a contiguous slice ``[start, stop)`` of the global listing and holds
everything :func:`chanstats.pipeline.finalize` needs, with nothing rounded:

* per pixel format, the exact integer totals (:class:`~chanstats.moments.IntegerMoments`, written
  as decimal strings) and the first image of that format (for the mixed-format message);
* per good image, its global listing index, source, format, whether alpha was dropped, its
  per-sample (count, mean, M2) rows — floats written with ``repr``, which round-trips float64
  exactly — and, for float pipelines only, its float64 moments as hex floats (they are merged in
  global order at finalize, since Chan's formula is not associative in floating point);
* per bad image, its index, path and reason;
* the listing fingerprint and size, the options, the shard ``K/N`` and ``done``: how far the slice
  has been measured (``done == stop`` for a finished partial; less in a checkpoint).

Because indices stay global, merging partials restores the global order and the BatchNorm
simulation after a merge sees exactly the batches of a single-process run.
"""

from __future__ import annotations

import json
from array import array
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from .decode import PixelFormat
from .errors import BadImageError, ChanstatsError
from .measure import Measurement, SampleRow
from .moments import FloatMoments, IntegerMoments
from .report import write_atomic
from .sources import ImageSource

PARTIAL_VERSION = 1
KIND = "chanstats-partial"


def shard_bounds(total: int, k: int, n: int) -> tuple[int, int]:
    """The K-th (1-based) of N contiguous slices of ``range(total)``; sizes differ by at most 1.

    >>> [shard_bounds(10, k, 4) for k in range(1, 5)]
    [(0, 2), (2, 5), (5, 7), (7, 10)]
    """
    if not 1 <= k <= n:
        raise ChanstatsError(f"--shard {k}/{n}: K must be between 1 and N")
    return (k - 1) * total // n, k * total // n


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` → ``(2, 8)``; shards are numbered from 1, like Slurm array tasks ``1-N``.

    >>> parse_shard("2/8")
    (2, 8)
    """
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ChanstatsError(f"--shard {text!r}: expected K/N such as 1/4") from None
    if n < 1 or not 1 <= k <= n:
        raise ChanstatsError(f"--shard {text!r}: need 1 <= K <= N")
    return k, n


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
        width = 1 + 2 * channels
        values = self.packed_rows
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
        self.sources: list[ImageSource] = []
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
        width = 1 + 2 * len(self.formats[0].channels)
        return np.frombuffer(self.rows, dtype=np.float64).reshape(len(self), epochs, width)


def pack_rows(rows: Sequence[SampleRow]) -> array:
    """Sample rows as one flat array of doubles: count, means, M2s for each sample."""
    packed = array("d")
    for count, mean, m2 in rows:
        packed.append(count)
        packed.extend(mean)
        packed.extend(m2)
    return packed


@dataclass
class BadRecord:
    index: int
    display: str
    path: str  # as the error named it
    reason: str


@dataclass
class FormatTotals:
    """Exact totals of every integer image of one pixel format, and where it first occurs."""

    format: PixelFormat
    first_index: int
    example: str
    integer: IntegerMoments | None


@dataclass
class PartialState:
    version: str
    options: dict[str, Any]
    fingerprint: str
    listing_size: int
    shard: tuple[int, int]
    start: int
    stop: int
    done: int
    formats: dict[PixelFormat, FormatTotals] = field(default_factory=dict)
    images: ImageTable = field(default_factory=ImageTable)
    bad: list[BadRecord] = field(default_factory=list)
    listing: list[tuple[str, int]] | None = None  # every file's (name, size), with compute --listing
    # With --sample: how many images the whole listing holds (listing_size is the sample's size).
    population: int | None = None

    @property
    def complete(self) -> bool:
        return self.done == self.stop

    def add(self, index: int, source: ImageSource, outcome: Measurement | BadImageError) -> None:
        """Record the next image of the slice (indices must come in listing order)."""
        if index != self.done:
            raise ValueError(f"expected image {self.done}, got {index}")
        self.done += 1
        if isinstance(outcome, BadImageError):
            self.bad.append(BadRecord(index, source.display, outcome.path, outcome.reason))
            return
        integer = all(isinstance(m, IntegerMoments) for m in outcome.moments)
        totals = self.formats.get(outcome.format)
        if totals is None:
            totals = FormatTotals(outcome.format, index, source.display, None)
            self.formats[outcome.format] = totals
        if integer:
            if totals.integer is None:
                totals.integer = IntegerMoments.empty(len(outcome.format.channels))
            for moments in outcome.moments:
                totals.integer.merge(moments)  # type: ignore[arg-type]
        self.images.append(
            ImageRecord(
                index=index,
                source=source,
                format=totals.format,  # one shared object, not a copy unpickled for every image
                dropped_alpha=outcome.dropped_alpha,
                width=outcome.width,
                height=outcome.height,
                packed_rows=pack_rows(outcome.rows),
                float_moments=None if integer else list(outcome.moments),  # type: ignore[arg-type]
            )
        )

    # -- serialization -------------------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "partial_version": PARTIAL_VERSION,
            "chanstats": self.version,
            "shard": list(self.shard),
            "slice": [self.start, self.stop],
            "done": self.done,
            "listing_size": self.listing_size,
            "fingerprint": self.fingerprint,
            "options": self.options,
            **({"listing": [[name, size] for name, size in self.listing]} if self.listing is not None else {}),
            **({"population": self.population} if self.population is not None else {}),
        }

    def dumps(self) -> str:
        """Deterministic JSON, one image per line (so a million-image partial stays greppable)."""
        formats = [
            {
                "channels": list(t.format.channels),
                "scale": t.format.scale,
                "first_index": t.first_index,
                "example": t.example,
                "integer": None if t.integer is None else t.integer.to_json(),
            }
            for t in self.formats.values()
        ]
        format_ids = {fmt: i for i, fmt in enumerate(self.formats)}
        lines = [json.dumps(self.header(), allow_nan=False)[:-1] + ","]
        lines.append(f'"formats": {json.dumps(formats, allow_nan=False)},')
        lines.append(f'"bad": {json.dumps([[b.index, b.display, b.path, b.reason] for b in self.bad])},')
        images = [json.dumps(_image_json(r, format_ids[r.format]), allow_nan=False) for r in self.images]
        lines.append('"images": [' + ("\n" + ",\n".join(images) + "\n" if images else "") + "]}")
        return "\n".join(lines) + "\n"

    def write(self, path: str) -> None:
        write_atomic(path, self.dumps())

    @classmethod
    def loads(cls, text: str, name: str) -> "PartialState":
        """Parse a partial state; ``name`` (the file) is named in every error."""
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ChanstatsError(f"{name}: not a chanstats partial state ({error})") from None
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise ChanstatsError(f"{name}: not a chanstats partial state (write one with compute --partial)")
        if data.get("partial_version") != PARTIAL_VERSION:
            raise ChanstatsError(
                f"{name}: partial state version {data.get('partial_version')!r}; this chanstats reads version {PARTIAL_VERSION}"
            )
        try:
            return cls._from_json(data)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ChanstatsError(f"{name}: damaged partial state ({type(error).__name__}: {error})") from None

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> "PartialState":
        formats: dict[PixelFormat, FormatTotals] = {}
        by_id: list[PixelFormat] = []
        for entry in data["formats"]:
            fmt = PixelFormat(tuple(entry["channels"]), int(entry["scale"]))
            integer = None if entry["integer"] is None else IntegerMoments.from_json(entry["integer"])
            formats[fmt] = FormatTotals(fmt, int(entry["first_index"]), entry["example"], integer)
            by_id.append(fmt)
        images = ImageTable()
        roots: dict[str, str] = {}
        for item in data["images"]:
            index, fmt_id, alpha, path, name, display, size, width, height, rows, floats = item
            images.append(
                ImageRecord(
                    index=int(index),
                    source=_source_from_json(path, name, display, int(size), roots),
                    format=by_id[fmt_id],
                    dropped_alpha=bool(alpha),
                    width=int(width),
                    height=int(height),
                    packed_rows=pack_rows(rows),
                    float_moments=None if floats is None else [_float_moments_from_json(f) for f in floats],
                )
            )
        k, n = data["shard"]
        start, stop = data["slice"]
        return cls(
            version=data["chanstats"],
            options=data["options"],
            fingerprint=data["fingerprint"],
            listing_size=int(data["listing_size"]),
            shard=(int(k), int(n)),
            start=int(start),
            stop=int(stop),
            done=int(data["done"]),
            formats=formats,
            images=images,
            bad=[BadRecord(int(i), display, path, reason) for i, display, path, reason in data["bad"]],
            listing=None if data.get("listing") is None else [(name, int(size)) for name, size in data["listing"]],
            population=None if data.get("population") is None else int(data["population"]),
        )


def read_partial(path: str) -> PartialState:
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as error:
        raise ChanstatsError(f"{path}: cannot read: {error.strerror or error}") from None
    return PartialState.loads(text, path)


def _source_from_json(path: str, name: str, display: str, size: int, roots: dict[str, str]) -> ImageSource:
    """A source as written by :func:`_image_json` (its bytes are not read again: no offset)."""
    if display == f"{path}::{name}":
        return ImageSource(roots.setdefault(path, path), name, size, in_archive=True)
    if display != path:
        raise ValueError(f"image {display!r} is shown neither as its path {path!r} nor as a shard member")
    return ImageSource.from_path(path, name, size, roots)


def _image_json(record: ImageRecord, format_id: int) -> list[Any]:
    s = record.source
    floats = None if record.float_moments is None else [_float_moments_json(m) for m in record.float_moments]
    return [record.index, format_id, int(record.dropped_alpha), s.path, s.name, s.display, s.size,
            record.width, record.height, [[n, list(mean), list(m2)] for n, mean, m2 in record.rows], floats]


def _hex(values: np.ndarray) -> list[str]:
    return [float(v).hex() for v in values]


def _float_moments_json(m: FloatMoments) -> dict[str, Any]:
    # Hex floats: exact, and they carry the ±inf of an empty accumulator's min/max.
    return {"pixels": m.pixels, "mean": _hex(m.mean), "m2": _hex(m.m2), "mins": _hex(m.mins), "maxs": _hex(m.maxs)}


def _float_moments_from_json(data: dict[str, Any]) -> FloatMoments:
    def arr(key: str) -> np.ndarray:
        return np.array([float.fromhex(v) for v in data[key]], dtype=np.float64)

    return FloatMoments(int(data["pixels"]), arr("mean"), arr("m2"), arr("mins"), arr("maxs"))


def merge_states(states: Sequence[PartialState], names: Sequence[str]) -> PartialState:
    """One state covering the whole listing from complete partials that tile it exactly.

    Refuses, naming the files: unfinished checkpoints, different chanstats versions, options or
    listings, and slices that overlap or leave images out. The order of ``states`` does not matter.
    """
    if not states:
        raise ChanstatsError("no partial states to merge")
    first, first_name = states[0], names[0]
    for state, name in zip(states, names):
        if not state.complete:
            raise ChanstatsError(
                f"{name}: unfinished (measured images {state.start}..{state.done - 1} of slice "
                f"{state.start}..{state.stop - 1}); finish it by rerunning its command"
            )
        if state.version != first.version:
            raise ChanstatsError(f"{first_name} and {name} were written by different chanstats versions ({first.version} vs {state.version})")
        if state.options != first.options:
            raise ChanstatsError(f"{first_name} and {name} were computed with different options: {_option_diff(first.options, state.options)}")
        if (state.fingerprint, state.listing_size, state.population) != (first.fingerprint, first.listing_size, first.population):
            raise ChanstatsError(
                f"{first_name} and {name} were computed on different file listings "
                f"({first.listing_size} images, {first.fingerprint[:19]}… vs {state.listing_size} images, {state.fingerprint[:19]}…)"
            )
    order = sorted(range(len(states)), key=lambda i: (states[i].start, states[i].stop))
    position, previous = 0, None
    for i in order:
        state, name = states[i], names[i]
        if state.start < position:
            raise ChanstatsError(
                f"{names[previous]} (shard {_shard(states[previous])}) and {name} (shard {_shard(state)}) overlap: "
                f"both hold images {state.start}..{min(position, state.stop) - 1}"
            )
        if state.start > position:
            raise ChanstatsError(_missing(position, state.start, first))
        position, previous = max(position, state.stop), i
    if position < first.listing_size:
        raise ChanstatsError(_missing(position, first.listing_size, first))

    merged = PartialState(
        first.version, first.options, first.fingerprint, first.listing_size, (1, 1), 0, first.listing_size,
        first.listing_size, listing=first.listing, population=first.population,
    )
    for i in order:
        state = states[i]
        for fmt, totals in state.formats.items():
            into = merged.formats.get(fmt)
            if into is None:
                copy = None if totals.integer is None else IntegerMoments.empty(totals.integer.channels).merge(totals.integer)
                merged.formats[fmt] = FormatTotals(fmt, totals.first_index, totals.example, copy)
                continue
            if totals.first_index < into.first_index:
                into.first_index, into.example = totals.first_index, totals.example
            if totals.integer is not None:
                if into.integer is None:
                    into.integer = IntegerMoments.empty(totals.integer.channels)
                into.integer.merge(totals.integer)
        merged.images.extend(state.images)
        merged.bad.extend(state.bad)
    # formats in order of first appearance, like a single pass sees them
    merged.formats = dict(sorted(merged.formats.items(), key=lambda item: item[1].first_index))
    return merged


def _shard(state: PartialState) -> str:
    return f"{state.shard[0]}/{state.shard[1]}"


def _missing(start: int, stop: int, example: PartialState) -> str:
    n = example.shard[1]
    shards = [k for k in range(1, n + 1) if _overlaps(shard_bounds(example.listing_size, k, n), (start, stop))]
    hint = f" (shard {', '.join(f'{k}/{n}' for k in shards)}?)" if shards else ""
    return f"no partial state covers images {start}..{stop - 1} of {example.listing_size}{hint}"


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[0] < a[1]


def differing_options(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The option names whose values differ between two runs, in order of first appearance."""
    return [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


def _option_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in differing_options(a, b))
