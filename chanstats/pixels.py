"""Measuring pixels that arrive as arrays rather than encoded files: images in NumPy files, and
samples of a Python dataset (tensors, arrays, PIL images).

:func:`measure_pixels_of` is the one place where an in-memory image becomes a
:class:`~chanstats.measure.Measurement`; everything that measures arrays goes through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .decoding.formats import NAMES_BY_COUNT, PixelFormat
from .errors import BadImageError, BadSpecError
from .measure import Measurement, Measurer, measure_output
from .sources.arrays import ArrayItem, read_pixels
from .sources.base import ImageSource


def measure_pixels_of(pixels: np.ndarray, shown: str, epochs: int = 1) -> Measurement:
    """The measurement of one ``(H, W, C)`` image, the same for each of ``epochs`` samples.

    uint8 and uint16 pixels take the exact integer path (full scale 255 or 65535); floats and
    other integers the float64 path, in their own units. A sample with NaN or infinite values is
    a bad image.
    """
    if pixels.ndim != 3:
        raise BadImageError(shown, f"pixels of shape {pixels.shape}; expected (H, W, C)")
    if pixels.dtype.kind not in "uif":
        raise BadImageError(shown, f"{pixels.dtype} pixels; expected integers or floats")
    channels = pixels.shape[-1]
    names = NAMES_BY_COUNT.get(channels, tuple(f"c{i}" for i in range(channels)))
    try:
        pixel_format, moments, row = measure_output(np.ascontiguousarray(pixels), PixelFormat(names, 1), shown)
    except BadSpecError:  # the only complaint left about an array: NaN or infinite values
        raise BadImageError(shown, "holds NaN or infinite values") from None
    height, width = pixels.shape[:2]
    return Measurement(pixel_format, width, height, False, [moments] * epochs, [row] * epochs)


@dataclass(frozen=True)
class ArrayMeasurer(Measurer):
    """A :class:`Measurer` that also measures images held in NumPy files (as they are stored:
    ``mode`` does not convert them)."""

    def __call__(self, index: int, source: ImageSource) -> Measurement:
        if isinstance(source, ArrayItem):
            return measure_pixels_of(read_pixels(source), source.display, self.epochs)
        return Measurer.__call__(self, index, source)


def needs_array_measurer(sources: Any) -> bool:
    """Whether a listing holds images from NumPy files."""
    return any(isinstance(source, ArrayItem) for source in sources)
