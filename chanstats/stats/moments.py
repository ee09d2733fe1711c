"""Per-channel moment accumulators: exact integer sums and float64 Chan/Welford moments.

Every accumulator has the same shape: ``update(...)`` returns ``self``, ``merge(other)`` returns
``self``, ``finalize(...)`` returns plain numbers. They are plain data (pickle and JSON round-trip
losslessly), so worker processes, shards and checkpoints can carry them.

Two paths, chosen by what the pixels are:

* integer pixels (8- or 16-bit): :class:`IntegerMoments` keeps the pixel count and per-channel sums
  of values and squares as Python integers. Merging is integer addition, so totals do not depend on
  order or on the number of workers, and :meth:`IntegerMoments.finalize` rounds exactly once, to the
  nearest float64 of the true mean and population std.
* float pixels (a transform that outputs floats): :class:`FloatMoments` keeps count, mean and M2
  (sum of squared deviations) in float64, two-pass inside an image, merged with Chan et al.'s
  parallel formula. Never ``E[x**2] - E[x]**2`` in floating point.

:class:`MomentsTable` is the per-sample view (count, mean, M2 for each image) that the BatchNorm
simulation, the per-image report and sampling use; it is a few dozen bytes per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import kernel

# The compiled one-pass kernel for 8-bit pixels (about 100× numpy's sums); optional, because it is
# only built where a C compiler was available at install time (see chanstats.kernel).
_moments_u8 = kernel.function("moments_u8")
_histogram_u8 = kernel.function("histogram_u8")
KERNEL_AVAILABLE = kernel.AVAILABLE


def sqrt_ratio_to_float(numerator: int, denominator: int) -> float:
    """Return the float64 nearest to ``sqrt(numerator / denominator)`` (correctly rounded).

    Uses integer square roots with a sticky bit, so no floating-point step can round twice.

    >>> sqrt_ratio_to_float(1, 4)
    0.5
    >>> sqrt_ratio_to_float(2, 1) == math.sqrt(2)
    True
    """
    if numerator < 0 or denominator <= 0:
        raise ValueError("need numerator >= 0 and denominator > 0")
    if numerator == 0:
        return 0.0
    # Scale so the integer root has at least 56 significant bits: two more than a double holds,
    # which with the sticky bit below makes the final int/int division round correctly.
    shift = max(0, 112 - (numerator.bit_length() - denominator.bit_length()))
    shift += shift & 1
    scaled, remainder = divmod(numerator << shift, denominator)
    root = math.isqrt(scaled)
    if remainder or root * root != scaled:
        root |= 1  # the true root lies strictly between root and root + 1
    return root / (1 << (shift // 2))


@dataclass(frozen=True)
class ChannelStats:
    """Final per-channel statistics of one run.

    ``mean``/``std`` are on the [0, 1] scale for integer data (raw values divided by ``scale``) and
    in the pipeline's own units for float data; ``mean_raw``/``std_raw`` are on the raw scale
    (0-255 or 0-65535). The std is the population std (ddof 0), what ``Normalize`` needs.
    ``pixels`` is one count, or one per channel (a tuple) when nodata left pixels out.
    """

    pixels: int | tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mean_raw: tuple[float, ...]
    std_raw: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]


@dataclass
class IntegerMoments:
    """Exact per-channel pixel count, sum, sum of squares, min and max of integer pixels.

    ``pixels`` is the number of pixel positions measured. ``counts`` is ``None`` when every
    channel counted all of them, else the number kept per channel (nodata left out), and a channel
    that kept none has ``None`` as min and max. Values may be signed.

    >>> m = IntegerMoments.empty(1).update(np.array([[254, 255], [254, 255]], dtype=np.uint8))
    >>> s = m.finalize(scale=255)
    >>> s.mean_raw, s.std_raw
    ((254.5,), (0.5,))
    """

    pixels: int
    sums: list[int]
    sumsq: list[int]
    mins: list[int | None]
    maxs: list[int | None]
    counts: list[int] | None = None

    @classmethod
    def empty(cls, channels: int) -> "IntegerMoments":
        return cls(0, [0] * channels, [0] * channels, [-1] * channels, [-1] * channels)

    @property
    def channels(self) -> int:
        return len(self.sums)

    def channel_counts(self) -> list[int]:
        """Pixels counted per channel."""
        return list(self.counts) if self.counts is not None else [self.pixels] * self.channels

    def update(self, pixels: np.ndarray) -> "IntegerMoments":
        """Add an (H, W) or (H, W, C) array of unsigned integer pixels."""
        return self.merge(integer_moments_of(pixels))

    def merge(self, other: "IntegerMoments") -> "IntegerMoments":
        if other.pixels == 0:
            return self
        if self.pixels == 0:
            self.pixels = other.pixels
            self.sums, self.sumsq = list(other.sums), list(other.sumsq)
            self.mins, self.maxs = list(other.mins), list(other.maxs)
            self.counts = None if other.counts is None else list(other.counts)
            return self
        if other.channels != self.channels:
            raise ValueError(f"cannot merge {other.channels} channels into {self.channels}")
        if self.counts is not None or other.counts is not None:
            self.counts = [a + b for a, b in zip(self.channel_counts(), other.channel_counts())]
        self.pixels += other.pixels
        self.sums = [a + b for a, b in zip(self.sums, other.sums)]
        self.sumsq = [a + b for a, b in zip(self.sumsq, other.sumsq)]
        self.mins = [_extreme(min, a, b) for a, b in zip(self.mins, other.mins)]
        self.maxs = [_extreme(max, a, b) for a, b in zip(self.maxs, other.maxs)]
        return self

    def finalize(self, scale: int | float) -> ChannelStats:
        """Mean and population std, each correctly rounded to float64, on both scales (a
        non-integer ``scale`` adds one rounding)."""
        counts = self.channel_counts()
        if self.pixels == 0 or min(counts) == 0:
            empty = counts.index(0) + 1 if self.pixels else 1
            raise NoPixelsError(f"no pixels{f' in band {empty} (all nodata)' if self.pixels else ''}")
        # n²·var = n·Q − S², an exact non-negative integer.
        var_numerators = [n * q - s * s for n, s, q in zip(counts, self.sums, self.sumsq)]
        return ChannelStats(
            pixels=self.pixels if self.counts is None else tuple(counts),
            mean=tuple(_ratio(s, n * scale) for n, s in zip(counts, self.sums)),
            std=tuple(_sqrt_scaled(v, n * n, scale) for n, v in zip(counts, var_numerators)),
            mean_raw=tuple(s / n for n, s in zip(counts, self.sums)),
            std_raw=tuple(sqrt_ratio_to_float(v, n * n) for n, v in zip(counts, var_numerators)),
            min=tuple(float(v) for v in self.mins),
            max=tuple(float(v) for v in self.maxs),
        )

    def to_json(self) -> dict:
        # Decimal strings: JSON readers are free to turn big integers into doubles.
        data = {
            "pixels": str(self.pixels),
            "sums": [str(v) for v in self.sums],
            "sumsq": [str(v) for v in self.sumsq],
            "mins": self.mins,
            "maxs": self.maxs,
        }
        if self.counts is not None:
            data["counts"] = [str(v) for v in self.counts]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "IntegerMoments":
        return cls(
            int(data["pixels"]),
            [int(v) for v in data["sums"]],
            [int(v) for v in data["sumsq"]],
            [None if v is None else int(v) for v in data["mins"]],
            [None if v is None else int(v) for v in data["maxs"]],
            None if data.get("counts") is None else [int(v) for v in data["counts"]],
        )


class NoPixelsError(ValueError):
    """A channel has no pixel to take statistics of (every pixel was nodata)."""


def _extreme(pick, a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else pick(a, b)


def _ratio(numerator: int, denominator: int | float) -> float:
    # int / int is correctly rounded; a float scale (e.g. 0.5) goes through Fraction to stay exact.
    if isinstance(denominator, int):
        return numerator / denominator
    from fractions import Fraction

    return float(Fraction(numerator) / Fraction(denominator))


def _sqrt_scaled(numerator: int, denominator: int, scale: int | float) -> float:
    if isinstance(scale, int):
        return sqrt_ratio_to_float(numerator, denominator * scale * scale)
    from fractions import Fraction

    exact = Fraction(scale) ** 2 * denominator  # scale is a binary float: exact as a fraction
    return sqrt_ratio_to_float(numerator * exact.denominator, exact.numerator)


def integer_moments_of(pixels: np.ndarray) -> IntegerMoments:
    """Exact moments of one (H, W) or (H, W, C) unsigned integer array."""
    if pixels.dtype.kind != "u":
        raise TypeError(f"need unsigned integer pixels, got {pixels.dtype}")
    flat = pixels.reshape(-1, 1 if pixels.ndim == 2 else pixels.shape[-1])
    if flat.shape[0] == 0:
        return IntegerMoments.empty(flat.shape[1])
    if KERNEL_AVAILABLE and pixels.dtype == np.uint8 and flat.shape[1] <= 4 and pixels.flags.c_contiguous:
        sums, sumsq, mins, maxs = _moments_u8(pixels, flat.shape[1])
        return IntegerMoments(flat.shape[0], sums, sumsq, mins, maxs)
    wide = flat.astype(np.uint64)
    # uint64 cannot overflow here: 65535² · 2³² < 2⁶⁴, far beyond any single image.
    return IntegerMoments(
        pixels=flat.shape[0],
        sums=[int(v) for v in wide.sum(axis=0)],
        sumsq=[int(v) for v in (wide * wide).sum(axis=0)],
        mins=[int(v) for v in flat.min(axis=0)],
        maxs=[int(v) for v in flat.max(axis=0)],
    )


def histogram_u8(pixels: np.ndarray) -> np.ndarray:
    """(C, 256) uint64 counts of an (H, W) or (H, W, C) uint8 array (the compiled kernel where
    present: about 8× numpy's bincount)."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
    if _histogram_u8 is not None and channels <= 4 and pixels.flags.c_contiguous:
        return np.frombuffer(_histogram_u8(pixels, channels), dtype=np.uint64).reshape(channels, 256)
    flat = pixels.reshape(-1, channels)
    return np.stack([np.bincount(flat[:, c], minlength=256) for c in range(channels)]).astype(np.uint64)


def integer_moments_and_histogram(pixels: np.ndarray, histogram: bool) -> tuple[IntegerMoments, np.ndarray | None]:
    """Exact moments of 8-bit pixels and, when asked, their (C, 256) histogram; the moments then
    come from the histogram (the same integers, one pass over the pixels)."""
    if not histogram or pixels.dtype != np.uint8 or pixels.size == 0:
        return integer_moments_of(pixels), None
    counts = histogram_u8(pixels)
    return integer_moments_from_histogram(counts), counts


def integer_moments_from_histogram(histogram: np.ndarray) -> IntegerMoments:
    """Exact moments from a (C, bins) integer histogram, e.g. Pillow's ``Image.histogram()``."""
    counts = np.asarray(histogram, dtype=np.int64)
    values = np.arange(counts.shape[1], dtype=np.int64)
    pixels = int(counts[0].sum())
    if pixels == 0:
        return IntegerMoments.empty(counts.shape[0])
    occupied = counts > 0
    # int64 is safe: 65535² · count < 2⁶³ for any image below two billion pixels.
    return IntegerMoments(
        pixels=pixels,
        sums=[int(v) for v in counts @ values],
        sumsq=[int(v) for v in counts @ (values * values)],
        mins=[int(np.argmax(row)) for row in occupied],
        maxs=[int(counts.shape[1] - 1 - np.argmax(row[::-1])) for row in occupied],
    )


@dataclass
class FloatMoments:
    """Per-channel count, mean and M2 (sum of squared deviations) in float64.

    Merged with Chan et al.'s parallel update, which stays accurate when the mean is large
    compared with the spread (the case where ``E[x**2] - E[x]**2`` collapses).

    >>> a = FloatMoments.empty(1).update(np.array([[1.0, 2.0]]))
    >>> b = FloatMoments.empty(1).update(np.array([[3.0, 4.0]]))
    >>> a.merge(b).finalize().std
    (1.118033988749895,)
    """

    pixels: int
    mean: np.ndarray
    m2: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray
    counts: np.ndarray | None = None  # per channel (int64) when nodata left pixels out

    @classmethod
    def empty(cls, channels: int) -> "FloatMoments":
        zeros = np.zeros(channels, dtype=np.float64)
        return cls(0, zeros, zeros.copy(), np.full(channels, np.inf), np.full(channels, -np.inf))

    def update(self, pixels: np.ndarray) -> "FloatMoments":
        """Add an (H, W) or (H, W, C) array of pixels (any real dtype, computed in float64)."""
        return self.merge(float_moments_of(pixels))

    def merge(self, other: "FloatMoments") -> "FloatMoments":
        if other.pixels == 0:
            return self
        if self.pixels == 0:
            self.pixels, self.mean, self.m2 = other.pixels, other.mean.copy(), other.m2.copy()
            self.mins, self.maxs = other.mins.copy(), other.maxs.copy()
            self.counts = None if other.counts is None else other.counts.copy()
            return self
        if self.counts is not None or other.counts is not None:
            return self._merge_per_channel(other)
        n_a, n_b = self.pixels, other.pixels
        n = n_a + n_b
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + other.m2 + delta * delta * (n_a * n_b / n)
        self.pixels = n
        self.mins = np.minimum(self.mins, other.mins)
        self.maxs = np.maximum(self.maxs, other.maxs)
        return self

    def channel_counts(self) -> np.ndarray:
        """Pixels counted per channel (int64)."""
        if self.counts is not None:
            return self.counts
        return np.full(len(self.mean), self.pixels, dtype=np.int64)

    def _merge_per_channel(self, other: "FloatMoments") -> "FloatMoments":
        """Chan's merge channel by channel, for counts that differ between channels."""
        n_a, n_b = self.channel_counts().astype(np.float64), other.channel_counts().astype(np.float64)
        n = n_a + n_b
        safe = np.maximum(n, 1.0)
        delta = other.mean - self.mean
        self.mean = np.where(n_b == 0, self.mean, np.where(n_a == 0, other.mean, self.mean + delta * (n_b / safe)))
        self.m2 = self.m2 + other.m2 + np.where((n_a == 0) | (n_b == 0), 0.0, delta * delta * (n_a * n_b / safe))
        self.counts = self.channel_counts() + other.channel_counts()
        self.pixels += other.pixels
        self.mins = np.minimum(self.mins, other.mins)
        self.maxs = np.maximum(self.maxs, other.maxs)
        return self

    def finalize(self, scale: int | float = 1) -> ChannelStats:
        """Mean and population std (ddof 0) in the data's own units (``*_raw``) and divided by
        ``scale``."""
        counts = self.channel_counts()
        if self.pixels == 0 or counts.min() == 0:
            empty = int(np.argmin(counts)) + 1
            raise NoPixelsError(f"no pixels{f' in band {empty} (all nodata)' if self.pixels else ''}")
        std = np.sqrt(np.maximum(self.m2, 0.0) / counts)
        mean = tuple(float(v) for v in self.mean)
        return ChannelStats(
            pixels=self.pixels if self.counts is None else tuple(int(v) for v in counts),
            mean=mean if scale == 1 else tuple(float(v) / scale for v in self.mean),
            std=tuple(float(v) for v in std) if scale == 1 else tuple(float(v) / scale for v in std),
            mean_raw=mean,
            std_raw=tuple(float(v) for v in std),
            min=tuple(float(v) for v in self.mins),
            max=tuple(float(v) for v in self.maxs),
        )


def float_moments_of(pixels: np.ndarray) -> FloatMoments:
    """Two-pass float64 moments of one (H, W) or (H, W, C) array."""
    flat = pixels.reshape(-1, 1 if pixels.ndim == 2 else pixels.shape[-1]).astype(np.float64)
    if flat.shape[0] == 0:
        return FloatMoments.empty(flat.shape[1])
    mean = flat.mean(axis=0)
    centred = flat - mean
    return FloatMoments(
        pixels=flat.shape[0],
        mean=mean,
        m2=np.einsum("ij,ij->j", centred, centred),
        mins=flat.min(axis=0),
        maxs=flat.max(axis=0),
    )


@dataclass
class MomentsTable:
    """Per-sample moments in listing order: what BatchNorm simulation and per-image views need.

    ``count[i]`` is the number of pixels per channel of sample ``i``; ``mean[i, c]`` and
    ``m2[i, c]`` are its channel mean and sum of squared deviations, in model units ([0, 1] for
    integer images, the pipeline's own units for float output).
    """

    count: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    mean: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float64))
    m2: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float64))

    def __len__(self) -> int:
        return len(self.count)

    @property
    def channels(self) -> int:
        return self.mean.shape[1]

    @classmethod
    def from_rows(cls, rows: list[tuple[int, np.ndarray, np.ndarray]], channels: int) -> "MomentsTable":
        if not rows:
            return cls(np.zeros(0, np.int64), np.zeros((0, channels)), np.zeros((0, channels)))
        return cls(
            np.array([r[0] for r in rows], dtype=np.int64),
            np.array([r[1] for r in rows], dtype=np.float64).reshape(len(rows), channels),
            np.array([r[2] for r in rows], dtype=np.float64).reshape(len(rows), channels),
        )

    @classmethod
    def from_packed(cls, packed: np.ndarray, channels: int, per_channel: bool = False) -> "MomentsTable":
        """From an (n, 1 + 2·channels) array of rows ``count, means..., M2s...`` (with
        ``per_channel`` counts, (n, 3·channels): ``counts..., means..., M2s...``); ``mean`` and
        ``m2`` are views into it, not copies."""
        if per_channel:
            c = channels
            return cls(packed[:, :c].astype(np.int64), packed[:, c : 2 * c], packed[:, 2 * c : 3 * c])
        return cls(packed[:, 0].astype(np.int64), packed[:, 1 : 1 + channels], packed[:, 1 + channels : 1 + 2 * channels])

    @property
    def per_channel(self) -> bool:
        """Whether counts differ per channel (``count`` is (n, C)) rather than per sample (n,)."""
        return self.count.ndim == 2

    def channel_count(self) -> np.ndarray:
        """Counts as an (n, 1) or (n, C) array that broadcasts against ``mean``."""
        return self.count if self.per_channel else self.count[:, None]

    def pooled(self, groups: int) -> "MomentsTable":
        """Every ``groups`` consecutive rows merged into one (closed-form Chan merge), e.g. an
        image's samples over several epochs."""
        if groups == 1:
            return self
        count = self.count.reshape(-1, groups, *self.count.shape[1:])
        mean = self.mean.reshape(count.shape[0], groups, -1)
        m2 = self.m2.reshape(count.shape[0], groups, -1)
        weights = (count if self.per_channel else count[:, :, None]).astype(np.float64)
        total = count.sum(axis=1)
        pooled_mean = (weights * mean).sum(axis=1) / np.maximum(total, 1).reshape(len(total), -1)
        pooled_m2 = m2.sum(axis=1) + (weights * (mean - pooled_mean[:, None, :]) ** 2).sum(axis=1)
        return MomentsTable(total, pooled_mean, pooled_m2)

    def take(self, indices: np.ndarray) -> "MomentsTable":
        return MomentsTable(self.count[indices], self.mean[indices], self.m2[indices])

    def totals(self) -> FloatMoments:
        """All samples pooled (closed-form Chan merge; the result does not depend on row order
        beyond float64 summation, which :func:`math.fsum` makes exact before rounding)."""
        channels = self.channels
        if self.per_channel:
            return self._per_channel_totals()
        total = int(self.count.sum())
        if total == 0:
            return FloatMoments.empty(channels)
        weights = self.count.astype(np.float64)
        mean = np.array([math.fsum(weights * self.mean[:, c]) / total for c in range(channels)])
        deviation = self.mean - mean
        m2 = np.array(
            [math.fsum(self.m2[:, c]) + math.fsum(weights * deviation[:, c] ** 2) for c in range(channels)]
        )
        return FloatMoments(total, mean, m2, np.full(channels, np.nan), np.full(channels, np.nan))

    def _per_channel_totals(self) -> FloatMoments:
        channels = self.channels
        totals = self.count.sum(axis=0).astype(np.int64)
        weights = self.count.astype(np.float64)
        mean = np.array([math.fsum(weights[:, c] * self.mean[:, c]) / max(int(totals[c]), 1) for c in range(channels)])
        deviation = self.mean - mean
        m2 = np.array(
            [math.fsum(self.m2[:, c]) + math.fsum(weights[:, c] * deviation[:, c] ** 2) for c in range(channels)]
        )
        nan = np.full(channels, np.nan)
        return FloatMoments(int(totals.max(initial=0)), mean, m2, nan, nan.copy(), totals)


