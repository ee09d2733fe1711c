"""The decompression-bomb limit: how large an image may declare itself before anything is decoded.

A few hundred bytes of header can declare billions of pixels (a PNG's IHDR, a JPEG's frame
marker, TIFF tiles that all point at one small blob, a NumPy header over a sparse file or a
compressed ``.npz`` member). Every reader checks the declared size here *before* allocating.

The policy is Pillow's own, so that every path agrees with ``PIL.Image.open``: an image of more than
**twice** ``PIL.Image.MAX_IMAGE_PIXELS`` pixels is refused (where Pillow raises
``DecompressionBombError``); between once and twice the limit Pillow only warns, and chanstats
measures the image as torchvision's loader would read it. ``PIL.Image.MAX_IMAGE_PIXELS = None``
lifts the limit, in every worker too.

Pillow's widest pixels are 4 bytes (RGBA, or 32-bit ``I``/``F``), so rasters and arrays, which may
hold any number of bands of any width, have a stated equivalent on the decoded size: at most
4 bytes per pixel of the pixel limit (716 MB at Pillow's default). The limit is read at each
check, so a caller's change takes effect at once.
"""

from __future__ import annotations

from ..errors import DecompressionBombError

# Pillow's widest pixel: RGBA, or one 32-bit integer or float.
BYTES_PER_PIXEL = 4


def pixel_limit() -> int | None:
    """The most pixels an image may have: twice ``PIL.Image.MAX_IMAGE_PIXELS`` (where Pillow
    raises), or ``None`` when the limit is lifted."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


def check_declared_size(width: int, height: int, shown: str, *, bands: int = 1, itemsize: int = 1,
                        kind: str = "") -> None:
    """Raise :class:`~chanstats.errors.DecompressionBombError` naming ``shown`` when an image of ``width``×``height`` pixels
    (``bands`` values of ``itemsize`` bytes each) is over the limit. ``kind`` describes the values
    in the message about decoded bytes (``"uint16"``)."""
    limit = pixel_limit()
    if limit is None:
        return
    pixels = max(1, width) * max(1, height)  # as Pillow counts: a zero side is not a free pass
    if pixels > limit:
        raise DecompressionBombError(shown, f"decompression bomb: {width}×{height} = {pixels} pixels exceeds the "
                                            f"limit of {limit} (2 × PIL.Image.MAX_IMAGE_PIXELS)")
    size = pixels * bands * itemsize
    if size > BYTES_PER_PIXEL * limit:
        values = f"{bands} band{'s' if bands != 1 else ''}" + (f" of {kind}" if kind else f" of {itemsize} bytes")
        raise DecompressionBombError(shown, f"decompression bomb: {width}×{height} pixels × {values} = {size} bytes "
                                            f"exceeds the limit of {BYTES_PER_PIXEL * limit} "
                                            f"({BYTES_PER_PIXEL} bytes × 2 × PIL.Image.MAX_IMAGE_PIXELS)")


def check_decoded_bytes(size: int, what: str, shown: str, advice: str = "") -> None:
    """Raise :class:`~chanstats.errors.DecompressionBombError` naming ``shown`` when ``what`` (an
    array a reader must load whole, such as a ``.npz`` member) takes ``size`` bytes decoded, over
    the equivalent limit; ``advice`` ends the message."""
    limit = pixel_limit()
    if limit is not None and size > BYTES_PER_PIXEL * limit:
        raise DecompressionBombError(shown, f"decompression bomb: {what} decodes to {size} bytes, over the limit of "
                                            f"{BYTES_PER_PIXEL * limit} ({BYTES_PER_PIXEL} bytes × 2 × "
                                            f"PIL.Image.MAX_IMAGE_PIXELS){advice}")


def pillow_bomb_reason(error: Exception) -> str:
    """The reason for an image Pillow refused as a bomb, worded as :func:`check_declared_size`
    words it."""
    import re

    # Pillow's message gives the pixel count only; the sides are the argument of the check that
    # raised (the innermost frame), when this Pillow still checks that way.
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    size = frame.tb_frame.f_locals.get("size") if frame is not None else None
    found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+)", str(error))
    if found is None:
        return f"decompression bomb ({' '.join(str(error).split())})"
    sides = f"{size[0]}×{size[1]} = " if isinstance(size, tuple) and len(size) == 2 else ""
    return f"decompression bomb: {sides}{found[1]} pixels exceeds the limit of {found[2]} (2 × PIL.Image.MAX_IMAGE_PIXELS)"
