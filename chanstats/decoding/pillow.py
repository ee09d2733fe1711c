"""Bytes → pixels with an explicit mode policy, and typed errors that name the file.

Modes:

* ``RGB`` (default): exactly torchvision's default loader, ``PIL.Image.open(f).convert("RGB")``:
  grey is replicated, palettes are expanded, alpha is dropped (and reported).
* ``L``: ``convert("L")`` (ITU-R 601-2 luma), alpha dropped.
* ``keep``: native channels and bit depth: 8-bit L, LA, RGB, RGBA, CMYK, and 16-bit greyscale.

A 16-bit image under ``RGB``/``L`` is refused rather than clipped to 8 bits, which is what Pillow's
``convert`` would silently do. Truncated files are errors: Pillow's ``LOAD_TRUNCATED_IMAGES`` is
never enabled.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import BadImageError, DecompressionBombError
from ..stats.moments import IntegerMoments, integer_moments_from_histogram, integer_moments_of
from .formats import ALPHA_MODES, CHANNEL_NAMES, GREY_16BIT, SIXTEEN_BIT_MODES, PixelFormat
from .limits import pillow_bomb_reason


@dataclass
class DecodedImage:
    """A fully loaded image in the chosen mode.

    ``image`` is a Pillow image in one of the 8-bit modes above, or ``I;16`` for 16-bit grey;
    ``dropped_alpha`` says whether the file had transparency that the mode threw away.
    """

    image: Image.Image
    format: PixelFormat
    dropped_alpha: bool

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def moments(self) -> IntegerMoments:
        """Exact integer moments of every channel."""
        if self.format.scale == 255:
            return histogram_moments(self.image)
        return integer_moments_of(self.pixels())

    def moments_and_histogram(self, histogram: bool) -> tuple[IntegerMoments, np.ndarray | None]:
        """:meth:`moments`, and with ``histogram`` the (C, bins) counts of values 0, 1, ...
        (Pillow's own histogram for 8-bit images)."""
        if not histogram:
            return self.moments(), None
        if self.format.scale == 255:
            counts = np.asarray(self.image.histogram(), dtype=np.int64).reshape(len(self.image.getbands()), 256)
            return integer_moments_from_histogram(counts), counts.astype(np.uint64)
        pixels = self.pixels()
        flat = pixels.reshape(-1, 1 if pixels.ndim == 2 else pixels.shape[-1])
        bins = int(flat.max(initial=0)) + 1
        counts = np.stack([np.bincount(flat[:, c], minlength=bins) for c in range(flat.shape[1])])
        return integer_moments_of(pixels), counts.astype(np.uint64)

    def pixels(self) -> np.ndarray:
        """The pixels as an (H, W) or (H, W, C) uint8/uint16 array."""
        if self.format.scale == 65535:
            return np.asarray(self.image, dtype=np.uint16)
        return np.asarray(self.image)


def histogram_moments(image: Image.Image) -> IntegerMoments:
    """Exact moments of an 8-bit Pillow image (L, LA, RGB, RGBA, CMYK), from Pillow's own
    histogram, which runs on the decoded buffer without any numpy copy."""
    bins = np.asarray(image.histogram(), dtype=np.int64)
    return integer_moments_from_histogram(bins.reshape(len(image.getbands()), 256))


def decode(path: str | bytes | BinaryIO, mode: str = "RGB", display: str | None = None) -> DecodedImage:
    """Read and fully decode an image under ``mode``.

    ``path`` is a file path, the file's bytes (a tar member read by a worker) or a binary file
    object. Raises :class:`BadImageError` (naming ``display``, else the path) for anything that
    cannot be turned into trustworthy pixels.
    """
    shown = display or (path if isinstance(path, str) else "<image bytes>")
    if isinstance(path, (bytes, bytearray, memoryview)):
        path = io.BytesIO(path)
    # Guards against a caller that switched truncated-image loading on for the whole process.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            # Pillow warns above the limit and refuses above twice it; chanstats follows its verdict
            # (see .limits), and a warning repeated by every worker would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                _refuse_reduced_depth(opened, shown)
                opened.load()
                return _apply_mode(opened, mode, shown)
    except BadImageError:
        raise
    except Image.DecompressionBombError as error:
        raise DecompressionBombError(shown, pillow_bomb_reason(error)) from None
    except UnidentifiedImageError:
        raise BadImageError(shown, "not an image Pillow can read") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as error:
        raise BadImageError(shown, f"cannot read: {error.strerror}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as error:
        # Pillow reports truncation and corrupt streams as OSError, some parsers as others.
        raise BadImageError(shown, f"corrupt or truncated image ({error})") from None


def _refuse_reduced_depth(image: Image.Image, shown: str) -> None:
    # Pillow has no 16-bit colour modes: it silently keeps the high byte of 16-bit RGB(A) PNGs.
    for tile in image.tile:
        rawmode = tile.args[0] if isinstance(tile.args, tuple) else tile.args
        if isinstance(rawmode, str) and image.mode in ("RGB", "RGBA", "LA") and ";16" in rawmode:
            raise BadImageError(shown, f"16-bit {image.mode} is not supported (Pillow would reduce it to 8 bits)")


def _apply_mode(image: Image.Image, mode: str, shown: str) -> DecodedImage:
    source_mode = image.mode
    has_alpha = source_mode in ALPHA_MODES or (
        source_mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if source_mode in SIXTEEN_BIT_MODES:
        if mode != "keep":
            raise BadImageError(
                shown, f"16-bit image ({source_mode}); --mode {mode} would clip it to 8 bits, use --mode keep"
            )
        return DecodedImage(_as_uint16(image, shown), GREY_16BIT, False)
    if source_mode in ("F", "I;32", "I;32B"):
        raise BadImageError(shown, f"unsupported pixel type {source_mode} (32-bit)")
    if mode == "RGB":
        return DecodedImage(_convert(image, "RGB"), PixelFormat(CHANNEL_NAMES["RGB"], 255), has_alpha)
    if mode == "L":
        return DecodedImage(_convert(image, "L"), PixelFormat(CHANNEL_NAMES["L"], 255), has_alpha)
    native = _native_mode(image)
    return DecodedImage(_convert(image, native), PixelFormat(CHANNEL_NAMES[native], 255), False)


def _native_mode(image: Image.Image) -> str:
    mode = image.mode
    if mode == "1":
        return "L"
    if mode == "P":
        return "RGBA" if "transparency" in image.info else "RGB"
    if mode == "PA":
        return "RGBA"
    if mode in CHANNEL_NAMES:
        return mode
    return "RGB"  # YCbCr, LAB, HSV: colour data that torchvision would also load as RGB


def _convert(image: Image.Image, mode: str) -> Image.Image:
    return image if image.mode == mode else image.convert(mode)


def _as_uint16(image: Image.Image, shown: str) -> Image.Image:
    if image.mode.startswith("I;16"):
        return image
    # 32-bit "I" holding 16-bit data (some TIFF/PNG readers): accept only when it truly fits.
    low, high = image.getextrema()
    if low < 0 or high > 65535:
        raise BadImageError(shown, f"32-bit integer pixels outside 0..65535 ({low}..{high})")
    return Image.fromarray(np.asarray(image).astype(np.uint16))
