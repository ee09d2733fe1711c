"""The PNG fast path: ISA-L inflation + a compiled unfilter, never an answer Pillow would not give.

PNG is lossless, so every correct decoder gives the same pixels; what differs is speed and which
files are accepted. Pillow spends about 25 ns per pixel on a photographic PNG, half of it
inflating (stock zlib) and half undoing the scanline filters a byte at a time. Here the chunks are
walked in Python (a handful per file), the image data is inflated by Intel's ISA-L through the
``isal`` package (about 2× stock zlib, 1.4× zlib-ng; stock zlib where isal is not installed) and
unfiltered by the compiled kernel
(:func:`chanstats._kernels.unfilter_png`), then measured by the moments kernel: about 2.9× faster
than Pillow on the benchmark corpus, with identical pixels (tested on every filter type and PNG kind
taken here, and on the benchmark corpus).

It takes only the plain case: 8-bit greyscale, grey+alpha, RGB or RGBA, not interlaced, and nothing
but a few ancillary chunks that change neither the pixels nor Pillow's verdict, each with its exact
length and a correct CRC (Pillow checks the CRC of every chunk before the image data). Anything
else (palettes, transparency chunks, 16-bit or sub-byte depths, interlacing, colour profiles, text,
animation, any damage or doubt) returns None, and the caller decodes with Pillow, whose verdict then
decides, exactly as without this module.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from .. import kernel
from ..stats.moments import KERNEL_AVAILABLE, IntegerMoments, integer_moments_and_histogram
from .formats import EIGHT_BIT_BY_COUNT, RGB_8BIT, Measured
from .limits import check_declared_size, pixel_limit

try:  # faster inflation, the same bytes out, and the same adler32 check; stock zlib otherwise
    from isal.isal_zlib import decompressobj as _inflater
    from isal.isal_zlib import error as _InflateError
except ImportError:  # pragma: no cover - isal is a dependency where it has a wheel
    _inflater, _InflateError = zlib.decompressobj, zlib.error

unfilter_png = kernel.function("unfilter_png")
AVAILABLE = KERNEL_AVAILABLE and unfilter_png is not None
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHUNK_HEAD = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBB")
# Ancillary chunks Pillow reads without effect on the pixels, with the only length that leaves it
# no room to fail (a shorter gAMA or pHYs, say, makes Pillow refuse the file).
_INERT_CHUNKS = {b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9, b"tIME": 7}
# Colour type → channels in the file.
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def decode_png(data: bytes) -> np.ndarray | None:
    """The (H, W, C) uint8 pixels of a plain 8-bit PNG, channels as stored (L, LA, RGB, RGBA),
    or None when the file is not one this fast path takes."""
    if not AVAILABLE or not data.startswith(_SIGNATURE):
        return None
    header = _read_plain_png(data)
    if header is None:
        return None
    width, height, channels, compressed = header
    try:
        scanlines = _inflate_exactly(compressed, height * (width * channels + 1))
        if scanlines is None:
            return None
        pixels = unfilter_png(scanlines, width, height, channels)
    except (_InflateError, zlib.error, ValueError, MemoryError, OverflowError):
        return None
    return np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, channels)


def _inflate_exactly(stream: bytes, size: int) -> bytes | None:
    """The ``size`` bytes a complete zlib stream inflates to, or None if it holds fewer (truncated)
    or more (not what the header says). At most ``size + 1`` bytes are ever produced, so image
    data that would inflate to gigabytes (a decompression bomb in a small file) costs nothing:
    Pillow, too, only inflates what the image needs."""
    inflater = _inflater()
    scanlines = inflater.decompress(stream, size + 1)
    return scanlines if len(scanlines) == size and inflater.eof else None


def measure_png(data: bytes, mode: str, shown: str, histogram: bool = False) -> Measured | None:
    """What ``decode(data, mode).moments()`` gives, for the PNGs this fast path takes, else None.

    The one error this path reports itself, naming ``shown``, is the one Pillow gives any PNG whose
    header declares more pixels than the limit (:mod:`.limits`); any other doubt goes to Pillow.
    """
    if mode not in ("RGB", "keep", "L") or not data.startswith(_SIGNATURE):
        return None
    check_png_size(data, shown)
    # Peek at the colour type before inflating anything: --mode L takes greyscale files only (other
    # kinds need Pillow's own luma conversion).
    if mode == "L" and data[25:26] != b"\x00":
        return None
    pixels = decode_png(data)
    if pixels is None:
        return None
    height, width, channels = pixels.shape
    moments, counts = integer_moments_and_histogram(pixels, histogram)
    has_alpha = channels in (2, 4)
    if mode == "keep":
        return Measured(EIGHT_BIT_BY_COUNT[channels], width, height, False, moments, counts)
    # torchvision's loader, convert("RGB"): grey replicated, alpha dropped.
    colour = [0, 1, 2] if channels >= 3 else [0, 0, 0]
    if mode == "L":
        colour = [0]
    return Measured(RGB_8BIT if mode == "RGB" else EIGHT_BIT_BY_COUNT[1], width, height, has_alpha,
                    _select(moments, colour), None if counts is None else counts[colour])


def decode_png16(data: bytes, shown: str = "<image bytes>") -> np.ndarray | None:
    """The (H, W, C) native uint16 pixels of a plain 16-bit grey+alpha, RGB or RGBA PNG (the
    kinds Pillow would reduce to 8 bits), or None when the file is not one this path takes.
    A header over the decompression-bomb limit is refused naming ``shown``, as Pillow refuses it."""
    if not AVAILABLE or not data.startswith(_SIGNATURE) or data[24:25] != b"\x10" or data[25:26] == b"\x00":
        return None
    check_png_size(data, shown)
    header = _read_plain_png(data, depth=16)
    if header is None:
        return None
    width, height, channels, compressed = header
    try:
        scanlines = _inflate_exactly(compressed, height * (width * 2 * channels + 1))
        if scanlines is None:
            return None
        pixels = unfilter_png(scanlines, width, height, 2 * channels)
    except (_InflateError, zlib.error, ValueError, MemoryError, OverflowError):
        return None
    return np.frombuffer(pixels, dtype=">u2").reshape(height, width, channels).astype(np.uint16)


def check_png_size(data: bytes, shown: str) -> None:
    """Refuse a PNG whose intact header (IHDR, always the first chunk) declares more pixels than
    the decompression-bomb limit, before anything is inflated, as Pillow refuses it on open (a
    damaged header is left to Pillow, which reports the damage first)."""
    if data[8:16] == b"\x00\x00\x00\x0dIHDR" and len(data) >= 33 and _intact(b"IHDR", memoryview(data)[16:29], data, 29):
        width, height = struct.unpack_from(">II", data, 16)
        check_declared_size(width, height, shown)


def _read_plain_png(data: bytes, depth: int = 8) -> tuple[int, int, int, bytes] | None:
    """``(width, height, channels, zlib stream)`` if the file is a plain PNG (see the module
    docstring) whose chunks are all intact; else None."""
    view = memoryview(data)
    position = len(_SIGNATURE)
    header = None
    image_data: list[memoryview] = []
    while position + 12 <= len(data):
        length, kind = _CHUNK_HEAD.unpack_from(data, position)
        body_start = position + 8
        body_end = body_start + length
        if body_end + 4 > len(data):
            return None
        body = view[body_start:body_end]
        position = body_end + 4
        if kind == b"IDAT":
            # Consecutive by construction: any other chunk after image data returns below.
            if header is None:
                return None
            image_data.append(body)  # Pillow does not check image data CRCs; zlib's adler32 does
        elif kind == b"IEND":
            if header is None or not image_data or length != 0:
                return None
            width, height, channels = header
            return width, height, channels, b"".join(image_data)
        else:
            if image_data or not _intact(kind, body, data, body_end):
                return None  # anything but IEND after the image data goes to Pillow
            if kind == b"IHDR":
                if header is not None or length != 13:
                    return None
                header = _plain_header(body, depth)
                if header is None:
                    return None
            elif header is None or _INERT_CHUNKS.get(kind) != length:
                return None
    return None


def _intact(kind: bytes, body: memoryview, data: bytes, crc_at: int) -> bool:
    (stored,) = struct.unpack_from(">I", data, crc_at)
    return zlib.crc32(body, zlib.crc32(kind)) == stored


def _plain_header(body: memoryview, wanted_depth: int = 8) -> tuple[int, int, int] | None:
    width, height, depth, colour_type, compression, filtering, interlace = _IHDR.unpack(body)
    channels = _CHANNELS.get(colour_type)
    if depth != wanted_depth or channels is None or compression or filtering or interlace:
        return None
    if not (0 < width < 2**31 and 0 < height < 2**31):
        return None
    limit = pixel_limit()
    if limit is not None and width * height > limit:
        return None  # never inflate a bomb, even when called without check_png_size first
    return width, height, channels


def _select(moments: IntegerMoments, channels: list[int]) -> IntegerMoments:
    return IntegerMoments(
        moments.pixels,
        [moments.sums[c] for c in channels],
        [moments.sumsq[c] for c in channels],
        [moments.mins[c] for c in channels],
        [moments.maxs[c] for c in channels],
    )
