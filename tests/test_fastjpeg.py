"""The JPEG fast path gives exactly what Pillow (torchvision's loader) gives, or steps aside."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from chanstats.decoding import jpeg as fastjpeg
from chanstats.decoding.pillow import decode
from chanstats.errors import BadImageError
from chanstats.stats.moments import integer_moments_of

from .helpers.files import EXAMPLES

pytestmark = pytest.mark.skipif(not fastjpeg.AVAILABLE, reason="simplejpeg or the compiled kernel is missing")


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
        pixel_format, width, height, dropped_alpha, moments, _ = fast
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
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 83×61 pixels: over twice the limit
    with pytest.raises(BadImageError, match="big.jpg: decompression bomb: 83×61 = 5063 pixels exceeds the limit of 2000"):
        fastjpeg.measure_jpeg(data, "RGB", "big.jpg")
    with pytest.raises(BadImageError, match="big.jpg: decompression bomb: 83×61 = 5063 pixels exceeds the limit of 2000"):
        decode(data, "RGB", "big.jpg")
    # Over the limit but not twice it, Pillow decodes with a warning: so does the fast path.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    assert fastjpeg.measure_jpeg(data, "RGB", "warned.jpg").moments == decode(data, "RGB", "warned.jpg").moments()