def integer_sample_row(moments: IntegerMoments, scale: int | float) -> tuple[int | list[int], list[float], list[float]]:
    """One image's (count, mean, M2) on the [0, 1] scale, each correctly rounded from integers;
    counts per channel (a list) when nodata left pixels out."""
    if moments.counts is not None:
        counts = moments.counts
        means = [_ratio(s, n * scale) if n else 0.0 for n, s in zip(counts, moments.sums)]
        m2s = [_ratio(n * q - s * s, n * scale * scale) if n else 0.0 for n, s, q in zip(counts, moments.sums, moments.sumsq)]
        return list(counts), means, m2s
    if not isinstance(scale, int):
        n = moments.pixels
        return (n, [_ratio(s, n * scale) for s in moments.sums],
                [_ratio(n * q - s * s, n * scale * scale) for s, q in zip(moments.sums, moments.sumsq)])
    n = moments.pixels
    if n == 0:
        return 0, [0.0] * moments.channels, [0.0] * moments.channels
    means = [s / (n * scale) for s in moments.sums]
    # M2 = Q − S²/n = (n·Q − S²)/n, on the [0, 1] scale divided by scale². Python's int / int is
    # correctly rounded (like float(Fraction(a, b)), at a fraction of the cost).
    m2s = [(n * q - s * s) / (n * scale * scale) for s, q in zip(moments.sums, moments.sumsq)]
    return n, means, m2s
