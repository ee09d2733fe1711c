"""A mergeable quantile sketch for float pixels with a guaranteed relative value error.

:class:`QuantileSketch` puts every value into a bucket made of the float64 numbers that share the
sign, the exponent and the top ``mantissa_bits`` bits of the mantissa (default 10), and counts the
values per bucket exactly. The bucket of a value is read from its bits, with no logarithm, so it is
the same on every machine; merging adds integer counts, so a sketch does not depend on the order of
merges: the same pixels give the same sketch, byte for byte, whatever the worker count.

**Guarantee.** Let v be the exact inverted-CDF q-th percentile of the values added (what
``numpy.percentile(values, q, method="inverted_cdf")`` returns, see
:func:`chanstats.stats.histogram.percentile_rank`). :meth:`QuantileSketch.percentiles` returns v̂ with

    |v̂ − v| ≤ 2**-(mantissa_bits + 1) · |v|      (≈ 0.049 % of |v| for the default 10 bits)

for every q and every normal float64 v (|v| ≥ 2**-1022); v = 0 is returned exactly, and for
subnormal v, |v̂ − v| ≤ 2**-(1022 + mantissa_bits). This holds exactly (no rounding enters: v̂ is the midpoint of v's bucket,
clamped to the exact min and max), for any data and any number of merges. q = 0 and q = 100 give the
exact min and max. This is a bound on the *value*, not on the rank: a rank-error sketch (KLL, GK,
t-digest) with error ε·n could answer the 0.5th percentile with anything up to the 1st at
ε = 0.5 %, while clipping to tail percentiles needs the values right.

Size: at most 2**mantissa_bits buckets per power of two per sign that the data occupies (data in
[1e-3, 1e4] uses at most 24 binades, about 24 000 buckets), never more than the distinct values.
NaN values are skipped (they are nodata or an error, which callers decide); infinities are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .histogram import DEFAULT_PERCENTILES, BandCounts, kept_values, percentile_rank

DEFAULT_MANTISSA_BITS = 10


@dataclass(frozen=True)
class SketchStats:
    """Per-channel results of a :class:`QuantileSketch`: counts, exact min and max, and
    ``percentiles[i][c]``, the ``qs[i]``-th percentile of channel ``c`` within ``relative_error``
    (``None`` for a channel without values)."""

    pixels: tuple[int, ...]
    mins: tuple[float | None, ...]
    maxs: tuple[float | None, ...]
    qs: tuple[float, ...]
    percentiles: tuple[tuple[float | None, ...], ...]
    relative_error: float


@dataclass(eq=False)
class QuantileSketch:
    """Mergeable per-channel quantile sketches of float values.

    >>> s = QuantileSketch.empty(1).update(np.array([[0.1, 0.2, 0.3, np.nan, 0.4]]))
    >>> s.counts(), s.percentiles([0, 100])
    ([4], ((0.1,), (0.4,)))
    >>> abs(s.percentiles([50])[0][0] - 0.2) <= s.relative_error * 0.2
    True
    """

    mantissa_bits: int
    buckets: list[BandCounts]
    mins: list[float | None]
    maxs: list[float | None]

    @classmethod
    def empty(cls, channels: int, mantissa_bits: int = DEFAULT_MANTISSA_BITS) -> "QuantileSketch":
        if not 0 <= mantissa_bits <= 51:
            raise ValueError("mantissa_bits must be between 0 and 51")
        return cls(mantissa_bits, [BandCounts.empty() for _ in range(channels)], [None] * channels, [None] * channels)

    @property
    def channels(self) -> int:
        return len(self.buckets)

    @property
    def relative_error(self) -> float:
        """The guaranteed bound on |v̂ − v| / |v| (normal float64 values)."""
        return 2.0 ** -(self.mantissa_bits + 1)

    def update(self, pixels: np.ndarray, mask: np.ndarray | None = None) -> "QuantileSketch":
        """Add an (H, W) or (H, W, C) array of real values; ``mask`` (boolean, ``True`` = leave
        out) is (H, W) for every channel or (H, W, C) per channel. NaN values are skipped; an
        infinite value raises ``ValueError``."""
        if pixels.dtype.kind not in "fiu":
            raise TypeError(f"need real pixels, got {pixels.dtype}")
        for channel, values in enumerate(kept_values(pixels, mask, self.channels, "sketch")):
            values = values.astype(np.float64, copy=False)
            values = values[~np.isnan(values)]
            if values.size == 0:
                continue
            if not np.isfinite(values).all():
                raise ValueError("infinite value in the data")
            self._add(channel, BandCounts.of(self._bucket_ids(values)), float(values.min()), float(values.max()))
        return self

    def merge(self, other: "QuantileSketch") -> "QuantileSketch":
        if other.channels != self.channels or other.mantissa_bits != self.mantissa_bits:
            raise ValueError("cannot merge sketches of different channels or precision")
        for channel in range(self.channels):
            if not other.buckets[channel].is_empty:
                self._add(channel, other.buckets[channel], other.mins[channel], other.maxs[channel])
        return self

    def counts(self) -> list[int]:
        """Values counted per channel."""
        return [band.total() for band in self.buckets]

    def percentiles(self, qs: Iterable[float]) -> tuple[tuple[float | None, ...], ...]:
        """Inverted-CDF percentiles within :attr:`relative_error`, shape (len(qs), C); ``None`` for
        an empty channel."""
        qs = tuple(qs)
        per_channel = [self._channel_percentiles(channel, qs) for channel in range(self.channels)]
        return tuple(tuple(values) for values in zip(*per_channel)) if per_channel else tuple(() for _ in qs)

    def finalize(self, qs: Iterable[float] = DEFAULT_PERCENTILES) -> SketchStats:
        qs = tuple(qs)
        return SketchStats(
            pixels=tuple(self.counts()),
            mins=tuple(self.mins),
            maxs=tuple(self.maxs),
            qs=qs,
            percentiles=self.percentiles(qs),
            relative_error=self.relative_error,
        )

    def to_json(self) -> dict:
        """Plain JSON data (integers and exactly round-tripping floats)."""
        return {
            "mantissa_bits": self.mantissa_bits,
            "channels": [
                {"min": low, "max": high, "buckets": band.to_json()}
                for low, high, band in zip(self.mins, self.maxs, self.buckets)
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> "QuantileSketch":
        channels = data["channels"]
        return cls(
            int(data["mantissa_bits"]),
            [BandCounts.from_json(channel["buckets"]) for channel in channels],
            [None if c["min"] is None else float(c["min"]) for c in channels],
            [None if c["max"] is None else float(c["max"]) for c in channels],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantileSketch):
            return NotImplemented
        return self.to_json() == other.to_json()

    def _add(self, channel: int, buckets: BandCounts, low: float, high: float) -> None:
        self.buckets[channel] = self.buckets[channel].merge(buckets)
        known_low, known_high = self.mins[channel], self.maxs[channel]
        self.mins[channel] = low if known_low is None else min(known_low, low)
        self.maxs[channel] = high if known_high is None else max(known_high, high)

    def _bucket_ids(self, values: np.ndarray) -> np.ndarray:
        """Bucket ids, increasing with the value: the top bits of |x|, negated (minus one) for
        x < 0 so that -0.0 and 0.0 share bucket 0 and negative buckets sort below it."""
        magnitude = (np.abs(values).view(np.uint64) >> np.uint64(52 - self.mantissa_bits)).astype(np.int64)
        return np.where(values < 0, -magnitude - 1, magnitude)

    def _representative(self, bucket: int) -> float:
        """The midpoint of a bucket: its lowest value plus half its width (exact in float64); 0
        for the buckets next to zero, so that zeros, common in rasters, come back exact."""
        shift = 52 - self.mantissa_bits
        magnitude = bucket if bucket >= 0 else -bucket - 1
        if magnitude == 0:
            return 0.0
        low = float(np.array(magnitude << shift, dtype=np.uint64).view(np.float64))
        # The bucket holds 2**shift consecutive floats of one binade (or the subnormals).
        middle = low + float(np.spacing(low)) * 2.0 ** (shift - 1) if shift else low
        return middle if bucket >= 0 else -middle

    def _channel_percentiles(self, channel: int, qs: tuple[float, ...]) -> list[float | None]:
        band = self.buckets[channel]
        n = band.total()
        if n == 0:
            return [None] * len(qs)
        low, high = self.mins[channel], self.maxs[channel]
        ranks = [percentile_rank(q, n) for q in qs]
        answers = []
        for rank, bucket in zip(ranks, band.kth_smallest(ranks)):
            if rank == 1 or rank == n:
                answers.append(low if rank == 1 else high)  # the extremes are kept exactly
            else:
                # Clamping only moves the answer towards the true value, which lies in [min, max].
                answers.append(min(max(self._representative(bucket), low), high))
        return answers

