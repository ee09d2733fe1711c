"""The JPEG fast path gives exactly what Pillow (torchvision's loader) gives, or steps aside."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from chanstats.decoding import jpeg as fastjpeg
from chanstats.stats.moments import KERNEL_AVAILABLE
from chanstats.decoding.pillow import decode
from chanstats.errors import BadImageError
from chanstats.stats.moments import integer_moments_of

from .conftest import EXAMPLES

pytestmark = pytest.mark.skipif(not fastjpeg.AVAILABLE, reason="simplejpeg or the compiled kernel is missing")
if KERNEL_AVAILABLE:
    from chanstats import _kernels


def numpy_moments(pixels: np.ndarray, channels: int):
    flat = pixels.reshape(-1, channels).astype(np.int64)
    return list(flat.sum(0)), list((flat * flat).sum(0)), list(flat.min(0)), list(flat.max(0))


@given(st.integers(1, 4).flatmap(lambda c: arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40), st.just(c)))))
@settings(max_examples=150, deadline=None)
def test_kernel_equals_numpy_on_any_shape(pixels):
    channels = pixels.shape[2]
    assert _kernels.moments_u8(pixels, channels) == tuple(numpy_moments(pixels, channels))


def test_kernel_is_exact_across_its_block_boundaries(rng):
    # 197437 rows of 48 bytes (more than 65536, an odd number) plus a partial row.
    pixels = rng.integers(0, 256, size=(3000, 1053, 3), dtype=np.uint8)
    pixels[::7] = 255  # long runs of the extreme value stress the uint32 lane sums
    assert _kernels.moments_u8(pixels, 3) == tuple(numpy_moments(pixels, 3))


@pytest.mark.parametrize("channels", [3, 4])
def test_kernel_is_exact_with_an_odd_row_after_a_full_block(rng, channels):
    # 65537 rows of 96 bytes (the AVX2 path's rows: a full block, then one odd row) and a
    # partial 48-byte row for the SSE2 path.
    pixels = rng.integers(0, 256, size=(96 * 65537 + 48) // channels * channels, dtype=np.uint8)
    pixels[-5000:] = 255
    assert _kernels.moments_u8(pixels, channels) == tuple(numpy_moments(pixels, channels))


def test_kernel_sse2_path_is_exact_too(tmp_path):
    # On CPUs with AVX2 the SSE2 loop only sees the last partial rows; force it over a whole buffer
    # (more than one block, an odd row count) in a fresh process.
    script = tmp_path / "sse2.py"
    script.write_text(
        "import numpy as np\n"
        "from chanstats._kernels import moments_u8\n"
        "from tests.test_fastjpeg import numpy_moments\n"
        "pixels = np.random.default_rng(5).integers(0, 256, size=48 * 131073, dtype=np.uint8)\n"
        "pixels[:9999] = 255\n"
        "for channels in (1, 2, 3, 4):\n"
        "    assert moments_u8(pixels, channels) == tuple(numpy_moments(pixels, channels)), channels\n"
    )
    env = dict(os.environ, CHANSTATS_NO_AVX2="1", PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr


def test_kernel_refuses_bad_input():
    with pytest.raises(ValueError):
        _kernels.moments_u8(b"", 3)
    with pytest.raises(ValueError):
        _kernels.moments_u8(b"abcd", 3)


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def photo_like(rng, height=61, width=83) -> np.ndarray:
    """Smooth gradients plus noise: compresses like a photograph, unlike pure noise."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 3, y * 4, (x + y) * 2], axis=-1) % 256
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


JPEG_KINDS = {
    "420": dict(quality=85, subsampling=2),
    "422": dict(quality=90, subsampling=1),
    "444": dict(quality=95, subsampling=0),
    "progressive": dict(quality=80, progressive=True),
    "optimized": dict(quality=75, optimize=True),
}


def kinds_of_jpeg(rng) -> dict[str, bytes]:
    colour = Image.fromarray(photo_like(rng))
    samples = {name: jpeg_bytes(colour, **options) for name, options in JPEG_KINDS.items()}
    samples["grey"] = jpeg_bytes(colour.convert("L"), quality=90)
    for path in sorted(EXAMPLES.glob("*.jpg")):
        samples[path.name] = path.read_bytes()
    return samples


@pytest.mark.parametrize("mode", ["RGB", "keep"])
def test_fast_path_equals_pillow_for_every_jpeg_kind(rng, mode):
    for name, data in kinds_of_jpeg(rng).items():
        fast = fastjpeg.measure_jpeg(data, mode, name)
        assert fast is not None, name
        pixel_format, width, height, dropped_alpha, moments = fast
        assert not dropped_alpha
        pillow = Image.open(io.BytesIO(data))
        expected = np.asarray(pillow.convert("RGB") if mode == "RGB" else pillow)
        assert (width, height) == pillow.size, name
        assert moments == integer_moments_of(expected), name
        assert len(pixel_format.channels) == (1 if expected.ndim == 2 else 3), name


def test_simplejpeg_pixels_are_pillows_on_the_examples():
    import simplejpeg

    jpegs = sorted(EXAMPLES.glob("*.jpg"))
    assert jpegs
    for path in jpegs:
        data = path.read_bytes()
        np.testing.assert_array_equal(
            simplejpeg.decode_jpeg(data, colorspace="RGB"), np.asarray(Image.open(path).convert("RGB"))
        )


def test_fast_path_steps_aside_where_it_could_differ(rng):
    colour = Image.fromarray(photo_like(rng))
    rgb = jpeg_bytes(colour)
    assert fastjpeg.measure_jpeg(rgb, "L", "x") is None  # Pillow's own RGB→L conversion decides
    assert fastjpeg.measure_jpeg(jpeg_bytes(colour.convert("CMYK")), "RGB", "x") is None
    assert fastjpeg.measure_jpeg(rgb[: len(rgb) // 2], "RGB", "x") is None  # Pillow's verdict on damage
    png = io.BytesIO()
    colour.save(png, "PNG")
    assert fastjpeg.measure_jpeg(png.getvalue(), "RGB", "x") is None


def test_truncated_jpeg_is_still_an_error_end_to_end(tmp_path, rng):
    data = jpeg_bytes(Image.fromarray(photo_like(rng)))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert fastjpeg.measure_jpeg(path.read_bytes(), "RGB", "cut.jpg") is None
    with pytest.raises(BadImageError, match="cut.jpg: corrupt or truncated"):
        decode(path.read_bytes(), "RGB", "cut.jpg")


def test_fast_path_enforces_the_decompression_bomb_limit(rng, monkeypatch):
    data = jpeg_bytes(Image.fromarray(photo_like(rng)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(BadImageError, match="big.jpg: decompression bomb"):
        fastjpeg.measure_jpeg(data, "RGB", "big.jpg")
