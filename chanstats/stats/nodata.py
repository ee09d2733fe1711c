"""Nodata: which pixels every statistic leaves out, and exact moments of the pixels that remain.

``--nodata`` takes one value for every band (``0``), one value per band (``0,0,65535``), ``nan``,
or ``none``. Precedence (:meth:`BandNodata.resolve`): the option when given (``none`` switches off
a nodata value stored in the file), else the file's GeoTIFF ``GDAL_NODATA`` tag, else no nodata.

Nodata is per band, as in GDAL: a pixel is left out of band ``c`` when its value in band ``c``
equals that band's nodata value, so bands can end with different pixel counts. The value is
compared in the pixels' own type (as GDAL casts nodata to the band type); a value that the type
cannot hold (``-9999`` for uint16, ``0.5`` for integers, ``nan`` for integers) matches no pixel.

Moments of the remaining pixels: :func:`masked_integer_moments` (exact Python integers) and
:func:`masked_float_moments` (float64, two-pass). In float data a NaN or infinity that nodata does
not exclude makes the image bad: :func:`nonfinite_reason` says why, in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import BadSpecError

Number = int | float
# Integer sums of squares are exact in uint64 up to this many pixels per band and call.
MAX_PIXELS_PER_CALL = 1 << 32


@dataclass(frozen=True)
class NodataOption:
    """What ``--nodata`` said: one value, one per band, or none (``values == ()``)."""

    values: tuple[Number, ...]

    @property
    def is_none(self) -> bool:
        return not self.values

    def __str__(self) -> str:
        return ",".join(_format_value(v) for v in self.values) if self.values else "none"


def parse_nodata(text: str) -> NodataOption:
    """Parse a ``--nodata`` value; integral numbers become ints so they compare exactly.

    >>> parse_nodata("0,0,65535").values
    (0, 0, 65535)
    >>> parse_nodata("nan"), parse_nodata(" none ").is_none, parse_nodata("-3.5e38").values
    (NodataOption(values=(nan,)), True, (-3.5e+38,))
    """
    cleaned = text.strip()
    if cleaned.lower() == "none":
        return NodataOption(())
    items = [item.strip() for item in cleaned.split(",")]
    values = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise BadSpecError(f"--nodata {text!r}: {item!r} is not a number, nan or none") from None
        values.append(_as_int_when_integral(value) if math.isfinite(value) else value)
    return NodataOption(tuple(values))


@dataclass(frozen=True)
class BandNodata:
    """The nodata value of each band (``None``: the band has none) and the mask it implies.

    >>> nodata = BandNodata.resolve(parse_nodata("0"), file_value=None, bands=2)
    >>> nodata.mask(np.array([[[0, 5], [7, 0]]], dtype=np.uint16))[0].tolist()
    [[True, False], [False, True]]
    """

    values: tuple[Number | None, ...]

    @classmethod
    def resolve(cls, option: NodataOption | None, file_value: Number | None, bands: int) -> "BandNodata":
        """Nodata per band: the option when given, else the file's tag, else none.

        Raises :class:`BadSpecError` when the option lists a number of values other than 1 or
        ``bands``."""
        if option is not None:
            if option.is_none:
                return cls((None,) * bands)
            if len(option.values) == 1:
                return cls(option.values * bands)
            if len(option.values) != bands:
                raise BadSpecError(
                    f"--nodata gives {len(option.values)} values but the image has {bands} bands (give 1 or {bands})"
                )
            return cls(option.values)
        return cls((file_value,) * bands)

    @property
    def active(self) -> bool:
        """Whether any band has a nodata value."""
        return any(value is not None for value in self.values)

    def mask(self, pixels: np.ndarray) -> np.ndarray | None:
        """Boolean (H, W, C), ``True`` where a pixel is nodata in its band; ``None`` when no band
        has nodata (nothing to leave out)."""
        pixels = _as_hwc(pixels)
        if pixels.shape[2] != len(self.values):
            raise ValueError(f"{pixels.shape[2]} bands given to nodata for {len(self.values)}")
        if not self.active:
            return None
        mask = np.zeros(pixels.shape, dtype=bool)
        for channel, value in enumerate(self.values):
            if value is not None:
                _mark_band(mask[:, :, channel], pixels[:, :, channel], value)
        return mask


def _mark_band(out: np.ndarray, band: np.ndarray, value: Number) -> None:
    # Assigned, not written with ufunc out=: numpy 2.4's isnan writes wrong results into a strided
    # out= view (one band of an (H, W, C) mask).
    if isinstance(value, float) and math.isnan(value):
        if band.dtype.kind == "f":
            out[...] = np.isnan(band)
        return
    if band.dtype.kind in "iu":
        info = np.iinfo(band.dtype)
        if float(value).is_integer() and info.min <= value <= info.max:
            out[...] = band == band.dtype.type(int(value))
        return
    with np.errstate(over="ignore"):  # a value beyond float32's range matches nothing, as inf would
        out[...] = band == band.dtype.type(value)


@dataclass(frozen=True)
class MaskedIntegerMoments:
    """Exact per-channel moments of the pixels kept, in raw units: pixel counts, sums of values and
    of squared values (Python integers), min and max (``None`` for a channel with no pixel)."""

    counts: tuple[int, ...]
    sums: tuple[int, ...]
    sums_of_squares: tuple[int, ...]
    mins: tuple[int | None, ...]
    maxs: tuple[int | None, ...]


def masked_integer_moments(pixels: np.ndarray, mask: np.ndarray | None = None) -> MaskedIntegerMoments:
    """Exact moments per channel of an (H, W) or (H, W, C) integer array (8 to 32 bits, signed or
    not), leaving out pixels where ``mask`` (boolean, (H, W) or (H, W, C)) is ``True``.

    >>> m = masked_integer_moments(np.array([[-32768, 32767, 0]], dtype=np.int16), np.array([[False, False, True]]))
    >>> m.counts, m.sums, m.sums_of_squares
    ((2,), (-1,), (2147418113,))
    """
    pixels = _as_hwc(pixels)
    if pixels.dtype.kind not in "iu" or pixels.dtype.itemsize > 4:
        raise TypeError(f"need integer pixels of at most 32 bits, got {pixels.dtype}")
    per_channel = [_integer_band_moments(values) for values in _kept_values(pixels, mask)]
    return MaskedIntegerMoments(*(tuple(column) for column in zip(*per_channel)))


def _integer_band_moments(values: np.ndarray) -> tuple[int, int, int, int | None, int | None]:
    n = values.size
    if n == 0:
        return 0, 0, 0, None, None
    if n > MAX_PIXELS_PER_CALL:
        raise ValueError(f"more than {MAX_PIXELS_PER_CALL} pixels in one band: split the array")
    # Shift to unsigned (u = v - offset >= 0) so that every partial sum below fits in uint64.
    offset = int(np.iinfo(values.dtype).min)
    unsigned = (values.astype(np.int64) - offset).astype(np.uint64)
    if values.dtype.itemsize <= 2:
        sum_u = int(unsigned.sum(dtype=np.uint64))
        sum_u2 = int((unsigned * unsigned).sum(dtype=np.uint64))  # u² < 2³², n ≤ 2³²
    else:
        # 32-bit: u = high·2¹⁶ + low with both halves < 2¹⁶, so each product is below 2³².
        high, low = unsigned >> np.uint64(16), unsigned & np.uint64(0xFFFF)
        sum_high, sum_low = int(high.sum(dtype=np.uint64)), int(low.sum(dtype=np.uint64))
        sum_u = (sum_high << 16) + sum_low
        sum_u2 = (
            (int((high * high).sum(dtype=np.uint64)) << 32)
            + (int((high * low).sum(dtype=np.uint64)) << 17)
            + int((low * low).sum(dtype=np.uint64))
        )
    total = sum_u + n * offset
    total_squares = sum_u2 + 2 * offset * sum_u + n * offset * offset
    return n, total, total_squares, int(values.min()), int(values.max())


@dataclass(frozen=True)
class MaskedFloatMoments:
    """Per-channel float64 moments of the pixels kept: counts, means, M2 (sum of squared
    deviations from the mean; population variance = M2 / count), min and max. Means, min and max
    are ``None`` for a channel with no pixel (its M2 is 0)."""

    counts: tuple[int, ...]
    means: tuple[float | None, ...]
    m2s: tuple[float, ...]
    mins: tuple[float | None, ...]
    maxs: tuple[float | None, ...]


def masked_float_moments(pixels: np.ndarray, mask: np.ndarray | None = None) -> MaskedFloatMoments:
    """Float64 moments per channel of an (H, W) or (H, W, C) real array, two-pass within the
    array (mean first, then squared deviations, with the rounding of the mean corrected), leaving
    out pixels where ``mask`` is ``True``. Values must be finite (see :func:`nonfinite_reason`).

    >>> m = masked_float_moments(np.array([[1e9 + 1, 1e9 + 2, 1e9 + 3, -1.0]]), np.array([[0, 0, 0, 1]], bool))
    >>> m.counts, m.means, m.m2s
    ((3,), (1000000002.0,), (2.0,))
    """
    pixels = _as_hwc(pixels)
    per_channel = [_float_band_moments(values) for values in _kept_values(pixels, mask)]
    return MaskedFloatMoments(*(tuple(column) for column in zip(*per_channel)))


def _float_band_moments(values: np.ndarray) -> tuple[int, float | None, float, float | None, float | None]:
    n = values.size
    if n == 0:
        return 0, None, 0.0, None, None
    x = np.ascontiguousarray(values, dtype=np.float64)
    mean = float(x.sum()) / n
    deviations = x - mean
    drift = float(deviations.sum())
    # Corrected two-pass (Chan, Golub & LeVeque): removes the error of the rounded mean.
    m2 = float((deviations * deviations).sum()) - drift * drift / n
    return n, mean + drift / n, max(m2, 0.0), float(x.min()), float(x.max())


def nonfinite_reason(pixels: np.ndarray, mask: np.ndarray | None = None) -> str | None:
    """For float pixels, a one-line reason (for :class:`~chanstats.errors.BadImageError`) when a
    pixel that ``mask`` does not exclude is NaN or infinite; ``None`` when all are finite.

    >>> nonfinite_reason(np.array([[1.0, np.nan, np.nan]]))
    'band 1 has 2 NaN pixels (use --nodata nan to leave NaN out)'
    >>> nonfinite_reason(np.array([[1.0, np.nan]]), np.array([[False, True]])) is None
    True
    """
    pixels = _as_hwc(pixels)
    if pixels.dtype.kind != "f":
        return None
    for channel, values in enumerate(_kept_values(pixels, mask), start=1):
        if np.isfinite(values).all():
            continue
        nans = int(np.isnan(values).sum())
        if nans:
            return f"band {channel} has {nans} NaN pixel{'s' if nans > 1 else ''} (use --nodata nan to leave NaN out)"
        infinite = int(np.isinf(values).sum())
        return f"band {channel} has {infinite} infinite pixel{'s' if infinite > 1 else ''}"
    return None


def _kept_values(pixels: np.ndarray, mask: np.ndarray | None) -> Iterator[np.ndarray]:
    """Per channel of an (H, W, C) array, the 1-D array of pixels not masked out."""
    from .histogram import kept_values

    return kept_values(pixels, mask, pixels.shape[2], "band")


def _as_hwc(pixels: np.ndarray) -> np.ndarray:
    return pixels[:, :, np.newaxis] if pixels.ndim == 2 else pixels


def _as_int_when_integral(value: float) -> Number:
    # Only where float64 counts every integer: -3.4e38 (float32 nodata) stays a float.
    return int(value) if value.is_integer() and abs(value) <= 2**53 else value


def _format_value(value: Number) -> str:
    return str(value) if not (isinstance(value, float) and math.isnan(value)) else "nan"
