"""The lossless partial state of a run: what ``--shard K/N --partial``, checkpoints and torchrun ranks carry.

A :class:`PartialState` covers a contiguous slice ``[start, stop)`` of the global listing and holds
everything :func:`chanstats.api.finalize` needs, with nothing rounded:

* per pixel format, the exact integer totals (:class:`~chanstats.stats.moments.IntegerMoments`, written
  as decimal strings) and the first image of that format (for the mixed-format message);
* per good image, its global listing index, source, format, whether alpha was dropped, its
  per-sample (count, mean, M2) rows — floats written with ``repr``, which round-trips float64
  exactly — and, for float pipelines only, its float64 moments as hex floats (they are merged in
  global order at finalize, since Chan's formula is not associative in floating point);
* per bad image, its index, path and reason;
* the listing fingerprint and size, the options, the shard ``K/N`` and ``done``: how far the slice
  has been measured (``done == stop`` for a finished partial; less in a checkpoint).

Because indices stay global, merging partials restores the global order and the BatchNorm
simulation after a merge sees exactly the batches of a single-process run. The columns of the
images live in :mod:`.table`, the file format in :mod:`.state_file`, merging in :mod:`.merge`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..decoding.formats import PixelFormat
from ..errors import ChanstatsError
from ..stats.moments import IntegerMoments
from .table import ImageTable

PARTIAL_VERSION = 4  # the JSON format; the column format's is state_file.COLUMNS_VERSION
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
    # Exact histograms (integer pixels) or a quantile sketch (float pixels) of every image of this
    # format, in raw units; None when percentiles are off.
    histogram: Any = None


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

    def add_chunk(self, chunk) -> None:
        """Record the next :class:`~chanstats.scale.chunk.ChunkResult` of the slice (chunks must come in listing order): a few merges and
        array appends, whatever the chunk's size."""
        if chunk.start != self.done:
            raise ValueError(f"expected image {self.done}, got {chunk.start}")
        format_ids = []
        for part in chunk.formats:
            totals = self.formats.get(part.format)
            if totals is None:
                totals = self.formats[part.format] = FormatTotals(part.format, part.first_index, part.example, None)
            merge_totals(totals, part)
            format_ids.append(self.images.format_number(totals.format))
        self.images.append_chunk(chunk, format_ids)
        self.bad.extend(chunk.bad)
        self.done = chunk.stop


def merge_totals(into: FormatTotals, part: FormatTotals) -> None:
    """Add ``part``'s exact totals and histogram (which may be taken over, not copied) to ``into``."""
    if part.histogram is not None:
        into.histogram = part.histogram if into.histogram is None else into.histogram.merge(part.histogram)
    if part.integer is not None:
        if into.integer is None:
            into.integer = IntegerMoments.empty(part.integer.channels)
        into.integer.merge(part.integer)


def differing_options(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The option names whose values differ between two runs, in order of first appearance."""
    return [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]

