"""The mode policy on real files, with Pillow's own conversions (torchvision's loader) as oracle."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chanstats.api import compute
from chanstats.decoding.pillow import decode
from chanstats.errors import BadImageError, BadImagesError
from chanstats.stats.moments import integer_moments_of

from .helpers.files import write_image
from .helpers.oracles import torchvision_loader


@pytest.fixture
def kinds(tmp_path: Path, rng) -> dict[str, Path]:
    rgba = rng.integers(0, 256, size=(6, 9, 4), dtype=np.uint8)
    grey = rng.integers(0, 256, size=(6, 9), dtype=np.uint8)
    palette = Image.fromarray(rng.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)).convert("P", palette=Image.ADAPTIVE, colors=16)
    palette_path = tmp_path / "palette.png"
    palette.save(palette_path)
    return {
        "rgba": write_image(tmp_path / "rgba.png", rgba, "RGBA"),
        "grey": write_image(tmp_path / "grey.png", grey, "L"),
        "palette": palette_path,
        "rgb_jpeg": write_image(tmp_path / "rgb.jpg", rgba[..., :3].copy(), quality=90),
    }


@pytest.mark.parametrize("kind", ["rgba", "grey", "palette", "rgb_jpeg"])
def test_rgb_mode_equals_torchvision_loader(kinds, kind):
    decoded = decode(str(kinds[kind]), "RGB")
    assert decoded.format.channels == ("R", "G", "B") and decoded.format.scale == 255
    np.testing.assert_array_equal(decoded.pixels(), torchvision_loader(kinds[kind]))
    assert decoded.moments() == integer_moments_of(torchvision_loader(kinds[kind]))
    assert decoded.dropped_alpha == (kind == "rgba")


@pytest.mark.parametrize("kind", ["rgba", "grey", "palette", "rgb_jpeg"])
def test_l_mode_equals_pillow_luma(kinds, kind):
    decoded = decode(str(kinds[kind]), "L")
    expected = np.asarray(Image.open(kinds[kind]).convert("L"))
    assert decoded.format.channels == ("L",)
    np.testing.assert_array_equal(decoded.pixels(), expected)
    assert decoded.moments() == integer_moments_of(expected)


def test_keep_mode_keeps_native_channels(kinds):
    assert decode(str(kinds["rgba"]), "keep").format.channels == ("R", "G", "B", "A")
    assert decode(str(kinds["grey"]), "keep").format.channels == ("L",)
    assert decode(str(kinds["palette"]), "keep").format.channels == ("R", "G", "B")
    rgba = decode(str(kinds["rgba"]), "keep")
    np.testing.assert_array_equal(rgba.pixels(), np.asarray(Image.open(kinds["rgba"])))
    assert not rgba.dropped_alpha


def test_sixteen_bit_grey_under_keep_is_exact(tmp_path, rng):
    values = rng.integers(0, 65536, size=(7, 11), dtype=np.uint16)
    path = write_image(tmp_path / "deep.png", values)
    decoded = decode(str(path), "keep")
    assert decoded.format.scale == 65535 and decoded.format.channels == ("L",)
    np.testing.assert_array_equal(decoded.pixels(), values)
    moments = decoded.moments()
    assert moments.sums == [int(values.astype(np.int64).sum())]
    assert moments.sumsq == [sum(int(v) ** 2 for v in values.ravel())]


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_sixteen_bit_under_8bit_modes_is_refused_with_advice(tmp_path, mode):
    path = write_image(tmp_path / "deep.png", np.full((4, 4), 40000, dtype=np.uint16))
    with pytest.raises(BadImageError, match=r"deep\.png: 16-bit image .*--mode keep"):
        decode(str(path), mode)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_sixteen_bit_rgb_png_is_refused_not_truncated(tmp_path):
    # A genuine 16-bit RGB PNG, written by hand because Pillow cannot write one.
    width, height = 2, 2
    rows = b"".join(b"\0" + struct.pack(">6H", 1000, 2000, 3000, 65535, 0, 12345) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b"")
    path = tmp_path / "rgb16.png"
    path.write_bytes(png)
    with pytest.raises(BadImageError, match="16-bit RGB is not supported"):
        decode(str(path), "keep")


def test_truncated_jpeg_is_an_error(tmp_path, rng):
    path = write_image(tmp_path / "whole.jpg", rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))
    data = path.read_bytes()
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match=r"cut\.jpg: corrupt or truncated"):
        decode(str(truncated), "RGB")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("just text")
    with pytest.raises(BadImageError, match=r"notes\.png: not an image"):
        decode(str(path))


def test_decompression_bomb_is_an_error(tmp_path):
    # A valid-looking PNG header claiming 20000 × 20000 pixels: Pillow refuses it on open.
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0")) + _png_chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    with pytest.raises(BadImageError, match=r"bomb\.png: decompression bomb"):
        decode(str(path))


def test_unreadable_path(tmp_path):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(BadImageError, match="cannot read"):
        decode(str(folder))


def write_bad_files(folder: Path, rng) -> dict[str, str]:
    """One file of each kind that must be refused, by name → the words its reason must hold."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    jpeg = write_image(folder / "good.jpg", photo, quality=90).read_bytes()
    png = write_image(folder / "good.png", photo).read_bytes()
    write_image(folder / "deep.png", np.full((4, 4), 40000, dtype=np.uint16))
    rows = b"".join(b"\0" + struct.pack(">6H", 1000, 2000, 3000, 65535, 0, 12345) * 2 for _ in range(2))
    rgb16 = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0)) + _png_chunk(b"IDAT", zlib.compress(rows))
    bomb = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)) + _png_chunk(b"IDAT", zlib.compress(b"\0"))
    crc_index = png.index(b"IDAT") + 4
    damaged = {
        "rgb16.png": (b"\x89PNG\r\n\x1a\n" + rgb16 + _png_chunk(b"IEND", b""), "16-bit RGB is not supported"),
        "bomb.png": (b"\x89PNG\r\n\x1a\n" + bomb + _png_chunk(b"IEND", b""), "decompression bomb"),
        "cut.jpg": (jpeg[: len(jpeg) // 2], "corrupt or truncated"),
        "cut.png": (png[:-40], "corrupt or truncated"),
        "crc.png": (png[:crc_index] + bytes([png[crc_index] ^ 1]) + png[crc_index + 1 :], "corrupt or truncated"),
        "empty.jpg": (b"", "not an image"),
        "notes.png": (b"just text", "not an image"),
    }
    for name, (data, _) in damaged.items():
        (folder / name).write_bytes(data)
    return {"deep.png": "16-bit image", **{name: words for name, (_, words) in damaged.items()}}


def test_bad_files_are_named_alike_in_process_and_through_the_pool(tmp_path, rng, engine):
    folder = tmp_path / "data"
    expected = write_bad_files(folder, rng)
    # The oracle is decode() called here, on each file alone: the engine must report its verdict.
    reasons = {}
    for name, words in expected.items():
        with pytest.raises(BadImageError) as refused:
            decode(str(folder / name))
        assert words in refused.value.reason
        reasons[str(folder / name)] = refused.value.reason
    engine.pad(folder)
    total = len(expected) + 2 + engine.padding
    with pytest.raises(BadImagesError) as failure:
        compute(str(folder), workers=engine.workers)
    lines = str(failure.value).splitlines()
    assert lines[0].startswith(f"{len(expected)} of {total} images could not be read")
    assert sorted(lines[1:]) == sorted(f"  {path}: {reason}" for path, reason in reasons.items())
    result = compute(str(folder), workers=engine.workers, on_error="skip")
    assert dict(result.skipped) == reasons
    assert result.images == 2 + engine.padding


def test_the_bomb_limit_holds_in_every_process(tmp_path, rng, engine, monkeypatch):
    folder = tmp_path / "data"
    write_image(folder / "big.jpg", rng.integers(0, 256, size=(50, 50, 3), dtype=np.uint8))  # the JPEG fast path
    write_image(folder / "big.png", rng.integers(0, 256, size=(50, 50, 3), dtype=np.uint8))  # the PNG fast path
    write_image(folder / "warned.png", rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8))
    write_image(folder / "small.png", rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8))
    engine.pad(folder)  # 8×8 images: under the limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    # The oracle is Pillow's own verdict: above twice the limit it refuses, above the limit it warns.
    for name in ("big.jpg", "big.png"):
        with pytest.raises(Image.DecompressionBombError):
            Image.open(folder / name)
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(folder / "warned.png").load()
    result = compute(str(folder), workers=engine.workers, on_error="skip")
    assert [(Path(path).name, reason) for path, reason in result.skipped] == [
        (name, "decompression bomb: 50×50 = 2500 pixels exceeds the limit of 2000 (2 × PIL.Image.MAX_IMAGE_PIXELS)")
        for name in ("big.jpg", "big.png")]
    assert result.images == 2 + engine.padding
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's way to lift the limit
    assert compute(str(folder), workers=engine.workers).images == 4 + engine.padding
