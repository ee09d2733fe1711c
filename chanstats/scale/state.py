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
from ..errors import BadImageError, ChanstatsError
from ..measure import Measurement
from ..sources.base import ImageSource
from ..stats.moments import IntegerMoments
from .table import ImageRecord, ImageTable, pack_rows

PARTIAL_VERSION = 2
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
    # The last index whose histogram counts were already merged in (pooled by a worker with an
    # earlier image); until it is recorded the state is not consistent. Never saved.
    pooled_until: int = -1

    @property
    def complete(self) -> bool:
        return self.done == self.stop

    @property
    def settled(self) -> bool:
        """Whether every count in the state belongs to an image recorded (safe to checkpoint)."""
        return self.done > self.pooled_until

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
        if outcome.pooled_until is not None:
            self.pooled_until = max(self.pooled_until, outcome.pooled_until)
        if outcome.histogram is not None:
            totals.histogram = outcome.histogram if totals.histogram is None else totals.histogram.merge(outcome.histogram)
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


def differing_options(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The option names whose values differ between two runs, in order of first appearance."""
    return [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]

