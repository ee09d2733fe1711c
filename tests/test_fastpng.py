"""The PNG fast path gives exactly what Pillow (torchvision's loader) gives, or steps aside.

PNGs are written here by a small independent encoder (numpy forward filters, zlib, hand-made
chunks), so every filter type can be forced row by row; Pillow's decoder is the oracle.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from chanstats.decoding import png as fastpng
from chanstats.decoding.pillow import decode
from chanstats.errors import BadImageError

from .helpers.files import EXAMPLES

pytestmark = pytest.mark.skipif(not fastpng.AVAILABLE, reason="the compiled kernel is missing")

COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    a, b, c = (x.astype(np.int32) for x in (a, b, c))
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def filtered_rows(pixels: np.ndarray, filters: list[int]) -> bytes:
    """PNG scanlines of (H, W, C) uint8 ``pixels``, row ``r`` filtered with ``filters[r]``."""
    height, width, channels = pixels.shape
    rows = pixels.reshape(height, width * channels).astype(np.int32)
    out = bytearray()
    for r, kind in enumerate(filters):
        x = rows[r]
        up = rows[r - 1] if r else np.zeros_like(x)
        left = np.concatenate([np.zeros(channels, np.int32), x[:-channels]])
        up_left = np.concatenate([np.zeros(channels, np.int32), up[:-channels]])
        predictors = [np.zeros_like(x), left, up, (left + up) // 2, paeth(left, up, up_left)]
        predictor = predictors[kind] if kind < 5 else predictors[0]  # 5: an invalid type, for tests
        out.append(kind)
        out += ((x - predictor) % 256).astype(np.uint8).tobytes()
    return bytes(out)


def png_bytes(pixels: np.ndarray, filters: list[int] | None = None, extra: list[bytes] = (), **header) -> bytes:
    """A PNG of ``pixels`` with the given row filters (default: cycling through all five)."""
    height, width, channels = pixels.shape
    filters = filters if filters is not None else [r % 5 for r in range(height)]
    ihdr = dict(depth=8, colour_type=COLOUR_TYPES[channels], interlace=0) | header
    body = struct.pack(">IIBBBBB", width, height, ihdr["depth"], ihdr["colour_type"], 0, 0, ihdr["interlace"])
    compressed = zlib.compress(filtered_rows(pixels, filters))
    # Image data split over two IDAT chunks, as most encoders do for large images.
    half = len(compressed) // 2
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", body)
        + b"".join(extra)
        + chunk(b"IDAT", compressed[:half])
        + chunk(b"IDAT", compressed[half:])
        + chunk(b"IEND", b"")
    )


def pillow_pixels(data: bytes) -> np.ndarray:
    pixels = np.asarray(Image.open(io.BytesIO(data)))
    return pixels if pixels.ndim == 3 else pixels[:, :, None]


@given(
    channels=st.sampled_from([1, 2, 3, 4]),
    height=st.integers(1, 24),
    width=st.integers(1, 24),
    data=st.data(),
)
@settings(max_examples=200, deadline=None)
def test_every_filter_on_any_shape_gives_pillows_pixels(channels, height, width, data):
    pixels = data.draw(st.binary(min_size=height * width * channels, max_size=height * width * channels))
    pixels = np.frombuffer(pixels, np.uint8).reshape(height, width, channels)
    filters = data.draw(st.lists(st.integers(0, 4), min_size=height, max_size=height))
    encoded = png_bytes(pixels, filters)
    decoded = fastpng.decode_png(encoded)
    assert decoded is not None
    np.testing.assert_array_equal(decoded, pixels)
    np.testing.assert_array_equal(decoded, pillow_pixels(encoded))


def test_each_filter_alone_on_a_photograph_like_image(rng):
    # Smooth gradients plus noise make every predictor branch of Paeth fire.
    y, x = np.mgrid[0:57, 0:91]
    base = np.stack([x * 3, y * 4, (x + y) * 2, 255 - x], axis=-1)
    pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    for channels in (1, 2, 3, 4):
        for kind in range(5):
            encoded = png_bytes(np.ascontiguousarray(pixels[:, :, :channels]), [kind] * 57)
            np.testing.assert_array_equal(fastpng.decode_png(encoded), pillow_pixels(encoded), f"{channels} ch, filter {kind}")


def pillow_png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def kinds_of_png(rng) -> dict[str, bytes]:
    rgba = Image.fromarray(rng.integers(0, 256, size=(37, 53, 4), dtype=np.uint8), "RGBA")
    samples = {mode: pillow_png(rgba.convert(mode)) for mode in ("L", "LA", "RGB", "RGBA")}
    samples["RGB, optimized, with dpi"] = pillow_png(rgba.convert("RGB"), optimize=True, dpi=(72, 72))
    samples["RGB, stored (no compression)"] = pillow_png(rgba.convert("RGB"), compress_level=0)
    samples["RGBA, one row"] = pillow_png(rgba.crop((0, 0, 53, 1)))
    samples["L, one column"] = pillow_png(rgba.convert("L").crop((0, 0, 1, 37)))
    for path in sorted(EXAMPLES.glob("*.png")):
        samples[path.name] = path.read_bytes()
    return samples


@pytest.mark.parametrize("mode", ["RGB", "keep", "L"])
def test_fast_path_equals_pillow_for_every_png_kind(rng, mode):
    taken = 0
    for name, data in kinds_of_png(rng).items():
        fast = fastpng.measure_png(data, mode, name)
        if fast is None:
            assert mode == "L" and Image.open(io.BytesIO(data)).mode != "L", name  # only L mode declines, colour files
            continue
        taken += 1
        pillow = decode(data, mode, name)
        assert fast.format == pillow.format, name
        assert (fast.width, fast.height) == pillow.size, name
        assert fast.dropped_alpha == pillow.dropped_alpha, name
        assert fast.moments == pillow.moments(), name
    assert taken >= 2


def test_the_shipped_example_pngs_take_the_fast_path():
    pngs = sorted(EXAMPLES.glob("*.png"))
    assert pngs
    for path in pngs:
        assert fastpng.measure_png(path.read_bytes(), "RGB", path.name) is not None, path.name


def test_fast_path_steps_aside_where_it_could_differ(rng):
    image = Image.fromarray(rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8))
    pixels = np.asarray(image)
    text = PngImagePlugin.PngInfo()
    text.add_text("comment", "hello")
    declined = {
        "palette": pillow_png(image.convert("P")),
        "transparency chunk": pillow_png(image.convert("L"), transparency=7),
        "16-bit": pillow_png(Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)),
        "1-bit": pillow_png(image.convert("1")),
        "colour profile": pillow_png(image, icc_profile=b"\0" * 200),
        "text": pillow_png(image, pnginfo=text),
        "interlaced": png_bytes(pixels, interlace=1),
        "truncated": png_bytes(pixels)[:-40],
        "bad chunk CRC": png_bytes(pixels, extra=[chunk(b"gAMA", struct.pack(">I", 45455))[:-1] + b"\0"]),
        "short gAMA": png_bytes(pixels, extra=[chunk(b"gAMA", b"\0\0")]),
        "unknown filter type": png_bytes(pixels, [5] + [0] * 19),
        "not a PNG": b"GIF89a" + bytes(100),
    }
    for name, data in declined.items():
        assert fastpng.decode_png(data) is None, name
        assert fastpng.measure_png(data, "RGB", name) is None, name
    # Inert chunks with their proper lengths keep the fast path.
    inert = png_bytes(pixels, extra=[chunk(b"gAMA", struct.pack(">I", 45455)), chunk(b"sRGB", b"\0")])
    np.testing.assert_array_equal(fastpng.decode_png(inert), pixels)


def test_damaged_pngs_are_still_errors_end_to_end(tmp_path, rng):
    pixels = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    cases = {
        "cut.png": png_bytes(pixels)[:-40],
        "crc.png": png_bytes(pixels, extra=[chunk(b"pHYs", bytes(9))[:-1] + b"\1"]),
    }
    for name, data in cases.items():
        assert fastpng.measure_png(data, "RGB", name) is None
        with pytest.raises(BadImageError, match=name):
            decode(data, "RGB", name)


def test_image_data_that_inflates_far_beyond_the_image_is_never_inflated():
    # A 10×10 RGB header over image data that inflates to 30 MB: the fast path stops one byte past
    # what the header allows, then leaves the file to Pillow.
    header = struct.pack(">IIBBBBB", 10, 10, 8, 2, 0, 0, 0)
    bomb = zlib.compress(bytes(30_000_000), 9)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", bomb) + chunk(b"IEND", b"")
    tracemalloc.start()
    try:
        assert fastpng.decode_png(data) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(data) + 100_000, peak


def test_decompression_bomb_limit_agrees_with_pillow(rng, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    # Over twice the limit Pillow refuses the file, and so does the fast path, before inflating.
    data = png_bytes(rng.integers(0, 256, size=(50, 50, 3), dtype=np.uint8))
    with pytest.raises(BadImageError, match="big.png: decompression bomb: 50×50 = 2500 pixels exceeds the limit of 2000"):
        decode(data, "RGB", "big.png")
    with pytest.raises(BadImageError, match="big.png: decompression bomb: 50×50 = 2500 pixels exceeds the limit of 2000"):
        fastpng.measure_png(data, "RGB", "big.png")
    assert fastpng.decode_png(data) is None  # called alone, it declines rather than inflate a bomb
    # Between once and twice the limit Pillow decodes (with a warning): so does the fast path.
    data = png_bytes(rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8))
    assert fastpng.measure_png(data, "RGB", "warned.png").moments == decode(data, "RGB", "warned.png").moments()
