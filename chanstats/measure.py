"""One image in, its sufficient statistics out: what a worker computes and sends back.

A :class:`Measurement` is small (a few numbers per channel) so that no pixel array ever crosses a
process boundary. It holds one entry per *sample*: an image passed through a random transform for
K epochs gives K samples.
"""

from __future__ import annotations

from dataclasses import dataclass

from .decode import PixelFormat, decode
from .moments import FloatMoments, IntegerMoments, integer_sample_row
from .sources import ImageSource, read_source

SampleRow = tuple[int, list[float], list[float]]  # (pixels per channel, mean, M2) in model units


@dataclass
class Measurement:
    """Statistics of one image's samples.

    ``moments[k]`` is sample ``k``'s exact accumulator (integer path) or float64 moments (float
    path); ``rows[k]`` its (count, mean, M2) in model units for the per-sample table.
    """

    format: PixelFormat
    width: int
    height: int
    dropped_alpha: bool
    moments: list[IntegerMoments | FloatMoments]
    rows: list[SampleRow]


@dataclass(frozen=True)
class Measurer:
    """Decodes an image under ``mode`` and measures it; picklable, so workers can run it."""

    mode: str = "RGB"

    def __call__(self, index: int, source: ImageSource) -> Measurement:
        decoded = decode(read_source(source), self.mode, source.display)
        moments = decoded.moments()
        width, height = decoded.size
        return Measurement(
            format=decoded.format,
            width=width,
            height=height,
            dropped_alpha=decoded.dropped_alpha,
            moments=[moments],
            rows=[integer_sample_row(moments, decoded.format.scale)],
        )
