"""What decoded pixels are: the one table of modes, channel names and bit depths.

Every decoder (:mod:`.pillow`, :mod:`.jpeg`, :mod:`.png`) and the measurement of a transform's
output describe pixels with a :class:`PixelFormat` from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ..errors import ChanstatsError

if TYPE_CHECKING:  # only types here; importing them would load numpy for `chanstats --help`
    import numpy as np

    from ..stats.moments import IntegerMoments

# The ``--mode`` choices: torchvision's RGB loader, greyscale, or the file's own channels.
MODES = ("RGB", "L", "keep")

# Pillow mode → channel names, for the 8-bit modes chanstats measures.
CHANNEL_NAMES = {
    "L": ("L",),
    "LA": ("L", "A"),
    "RGB": ("R", "G", "B"),
    "RGBA": ("R", "G", "B", "A"),
    "CMYK": ("C", "M", "Y", "K"),
}
# Channel count → names, for pixels that come without a Pillow mode (PNG rows, arrays, tensors).
NAMES_BY_COUNT = {1: CHANNEL_NAMES["L"], 2: CHANNEL_NAMES["LA"], 3: CHANNEL_NAMES["RGB"], 4: CHANNEL_NAMES["RGBA"]}
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

EIGHT_BIT = 255
SIXTEEN_BIT = 65535
FLOAT_SCALE = 1  # float output is measured in its own units
# The dtype of the 8- and 16-bit images that carry no dtype name (Pillow's and the fast paths').
_DTYPE_OF_SCALE = {EIGHT_BIT: "uint8", SIXTEEN_BIT: "uint16"}


def default_scale(dtype) -> int:
    """The full-scale value that maps to 1.0 when ``--scale`` is not given: 255 for uint8, 65535
    for uint16, else 1 (raw units: "[0, 1]" means nothing for int16 SAR or a float elevation)."""
    name = str(dtype)
    return EIGHT_BIT if name == "uint8" else SIXTEEN_BIT if name == "uint16" else FLOAT_SCALE


def channel_names(count: int) -> tuple[str, ...]:
    """Default names of ``count`` channels: R, G, B (A) or L (A) up to four, else b1..bN."""
    return NAMES_BY_COUNT.get(count, tuple(f"b{i}" for i in range(1, count + 1)))


@dataclass(frozen=True, eq=False)
class PixelFormat:
    """What a decoded image's pixels are: channel names and the value of full scale (1 for the
    float output of a transform, measured in its own units).

    Rasters and arrays also carry their numpy ``dtype`` name (``""`` for the 8- and 16-bit images
    of Pillow and the fast paths, whose ``scale`` says the depth) and ``masked``: nodata is in
    effect, so pixel counts are per channel.

    Two formats are equal when the pixels are the same kind whatever the container: 16-bit grey
    from a PNG (``dtype`` ``""``, scale 65535) equals 16-bit grey from a TIFF (``"uint16"``), so
    that the images of a mixed folder are measured together. The first format met represents them
    (its ``dtype`` is what the output reports).
    """

    channels: tuple[str, ...]
    scale: int | float
    dtype: str = ""
    masked: bool = False

    @property
    def stored_as(self) -> str:
        """The pixels' numpy dtype name: ``dtype`` when given, else the one ``scale`` implies
        (``uint8`` for 255, ``uint16`` for 65535, ``float`` for a transform's output)."""
        return self.dtype or _DTYPE_OF_SCALE.get(self.scale, "float")

    def _kind(self) -> tuple:
        return (self.channels, self.scale, self.stored_as, self.masked)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PixelFormat) and self._kind() == other._kind()

    def __hash__(self) -> int:
        return hash(self._kind())

    @property
    def label(self) -> str:
        """``"RGB 8-bit"``, ``"L 16-bit"``, ``"RGB float"``, ``"13 bands uint16 with nodata"``:
        used in messages about mixed formats."""
        if self.dtype:
            names = "".join(self.channels) if all(len(c) == 1 for c in self.channels) else f"{len(self.channels)} bands"
            return f"{names} {self.dtype}" + (" with nodata" if self.masked else "") + (f" scale {self.scale:g}")
        if self.scale == 1:
            return f"{''.join(self.channels)} float"
        bits = 16 if self.scale == 65535 else 8
        return f"{''.join(self.channels)} {bits}-bit"


RGB_8BIT = PixelFormat(CHANNEL_NAMES["RGB"], EIGHT_BIT)
GREY_8BIT = PixelFormat(CHANNEL_NAMES["L"], EIGHT_BIT)
GREY_16BIT = PixelFormat(CHANNEL_NAMES["L"], SIXTEEN_BIT)
# 8-bit formats by channel count (an 8-bit PNG's channels as stored).
EIGHT_BIT_BY_COUNT = {count: PixelFormat(names, EIGHT_BIT) for count, names in NAMES_BY_COUNT.items()}


class Measured(NamedTuple):
    """A fast path's answer (:mod:`chanstats.decoding.jpeg`, :mod:`chanstats.decoding.png`): what
    :func:`~chanstats.decoding.pillow.decode` followed by ``DecodedImage.moments`` gives, without a
    Pillow image."""

    format: PixelFormat
    width: int
    height: int
    dropped_alpha: bool
    moments: IntegerMoments
    histogram: "np.ndarray | None" = None  # (C, 256) counts, when asked for


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ChanstatsError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    return mode
