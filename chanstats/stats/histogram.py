"""Exact per-channel histograms of integer pixels, and exact percentiles from them.

:class:`ChannelHistogram` counts every value of every channel. Counts are unsigned 64-bit integers
and merging adds them, so a histogram does not depend on the order in which images, workers,
shards or checkpoints were merged: the same pixels give the same histogram, byte for byte.

Storage per channel is compact and canonical (a function of the counts alone, never of the merge
history): a dense run of counts from the smallest to the largest value present when that span is at
most :data:`DENSE_SPAN` values (all 8- and 16-bit data), else sparse sorted (value, count) pairs
(32-bit data with a wide range). Works for uint8, int8, uint16, int16, uint32 and int32 pixels.

Percentiles use the inverted-CDF definition (:func:`percentile_rank`), the same as
``numpy.percentile(x, q, method="inverted_cdf")``: the value of the k-th smallest pixel with
k = ceil(q/100 · n), at least 1. It is always a value that occurs in the data, in raw pixel units.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator, Sequence

import numpy as np

DENSE_SPAN = 1 << 16
# Counting by bincount is linear time, sorting (np.unique) is not; but a bincount over a span much
# wider than the data spends its time and memory on zeros.
_BINCOUNT_SPAN = 1 << 22
DEFAULT_PERCENTILES = (0.5, 1, 2, 50, 98, 99, 99.5)


def percentile_rank(q: float | int | Fraction | str, n: int) -> int:
    """1-based rank of the q-th percentile among ``n`` sorted values: max(1, ceil(q/100 · n)).

    ``q`` is read as the decimal it is written as (``0.1`` means one tenth, not the binary double
    nearest to it), so the rank is exact: no floating-point rounding decides which pixel is picked.

    >>> percentile_rank(50, 4), percentile_rank(50, 5), percentile_rank(0, 5), percentile_rank(100, 5)
    (2, 3, 1, 5)
    >>> percentile_rank(0.1, 1000), percentile_rank("99.5", 200)
    (1, 199)
    """
    exact = _exact_fraction(q)
    if not 0 <= exact <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    if n <= 0:
        raise ValueError("no values")
    return max(1, -(-exact.numerator * n // (exact.denominator * 100)))


@functools.lru_cache(maxsize=256, typed=True)
def _exact_fraction(q: float | int | Fraction | str) -> Fraction:
    # Parsing a decimal into a Fraction is slow and the same few percentiles come back for every
    # channel of every format: parse each once.
    return Fraction(str(q)) if isinstance(q, float) else Fraction(q)


@dataclass(eq=False)
class BandCounts:
    """Exact counts of one channel's integer values.

    Dense form (``values is None``): ``counts[i]`` pixels have the value ``low + i``, and the first
    and last counts are non-zero. Sparse form: ``values`` are sorted distinct int64 values and
    ``counts[i] > 0`` pixels have the value ``values[i]``. Empty: dense, ``low`` 0, no counts.
    """

    low: int
    counts: np.ndarray
    values: np.ndarray | None = None

    @classmethod
    def empty(cls) -> "BandCounts":
        return cls(0, np.zeros(0, dtype=np.uint64))

    @classmethod
    def of(cls, flat: np.ndarray) -> "BandCounts":
        """Count a 1-D array of integers (any integer dtype; 64-bit values must fit in int64)."""
        if flat.size == 0:
            return cls.empty()
        if flat.dtype.itemsize <= 2:
            return cls._of_small(flat)
        low, high = int(flat.min()), int(flat.max())
        if high - low < min(_BINCOUNT_SPAN, max(DENSE_SPAN, 4 * flat.size)):
            counts = np.bincount((flat.astype(np.int64) - low)).astype(np.uint64)
            return _canonical_dense(low, counts)
        values, counts = np.unique(flat.astype(np.int64), return_counts=True)
        return _canonical_sparse(values, counts.astype(np.uint64))

    @classmethod
    def _of_small(cls, flat: np.ndarray) -> "BandCounts":
        shift = 0
        if flat.dtype.kind == "i":
            # Flipping the sign bit maps signed to unsigned in order, without a widening copy.
            unsigned = np.dtype(f"u{flat.dtype.itemsize}")
            shift = -(1 << (8 * flat.dtype.itemsize - 1))
            flat = flat.view(unsigned) ^ unsigned.type(1 << (8 * flat.dtype.itemsize - 1))
        counts = np.bincount(flat).astype(np.uint64)
        return _canonical_dense(shift, counts)

    @property
    def is_empty(self) -> bool:
        return self.counts.size == 0

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(values int64, counts uint64) of the values that occur, sorted by value."""
        if self.values is not None:
            return self.values, self.counts
        present = np.flatnonzero(self.counts)
        return present.astype(np.int64) + self.low, self.counts[present]

    def merge(self, other: "BandCounts") -> "BandCounts":
        """A new :class:`BandCounts` holding both sets of counts."""
        if other.is_empty:
            return self
        if self.is_empty:
            return other
        if self.values is None and other.values is None:
            low = min(self.low, other.low)
            high = max(self.low + self.counts.size, other.low + other.counts.size)
            if high - low <= DENSE_SPAN:
                counts = np.zeros(high - low, dtype=np.uint64)
                counts[self.low - low : self.low - low + self.counts.size] += self.counts
                counts[other.low - low : other.low - low + other.counts.size] += other.counts
                return BandCounts(low, counts)
        values_a, counts_a = self.pairs()
        values_b, counts_b = other.pairs()
        values = np.concatenate([values_a, values_b])
        counts = np.concatenate([counts_a, counts_b])
        order = np.argsort(values, kind="stable")
        values, counts = values[order], counts[order]
        starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
        # reduceat keeps uint64: bincount with weights would round counts through float64.
        return _canonical_sparse(values[starts], np.add.reduceat(counts, starts))

    def total(self) -> int:
        return int(self.counts.sum(dtype=np.uint64))

    def value_sum(self, power: int = 1) -> int:
        """Exact sum over pixels of value**power, as a Python integer."""
        values, counts = self.pairs()
        return sum(map(operator.mul, (v**power for v in values.tolist()), counts.tolist()))

    def minimum(self) -> int | None:
        return None if self.is_empty else int(self.pairs()[0][0])

    def maximum(self) -> int | None:
        return None if self.is_empty else int(self.pairs()[0][-1])

    def kth_smallest(self, ranks: Sequence[int]) -> list[int]:
        """The values at 1-based ``ranks`` in the sorted list of all pixels."""
        values, counts = self.pairs()
        cumulative = np.cumsum(counts, dtype=np.uint64)
        positions = np.searchsorted(cumulative, np.asarray(ranks, dtype=np.uint64), side="left")
        return [int(values[p]) for p in positions]

    def to_json(self) -> dict:
        if self.values is not None:
            return {"values": self.values.tolist(), "counts": self.counts.tolist()}
        return {"low": self.low, "counts": self.counts.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> "BandCounts":
        counts = np.asarray(data["counts"], dtype=np.uint64)
        if "values" in data:
            return _canonical_sparse(np.asarray(data["values"], dtype=np.int64), counts)
        return _canonical_dense(int(data["low"]), counts)


def _canonical_dense(low: int, counts: np.ndarray) -> BandCounts:
    present = np.flatnonzero(counts)
    if present.size == 0:
        return BandCounts.empty()
    first, last = int(present[0]), int(present[-1])
    if last - first < DENSE_SPAN:
        return BandCounts(low + first, counts[first : last + 1].copy())
    return BandCounts(low + first, counts[present], present.astype(np.int64) + low)


def _canonical_sparse(values: np.ndarray, counts: np.ndarray) -> BandCounts:
    keep = counts > 0
    values, counts = values[keep], counts[keep]
    if values.size == 0:
        return BandCounts.empty()
    low, high = int(values[0]), int(values[-1])
    if high - low < DENSE_SPAN:
        dense = np.zeros(high - low + 1, dtype=np.uint64)
        dense[values - low] = counts
        return BandCounts(low, dense)
    return BandCounts(low, counts, values)


@dataclass(frozen=True)
class HistogramStats:
    """What a :class:`ChannelHistogram` finalizes to, per channel, in raw pixel units.

    ``pixels`` counts the pixels that were not masked; ``sums``/``sums_of_squares`` are exact
    integers; ``percentiles[i][c]`` is the ``qs[i]``-th percentile of channel ``c`` (``None`` where
    a channel has no pixel, as are its min and max).
    """

    pixels: tuple[int, ...]
    sums: tuple[int, ...]
    sums_of_squares: tuple[int, ...]
    mins: tuple[int | None, ...]
    maxs: tuple[int | None, ...]
    qs: tuple[float, ...]
    percentiles: tuple[tuple[int | None, ...], ...]


class ChannelHistogram:
    """Mergeable exact histograms, one per channel, of integer pixels.

    >>> h = ChannelHistogram.empty(2).update(np.array([[[1, 10], [2, 20]], [[3, 30], [4, 0]]], np.uint8))
    >>> h.percentiles([0, 50, 100])
    ((1, 0), (2, 10), (4, 30))
    >>> h.update(np.array([[[9, 9]]], np.uint8), mask=np.array([[True]])).counts()
    [4, 4]

    A histogram made :meth:`from_counts` keeps its (C, bins) array as it is, and merging another
    such histogram of the same shape adds the arrays in place: the per-image work of 8-bit images
    stays one array addition. The canonical per-channel form (:attr:`bands`) is built only when
    something reads it (percentiles, totals, JSON), so results do not depend on which form merged.
    """

    def __init__(self, bands: list[BandCounts]):
        self._bands: list[BandCounts] | None = bands
        # (C, bins) uint64 counts of the values low, low + 1, ... not yet folded into _bands.
        self._dense: np.ndarray | None = None
        self._low = 0

    @property
    def bands(self) -> list[BandCounts]:
        """The canonical per-channel counts."""
        if self._dense is not None:
            dense = [_canonical_dense(self._low, row) for row in self._dense]
            self._bands = dense if self._bands is None else [a.merge(b) for a, b in zip(self._bands, dense)]
            self._dense = None
        return self._bands  # type: ignore[return-value]

    @bands.setter
    def bands(self, bands: list[BandCounts]) -> None:
        self._bands, self._dense = bands, None

    @classmethod
    def empty(cls, channels: int) -> "ChannelHistogram":
        return cls([BandCounts.empty() for _ in range(channels)])

    @classmethod
    def from_counts(cls, counts: np.ndarray, low: int = 0) -> "ChannelHistogram":
        """From a (C, bins) array of counts of the values ``low, low + 1, ...`` (e.g. 256 bins of
        8-bit pixels). The histogram owns ``counts`` from then on (merges add into it)."""
        histogram = cls.__new__(cls)
        histogram._bands = None
        histogram._dense = np.asarray(counts, dtype=np.uint64)
        histogram._low = low
        return histogram

    @property
    def channels(self) -> int:
        return len(self._bands) if self._dense is None else self._dense.shape[0]

    def update(self, pixels: np.ndarray, mask: np.ndarray | None = None) -> "ChannelHistogram":
        """Add an (H, W) or (H, W, C) integer array; ``mask`` marks pixels to leave out.

        ``mask`` is boolean, ``True`` where a pixel is excluded (nodata): (H, W) excludes the pixel
        in every channel, (H, W, C) per channel, so channels may end with different counts.
        """
        if pixels.dtype.kind not in "iu" or pixels.dtype.itemsize > 4:
            raise TypeError(f"need integer pixels of at most 32 bits, got {pixels.dtype}")
        for channel, values in enumerate(kept_values(pixels, mask, self.channels, "histogram")):
            self.bands[channel] = self.bands[channel].merge(BandCounts.of(values))
        return self

    def merge(self, other: "ChannelHistogram") -> "ChannelHistogram":
        if other.channels != self.channels:
            raise ValueError(f"cannot merge {other.channels} channels into {self.channels}")
        if other._dense is not None and other._bands is None:
            if self._dense is not None and self._low == other._low and self._dense.shape == other._dense.shape:
                if not self._dense.flags.writeable:  # e.g. a view of the kernel's bytes
                    self._dense = self._dense.copy()
                self._dense += other._dense
                return self
            if self._dense is None and self._bands is not None and all(band.is_empty for band in self._bands):
                self._bands, self._dense, self._low = None, other._dense.copy(), other._low
                return self
        self.bands = [mine.merge(theirs) for mine, theirs in zip(self.bands, other.bands)]
        return self

    def counts(self) -> list[int]:
        """Pixels counted per channel."""
        return [band.total() for band in self.bands]

    def sums(self) -> list[int]:
        """Exact per-channel sum of pixel values (raw units)."""
        return [band.value_sum(1) for band in self.bands]

    def sums_of_squares(self) -> list[int]:
        """Exact per-channel sum of squared pixel values (raw units squared)."""
        return [band.value_sum(2) for band in self.bands]

    def percentiles(self, qs: Iterable[float]) -> tuple[tuple[int | None, ...], ...]:
        """Exact inverted-CDF percentiles, shape (len(qs), C), like
        ``numpy.percentile(pooled, qs, axis=0, method="inverted_cdf")``; ``None`` for an empty
        channel."""
        qs = tuple(qs)
        per_channel = []
        for band in self.bands:
            n = band.total()
            if n == 0:
                per_channel.append([None] * len(qs))
            else:
                per_channel.append(band.kth_smallest([percentile_rank(q, n) for q in qs]))
        return tuple(tuple(values) for values in zip(*per_channel)) if per_channel else tuple(() for _ in qs)

    def clipped_sums(self, lows: Sequence[int], highs: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
        """Exact per-channel (pixels, sum, sum of squares) after clipping channel ``c``'s values
        to ``[lows[c], highs[c]]``: what a percentile-clipping normalization sees."""
        pixels, sums, squares = [], [], []
        for band, low, high in zip(self.bands, lows, highs):
            values, counts = band.pairs()
            clipped = np.clip(values, low, high).tolist()
            counts = counts.tolist()
            pixels.append(sum(counts))
            sums.append(sum(map(operator.mul, clipped, counts)))
            squares.append(sum(v * v * c for v, c in zip(clipped, counts)))
        return pixels, sums, squares

    def finalize(self, qs: Iterable[float] = DEFAULT_PERCENTILES) -> HistogramStats:
        qs = tuple(qs)
        return HistogramStats(
            pixels=tuple(self.counts()),
            sums=tuple(self.sums()),
            sums_of_squares=tuple(self.sums_of_squares()),
            mins=tuple(band.minimum() for band in self.bands),
            maxs=tuple(band.maximum() for band in self.bands),
            qs=qs,
            percentiles=self.percentiles(qs),
        )

    def binned(self, max_bins: int = 256) -> tuple[int, int, list[list[int]]]:
        """``(low, width, counts)``: channel ``c`` has ``counts[c][k]`` pixels with values in
        ``[low + k·width, low + (k + 1)·width)``, exactly. The bins are the same for every channel
        and cover the values present with at most ``max_bins`` bins of a whole width (8-bit data:
        one bin per value).

        >>> ChannelHistogram.empty(1).update(np.array([[1, 2, 2, 9]], np.uint8)).binned(4)
        (1, 3, [[3, 0, 1]])
        """
        present = [band for band in self.bands if not band.is_empty]
        if not present:
            return 0, 1, [[] for _ in self.bands]
        low = min(band.minimum() for band in present)
        span = max(band.maximum() for band in present) - low + 1
        width = -(-span // max_bins)
        bins = -(-span // width)
        binned = []
        for band in self.bands:
            counts = np.zeros(bins, dtype=np.uint64)
            if not band.is_empty:
                values, band_counts = band.pairs()
                np.add.at(counts, (values - low) // width, band_counts)
            binned.append([int(v) for v in counts])
        return low, width, binned

    def to_json(self) -> dict:
        """Plain JSON data (exact integers); :meth:`from_json` restores an equal histogram."""
        return {"channels": [band.to_json() for band in self.bands]}

    @classmethod
    def from_json(cls, data: dict) -> "ChannelHistogram":
        return cls([BandCounts.from_json(band) for band in data["channels"]])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChannelHistogram):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __getstate__(self) -> dict:
        # Pickled canonical, so what crosses between processes does not depend on the merge path.
        return {"bands": self.bands}

    def __setstate__(self, state: dict) -> None:
        self._bands, self._dense, self._low = state["bands"], None, 0


def kept_values(pixels: np.ndarray, mask: np.ndarray | None, channels: int, kind: str) -> Iterator[np.ndarray]:
    """Each channel's values of an (H, W) or (H, W, C) array, flat, without the pixels ``mask``
    leaves out (see :func:`channel_mask`), one channel at a time (a masked band is a copy);
    ``kind`` names the accumulator in the error when the number of channels is not ``channels``,
    raised before the first channel."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if pixels.shape[2] != channels:
        raise ValueError(f"{pixels.shape[2]} channels given to a {kind} of {channels}")
    for channel in range(channels):
        band = pixels[:, :, channel]
        yield band.ravel() if mask is None else band[~channel_mask(mask, channel, band.shape)]


def channel_mask(mask: np.ndarray, channel: int, shape: tuple[int, int]) -> np.ndarray:
    """The (H, W) exclusion mask of one channel from an (H, W) or (H, W, C) boolean mask."""
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must be boolean, got {mask.dtype}")
    if mask.shape == shape:
        return mask
    if mask.ndim == 3 and mask.shape[:2] == shape:
        return mask[:, :, channel]
    raise ValueError(f"mask of shape {mask.shape} does not fit pixels of shape {shape}")
