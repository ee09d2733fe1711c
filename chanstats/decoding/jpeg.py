"""The JPEG fast path: simplejpeg decoding + the compiled moments kernel, never pixels Pillow
would not give.

Decoding dominates the cost of exact statistics. simplejpeg (libjpeg-turbo with the same default
DCT and upsampling as Pillow) decodes colour and greyscale JPEGs about 1.3-1.5× faster than
Pillow, with pixels identical to ``PIL.Image.open(f).convert("RGB")`` (a test checks this on the
shipped examples and every JPEG kind; the benchmark checks the bench corpus). Pillow's histogram
cannot read a numpy buffer without a copy, so the statistics come from the compiled kernel behind
:func:`~chanstats.stats.moments.integer_moments_of`.

The fast path declines (returns None) whenever it could differ from Pillow, and the caller then
decodes with Pillow: other modes than RGB/keep, CMYK/YCCK JPEGs, any decoding warning or error
(truncated or damaged data, where Pillow's own verdict decides), or either library missing.
"""

from __future__ import annotations

from ..stats.moments import KERNEL_AVAILABLE, integer_moments_and_histogram
from .formats import GREY_8BIT, RGB_8BIT, Measured
from .limits import check_declared_size

try:
    import simplejpeg
except ImportError:  # pragma: no cover - simplejpeg is a dependency, but keep working without it
    simplejpeg = None
# Without the compiled kernel, numpy sums would cost more than simplejpeg saves over Pillow.
AVAILABLE = simplejpeg is not None and KERNEL_AVAILABLE
_JPEG_MAGIC = b"\xff\xd8\xff"


def measure_jpeg(data: bytes, mode: str, shown: str, histogram: bool = False) -> Measured | None:
    """The exact moments (and with ``histogram`` the (C, 256) histogram) of a JPEG under ``mode``,
    or None to fall back to Pillow."""
    if not AVAILABLE or mode not in ("RGB", "keep") or not data.startswith(_JPEG_MAGIC):
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace == "YCbCr" or (colorspace == "Gray" and mode == "RGB"):
        pixel_format, target = RGB_8BIT, "RGB"  # torchvision's loader replicates grey into RGB
    elif colorspace == "Gray":
        pixel_format, target = GREY_8BIT, "GRAY"
    else:
        return None
    check_declared_size(width, height, shown)  # Pillow's verdict on this header, before decoding
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace=target, strict=True)
    except ValueError:
        return None
    return Measured(pixel_format, width, height, False, *integer_moments_and_histogram(pixels, histogram))
