"""Exact moments, nodata exclusion and histograms of 8- and 16-bit integer pixels in one pass.

The compiled kernel (``histogram_moments`` in ``_kernels.c``) counts every value of every channel
and derives the exact moments from the counts; nodata is one bin per channel left out of the
counts, since for integer pixels "equals the band's nodata value" and "falls in that bin" are the
same thing. One pass over the pixels replaces a nodata mask, a masked copy per band, the moments and
a ``bincount`` per band, which together cost several times the pass.

The results are those of the numpy path (:func:`~chanstats.stats.nodata.masked_integer_moments`
and :meth:`~chanstats.stats.histogram.ChannelHistogram.update`), integer for integer, which stays
the fallback where the kernel is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .. import kernel
from .histogram import BandCounts, ChannelHistogram
from .nodata import MaskedIntegerMoments, Number

_histogram_moments = kernel.function("histogram_moments")


@dataclass(frozen=True)
class Counted:
    """What one pass gave: exact moments of the pixels kept, and their histogram when asked for."""

    moments: MaskedIntegerMoments
    histogram: ChannelHistogram | None


def can_count(pixels: np.ndarray) -> bool:
    """Whether :func:`count_pixels` takes these pixels: an (H, W, C) 8- or 16-bit integer array in
    native byte order, not empty, and the kernel present."""
    dtype = pixels.dtype
    return (
        _histogram_moments is not None
        and pixels.ndim == 3
        and pixels.size > 0
        and dtype.kind in "iu"
        and dtype.itemsize <= 2
        and dtype.isnative
    )


def count_pixels(pixels: np.ndarray, nodata: Sequence[Number | None], keep_histogram: bool) -> Counted:
    """Exact per-channel moments of an (H, W, C) 8- or 16-bit array (see :func:`can_count`),
    leaving out the pixels of band ``c`` equal to ``nodata[c]`` (``None``: none; a value the dtype
    cannot hold matches nothing, as in :class:`~chanstats.stats.nodata.BandNodata`), and with
    ``keep_histogram`` their exact histogram.

    Chunky pixels are read in one pass, planar ones (each band a contiguous plane, as a planar
    TIFF gives them) plane by plane; any other layout is copied to chunky first.
    """
    channels = pixels.shape[2]
    offset = int(np.iinfo(pixels.dtype).min)
    bins = [_nodata_bin(value, pixels.dtype) for value in nodata]
    if pixels.flags.c_contiguous:
        parts = [_count(pixels, channels, bins, keep_histogram)]
    elif _planes_contiguous(pixels):
        parts = [_count(pixels[:, :, c], 1, bins[c : c + 1], keep_histogram) for c in range(channels)]
    else:
        parts = [_count(np.ascontiguousarray(pixels), channels, bins, keep_histogram)]
    kept, sums, squares, lows, highs, counts = (sum((list(part[k]) for part in parts), []) for k in range(6))
    moments = MaskedIntegerMoments(
        counts=tuple(kept),
        sums=tuple(s + n * offset for n, s in zip(kept, sums)),
        # (u + o)² summed over the kept pixels, from the sums of u and u² the kernel counted.
        sums_of_squares=tuple(q + 2 * offset * s + n * offset * offset for n, s, q in zip(kept, sums, squares)),
        mins=tuple(None if low is None else low + offset for low in lows),
        maxs=tuple(None if high is None else high + offset for high in highs),
    )
    histogram = None
    if keep_histogram:
        histogram = ChannelHistogram([_band_counts(low, data, offset) for low, data in zip(lows, counts)])
    return Counted(moments, histogram)


def _count(pixels: np.ndarray, channels: int, bins: list[int], keep_histogram: bool):
    return _histogram_moments(pixels, pixels.dtype.itemsize, channels, pixels.dtype.kind == "i", bins, keep_histogram)


def _planes_contiguous(pixels: np.ndarray) -> bool:
    height, width, _ = pixels.shape
    item = pixels.dtype.itemsize
    return (height == 1 or pixels.strides[0] == width * item) and (width == 1 or pixels.strides[1] == item)


def _nodata_bin(value: Number | None, dtype: np.dtype) -> int:
    """The kernel's bin (value minus the dtype's minimum) of a band's nodata value; -1 where it
    matches no pixel (no value, NaN, not an integer, outside the dtype's range)."""
    if value is None:
        return -1
    info = np.iinfo(dtype)
    as_float = float(value)
    if not as_float.is_integer() or not info.min <= value <= info.max:
        return -1
    return int(value) - int(info.min)


def _band_counts(low: int | None, data: bytes, offset: int) -> BandCounts:
    if low is None:
        return BandCounts.empty()
    # A writable copy, like the numpy path's, so that nothing downstream meets a read-only array.
    return BandCounts(low + offset, np.frombuffer(data, dtype=np.uint64).copy())
