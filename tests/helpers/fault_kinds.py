"""A corpus of broken, hostile and tricky inputs, made from real bytes, with Pillow's verdict as the
oracle.

Every kind is built here from bytes that Pillow, ``zlib``, ``gzip``, ``tarfile`` and ``struct``
write, then damaged in one precise way. Each kind places itself in a folder and says what a correct
run must do with it:

* an image file: what Pillow decodes (``Image.open`` + ``load`` + ``convert("RGB")``, the way
  torchvision loads images) must be measured exactly; what Pillow refuses, or what chanstats' mode
  rule refuses (16-bit data under ``--mode RGB``), must be named;
* a file that is not a regular file (a dangling link, a FIFO): named, "not a regular file";
* a tar shard: its members as above when the archive is intact; when it is damaged, the shard is
  named, and only members read before the damage may be measured (never a member lost silently);
* a whole-run error (a ``@list`` file that is not UTF-8): one line naming the list and the line.

Also home of the exact oracle: integer sums over Pillow's pixels, turned into the mean and std
exactly as a correct implementation must round them.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
import warnings
import zlib
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFile

# --------------------------------------------------------------------------------------------
# The oracle


@dataclass
class Sums:
    """Exact per-channel integer sums of 8-bit RGB pixels: what every exact statistic follows from."""

    pixels: int = 0
    sums: tuple[int, int, int] = (0, 0, 0)
    squares: tuple[int, int, int] = (0, 0, 0)

    @classmethod
    def of(cls, rgb: np.ndarray) -> "Sums":
        flat = rgb.reshape(-1, 3).astype(np.int64)
        return cls(flat.shape[0], tuple(int(v) for v in flat.sum(0)), tuple(int(v) for v in (flat * flat).sum(0)))

    def __add__(self, other: "Sums") -> "Sums":
        return Sums(
            self.pixels + other.pixels,
            tuple(a + b for a, b in zip(self.sums, other.sums)),
            tuple(a + b for a, b in zip(self.squares, other.squares)),
        )

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Mean and population std on [0, 1], each rounded once from the exact value."""
        n = self.pixels
        means = [float(Fraction(s, n * 255)) for s in self.sums]
        stds = []
        with localcontext() as context:
            context.prec = 80
            for s, q in zip(self.sums, self.squares):
                stds.append(float((Decimal(n * q - s * s) / Decimal(n * n * 255 * 255)).sqrt()))
        return means, stds


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def pillow_verdict(data: bytes) -> np.ndarray | str:
    """Pillow's RGB pixels of ``data`` as torchvision's loader gets them, or why they are refused.

    Refused: whatever Pillow raises on (truncation is never tolerated; a decompression bomb is
    refused where Pillow raises, above twice ``MAX_IMAGE_PIXELS``, and only warned about below),
    and, by chanstats' documented mode rule, 16-bit or 32-bit data that ``convert("RGB")`` would
    silently cut to 8 bits.
    """
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                if image.mode in SIXTEEN_BIT_MODES or _png_bit_depth(data) == 16:
                    return f"16-bit or wider data ({image.mode})"
                return np.asarray(image.convert("RGB"))
    except Exception as error:  # noqa: BLE001 - any refusal by Pillow is the verdict
        return f"Pillow refuses it: {type(error).__name__}: {error}"


def _png_bit_depth(data: bytes) -> int | None:
    # Read straight from IHDR: Pillow opens 16-bit RGB PNGs as 8-bit RGB without saying so.
    if data.startswith(PNG_SIGNATURE) and len(data) >= 25 and data[12:16] == b"IHDR":
        return data[24]
    return None


# --------------------------------------------------------------------------------------------
# Real image bytes


def photo(seed: int, height: int = 24, width: int = 32) -> np.ndarray:
    """A smooth image with noise: compresses like a photograph, small enough to be fast."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) * 127 // max(height + width - 2, 1)], -1)
    return np.clip(base + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)


def encode(image: Image.Image | np.ndarray, format: str, **options) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def jpeg(seed: int = 1, **options) -> bytes:
    return encode(photo(seed), "JPEG", quality=90, **options)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    """A PNG chunk; ``crc`` overrides the correct CRC (to damage it)."""
    if crc is None:
        crc = zlib.crc32(body, zlib.crc32(kind))
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc & 0xFFFFFFFF)


def ihdr(width: int, height: int, depth: int = 8, colour: int = 2, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def scanlines(pixels: np.ndarray, filters: list[int] | None = None) -> bytes:
    """Rows of ``pixels`` (H, W, C) uint8, each behind a filter byte; every filter is 0 (None) here
    except that ``filters`` may claim others (the bytes are not filtered: tests of damage only)."""
    rows = pixels.reshape(pixels.shape[0], -1)
    filters = filters or [0] * len(rows)
    return b"".join(bytes([f]) + row.tobytes() for f, row in zip(filters, rows))


def png(pixels: np.ndarray, colour: int = 2, *, stream: bytes | None = None, before_idat: bytes = b"",
        idat_parts: int = 1, after_iend: bytes = b"") -> bytes:
    """A PNG of ``pixels`` (filter None on every row), optionally with another zlib ``stream``."""
    height, width = pixels.shape[:2]
    stream = zlib.compress(scanlines(pixels)) if stream is None else stream
    cut = [len(stream) * i // idat_parts for i in range(idat_parts + 1)]
    idats = b"".join(chunk(b"IDAT", stream[a:b]) for a, b in zip(cut, cut[1:]))
    return PNG_SIGNATURE + ihdr(width, height, 8, colour) + before_idat + idats + chunk(b"IEND", b"") + after_iend


def split_idat_with_empty(pixels: np.ndarray) -> bytes:
    """Image data in three IDAT chunks with an empty one between them (valid PNG)."""
    stream = zlib.compress(scanlines(pixels))
    third = len(stream) // 3
    parts = [stream[:third], b"", stream[third : 2 * third], stream[2 * third :]]
    height, width = pixels.shape[:2]
    idats = b"".join(chunk(b"IDAT", part) for part in parts)
    return PNG_SIGNATURE + ihdr(width, height) + idats + chunk(b"IEND", b"")


def adam7_png(pixels: np.ndarray) -> bytes:
    """An interlaced (Adam7) RGB PNG, which Pillow reads but does not write."""
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    data = b""
    for x0, y0, dx, dy in passes:
        sub = pixels[y0::dy, x0::dx]
        if sub.size:
            data += scanlines(np.ascontiguousarray(sub))
    height, width = pixels.shape[:2]
    return PNG_SIGNATURE + ihdr(width, height, 8, 2, interlace=1) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")


def png_chunks(data: bytes) -> list[tuple[int, bytes]]:
    """``(offset, kind)`` of every chunk of an intact PNG."""
    found, position = [], len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        found.append((position, kind))
        position += 12 + length
    return found


def jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """``(offset of the marker, marker byte)`` of every segment with a length field before the scan."""
    found, position = [], 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        found.append((position, marker))
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack_from(">H", data, position + 2)
        position += 2 + length
    return found


def with_jpeg_size(data: bytes, height: int, width: int) -> bytes:
    """A JPEG whose frame header declares another size (its data unchanged)."""
    for position, marker in jpeg_segments(data):
        if marker in (0xC0, 0xC1, 0xC2):
            return data[: position + 5] + struct.pack(">HH", height, width) + data[position + 9 :]
    raise ValueError("no frame header")


def flip(data: bytes, position: int, mask: int = 0xFF) -> bytes:
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1 :]


def sixteen_bit_png(colour: int) -> bytes:
    channels = {0: 1, 2: 3}[colour]
    rows = np.random.default_rng(5).integers(0, 65536, (6, 8 * channels), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    return PNG_SIGNATURE + ihdr(8, 6, 16, colour) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def text_chunk_bomb() -> bytes:
    """A small valid image with a zTXt chunk inflating to 64 MiB (Pillow caps text chunks)."""
    body = b"Comment\0\0" + zlib.compress(bytes(64 << 20), 9)
    return png(photo(7, 8, 8), before_idat=chunk(b"zTXt", body))


def cmyk_jpeg() -> bytes:
    cmyk = np.concatenate([photo(8), photo(9)[:, :, :1]], axis=2)
    return encode(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=90)


def zlib_without_adler(data: bytes) -> bytes:
    """A complete zlib stream with its Adler-32 damaged."""
    stream = zlib.compress(data)
    return stream[:-4] + bytes(b ^ 0x5A for b in stream[-4:])


# --------------------------------------------------------------------------------------------
# Kinds of image file


def _image_kinds() -> dict[str, tuple[str, Callable[[], bytes]]]:
    """name → (file extension, bytes). Built lazily: a few kinds are large before compression."""
    good_png = lambda: png(photo(3))  # noqa: E731
    rgb = photo(4)
    return {
        # truncation
        "jpeg_cut_in_header": ("jpg", lambda: jpeg()[:40]),
        "jpeg_cut_mid_scan": ("jpg", lambda: jpeg()[: len(jpeg()) * 2 // 3]),
        "jpeg_missing_eoi": ("jpg", lambda: jpeg()[:-2]),
        "jpeg_cut_then_eoi": ("jpg", lambda: jpeg()[: len(jpeg()) * 3 // 4] + b"\xff\xd9"),
        "png_cut_in_signature": ("png", lambda: good_png()[:5]),
        "png_cut_in_ihdr": ("png", lambda: good_png()[:20]),
        "png_cut_in_idat": ("png", lambda: good_png()[: len(good_png()) // 2]),
        "png_without_iend": ("png", lambda: good_png()[:-12]),
        "png_zlib_ends_early": ("png", lambda: png(rgb, stream=zlib.compress(scanlines(rgb))[:-40])),
        "png_zlib_stream_short": ("png", lambda: png(rgb, stream=zlib.compress(scanlines(rgb)[:-50]))),
        "png_zlib_stream_long": ("png", lambda: png(rgb, stream=zlib.compress(scanlines(rgb) + bytes(500)))),
        # not images at all
        "empty_jpg": ("jpg", lambda: b""),
        "empty_png": ("png", lambda: b""),
        "text_named_jpg": ("jpg", lambda: b"just some text, not a picture\n" * 20),
        "html_named_jpg": ("jpg", lambda: b"<!DOCTYPE html><html><body>403 Forbidden</body></html>\n"),
        "zeros_named_png": ("png", lambda: bytes(4096)),
        # impossible or hostile headers
        "png_zero_width": ("png", lambda: png(rgb)[:16] + ihdr(0, 24)[8:] + png(rgb)[33:]),
        "png_zero_height": ("png", lambda: png(rgb)[:16] + ihdr(32, 0)[8:] + png(rgb)[33:]),
        "png_declares_10gpx": ("png", lambda: PNG_SIGNATURE + ihdr(100_000, 100_000) + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b"")),
        "png_declares_100mpx": ("png", lambda: PNG_SIGNATURE + ihdr(10_000, 10_000, 8, 0) + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b"")),
        "jpeg_declares_4gpx": ("jpg", lambda: with_jpeg_size(jpeg(), 65_000, 65_000)),
        "png_zlib_bomb_in_small_image": ("png", lambda: png(rgb, stream=zlib.compress(scanlines(rgb) + bytes(64 << 20), 9))),
        "png_ztxt_bomb": ("png", text_chunk_bomb),
        "png_large_flat_image": ("png", lambda: png(np.zeros((1500, 2000, 1), np.uint8), colour=0)),
        # checksums
        "png_bad_ihdr_crc": ("png", lambda: PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 24, 8, 2, 0, 0, 0), crc=1) + good_png()[33:]),
        "png_bad_idat_crc": ("png", lambda: png(rgb)[:-16] + b"\0\0\0\0" + png(rgb)[-12:]),
        "png_bad_ancillary_crc": ("png", lambda: png(rgb, before_idat=chunk(b"gAMA", struct.pack(">I", 45455), crc=7))),
        "png_bad_adler32": ("png", lambda: png(rgb, stream=zlib_without_adler(scanlines(rgb)))),
        "png_unknown_filter_type": ("png", lambda: png(rgb, stream=zlib.compress(scanlines(rgb, [0, 1, 2, 3, 4, 7] * 4)))),
        "png_huge_chunk_length": ("png", lambda: good_png()[:33] + b"\x7f\xff\xff\xff" + good_png()[37:]),
        # refusals by mode rule
        "png_16bit_rgb": ("png", lambda: sixteen_bit_png(2)),
        "png_16bit_grey": ("png", lambda: sixteen_bit_png(0)),
        "tiff_16bit_grey": ("tif", lambda: encode(Image.fromarray(np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000), "TIFF")),
        # tricky but valid
        "png_palette": ("png", lambda: encode(Image.fromarray(rgb).quantize(16), "PNG")),
        "png_palette_transparency": ("png", lambda: encode(Image.fromarray(rgb).quantize(16), "PNG", transparency=3)),
        "png_rgba": ("png", lambda: encode(Image.fromarray(np.dstack([rgb, photo(6)[:, :, 0]]), "RGBA"), "PNG")),
        "png_grey_with_trns": ("png", lambda: encode(Image.fromarray(rgb[:, :, 0]), "PNG", transparency=17)),
        "png_1bit": ("png", lambda: encode(Image.fromarray(rgb[:, :, 0] > 128), "PNG")),
        "png_interlaced": ("png", lambda: adam7_png(photo(10, 13, 11))),
        "png_split_and_empty_idat": ("png", lambda: split_idat_with_empty(rgb)),
        "png_data_after_iend": ("png", lambda: png(rgb, after_iend=b"trailing garbage" * 10)),
        "png_named_jpg": ("jpg", good_png),
        "png_one_row_wide": ("png", lambda: png(photo(11, 1, 5000))),
        "jpeg_progressive": ("jpg", lambda: jpeg(progressive=True)),
        "jpeg_greyscale": ("jpg", lambda: encode(photo(12)[:, :, 0], "JPEG")),
        "jpeg_cmyk": ("jpg", cmyk_jpeg),
        "jpeg_444_restart_markers": ("jpg", lambda: jpeg(subsampling=0, restart_marker_blocks=1)),
        "jpeg_trailing_garbage": ("jpg", lambda: jpeg() + b"garbage after the end" * 5),
        "jpeg_damaged_scan": ("jpg", lambda: flip(jpeg(), len(jpeg()) * 3 // 4)),
        "webp_lossy": ("webp", lambda: encode(rgb, "WEBP", quality=80)),
        "webp_lossless": ("webp", lambda: encode(rgb, "WEBP", lossless=True)),
        "webp_truncated": ("webp", lambda: encode(rgb, "WEBP", quality=80)[:-30]),
        "tiff_rgb": ("tif", lambda: encode(rgb, "TIFF")),
        "tiff_deflate": ("tiff", lambda: encode(rgb, "TIFF", compression="tiff_adobe_deflate")),
        "tiff_truncated": ("tif", lambda: encode(rgb, "TIFF")[:-300]),
        "bmp": ("bmp", lambda: encode(rgb, "BMP")),
        "bmp_truncated": ("bmp", lambda: encode(rgb, "BMP")[:-100]),
        "gif_named_png": ("png", lambda: encode(Image.fromarray(rgb).quantize(32), "GIF")),
        "gif_truncated_named_png": ("png", lambda: encode(Image.fromarray(rgb).quantize(32), "GIF")[:-40]),
        "ppm": ("ppm", lambda: encode(rgb, "PPM")),
        "pgm_16bit": ("pgm", lambda: b"P5 8 6 65535\n" + np.arange(48, dtype=">u2").tobytes()),
    }


# --------------------------------------------------------------------------------------------
# Placing kinds, and what each must give


@dataclass
class Expected:
    """What a correct run gives for one placed kind.

    ``files``: display name → Pillow's RGB pixels (to be measured) or the reason it is refused (to
    be named). ``archive``: a damaged shard (its display name) whose first members, in
    ``archive_members``, may be measured only as a prefix of at most ``intact_members``.
    ``fatal``: the whole run stops with one line naming these words (a list file and its line).
    """

    inputs: list[str]
    files: dict[str, np.ndarray | str] = field(default_factory=dict)
    archive: str | None = None
    archive_members: list[np.ndarray] = field(default_factory=list)
    intact_members: int = 0
    fatal: list[str] | None = None

    @property
    def refused(self) -> dict[str, str]:
        return {name: v for name, v in self.files.items() if isinstance(v, str)}

    @property
    def measured(self) -> dict[str, np.ndarray]:
        return {name: v for name, v in self.files.items() if not isinstance(v, str)}


@dataclass(frozen=True)
class Kind:
    """One kind of input. ``place(folder, cwd)`` writes it under ``folder`` and returns what a
    correct run gives; display names are relative to ``cwd``, where chanstats runs. ``batchable``:
    its verdict concerns its own file only, so many such kinds can share one run."""

    name: str
    place: Callable[[Path, Path], Expected]
    batchable: bool


def _image_kind(name: str, extension: str, make: Callable[[], bytes]) -> Kind:
    def place(folder: Path, cwd: Path) -> Expected:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.{extension}"
        data = make()
        path.write_bytes(data)
        return Expected([], {_display(path, cwd): pillow_verdict(data)})

    return Kind(name, place, batchable=True)


def _display(path: Path | bytes, cwd: Path) -> str:
    """How chanstats names a file found by walking a folder given relative to ``cwd``."""
    return os.fsdecode(os.path.relpath(os.fsencode(path), os.fsencode(cwd)))


def _non_utf8_name(corrupt: bool) -> Kind:
    def place(folder: Path, cwd: Path) -> Expected:
        folder.mkdir(parents=True, exist_ok=True)
        path = os.fsencode(folder) + (b"/caf\xe9-bad.jpg" if corrupt else b"/caf\xe9-\xff.png")
        data = jpeg()[:300] if corrupt else png(photo(13))
        with open(path, "wb") as handle:
            handle.write(data)
        return Expected([], {_display(path, cwd): pillow_verdict(data)})

    return Kind("non_utf8_name_corrupt" if corrupt else "non_utf8_name_valid", place, batchable=True)


def _symlink_to_image(folder: Path, cwd: Path) -> Expected:
    target_dir = folder.parent / (folder.name + "_target")
    target_dir.mkdir(parents=True, exist_ok=True)
    data = jpeg(seed=14)
    (target_dir / "real.jpg").write_bytes(data)
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "link.jpg"
    link.symlink_to(os.path.relpath(target_dir / "real.jpg", folder))
    return Expected([_display(folder, cwd)], {_display(link, cwd): pillow_verdict(data)})


def _dangling_symlink(folder: Path, cwd: Path) -> Expected:
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "gone.jpg"
    link.symlink_to("nowhere/missing.jpg")
    return Expected([_display(folder, cwd)], {_display(link, cwd): "not a regular file"})


def _fifo(folder: Path, cwd: Path) -> Expected:
    folder.mkdir(parents=True, exist_ok=True)
    pipe = folder / "pipe.jpg"
    os.mkfifo(pipe)  # opening it for reading would block forever: it must never be opened
    return Expected([_display(folder, cwd)], {_display(pipe, cwd): "not a regular file"})


def _listed(folder: Path, cwd: Path, lines: list[bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ok.png").write_bytes(png(photo(15)))
    (folder / "bad.jpg").write_bytes(jpeg()[:200])
    list_file = folder / "list.txt"
    list_file.write_bytes(b"\n".join(lines) + b"\n")
    return list_file


def _list_with_bad_image(folder: Path, cwd: Path) -> Expected:
    list_file = _listed(folder, cwd, [b"# images", b"ok.png", b"bad.jpg"])
    return Expected(
        ["@" + _display(list_file, cwd)],
        {_display(folder / "ok.png", cwd): pillow_verdict(png(photo(15))), _display(folder / "bad.jpg", cwd): pillow_verdict(jpeg()[:200])},
    )


def _non_utf8_list(folder: Path, cwd: Path) -> Expected:
    list_file = _listed(folder, cwd, [b"# images", b"ok.png", b"caf\xe9.png"])
    # The line holding the byte that is not UTF-8 is line 3.
    return Expected(["@" + _display(list_file, cwd)], fatal=[_display(list_file, cwd), "3"])


# Tar shards -------------------------------------------------------------------------------------

MEMBERS = [("m/a.png", lambda: png(photo(20))), ("m/b.bmp", lambda: encode(photo(21), "BMP")), ("m/c.jpg", lambda: jpeg(22)), ("m/d.png", lambda: png(photo(23)))]


def tar_bytes(members: list[tuple[str, bytes]], extra_non_image: bool = True) -> bytes:
    """A plain ustar archive of ``members`` (and a text file and a folder, which are not images)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        if extra_non_image:
            folder = tarfile.TarInfo("m")
            folder.type = tarfile.DIRTYPE
            archive.addfile(folder)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
        if extra_non_image:
            note = tarfile.TarInfo("m/readme.txt")
            note.size = 5
            archive.addfile(note, io.BytesIO(b"hello"))
    return buffer.getvalue()


def member_offsets(archive: bytes) -> dict[str, tuple[int, int]]:
    """name → (header offset, data offset) in an intact archive."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as reader:
        return {m.name: (m.offset, m.offset_data) for m in reader.getmembers()}


def _member_data() -> list[tuple[str, bytes]]:
    return [(name, make()) for name, make in MEMBERS]


Damage = Callable[[bytes, bytes, dict], "tuple[bytes, int | None]"]


def _tar_kind(name: str, suffix: str, damage: Damage, gzip_level: int | None = None, bad_member: bool = False) -> Kind:
    """A shard made from :data:`MEMBERS`; ``damage(shard bytes, tar bytes, member offsets)``
    returns the damaged shard and how many leading members stay readable (None: intact)."""

    def place(folder: Path, cwd: Path) -> Expected:
        folder.mkdir(parents=True, exist_ok=True)
        members = _member_data()
        if bad_member:
            members[1] = ("m/b.jpg", jpeg()[:250])
        archive = tar_bytes(members)
        shard_bytes = archive if gzip_level is None else gzip.compress(archive, gzip_level, mtime=0)
        damaged, intact = damage(shard_bytes, archive, member_offsets(archive))
        path = folder / f"{name}{suffix}"
        path.write_bytes(damaged)
        shard = _display(path, cwd)
        verdicts = [pillow_verdict(data) for _, data in members]
        if intact is None:
            return Expected([shard], {f"{shard}::{member}": verdict for (member, _), verdict in zip(members, verdicts)})
        return Expected([shard], archive=shard, archive_members=verdicts, intact_members=intact)

    return Kind(name, place, batchable=False)


def _in_stream(shard: bytes, archive: bytes, tar_offset: int) -> int:
    """Where the tar byte at ``tar_offset`` lies in a gzip shard written at level 0 (stored)."""
    needle = archive[tar_offset : tar_offset + 48]
    position = shard.find(needle)
    assert position > 0 and shard.count(needle) == 1, "the stored bytes must be found once"
    return position


def _intact(shard: bytes, archive: bytes, offsets: dict) -> tuple[bytes, None]:
    return shard, None


def _second_header_damaged(shard: bytes, archive: bytes, offsets: dict) -> tuple[bytes, int]:
    header = offsets["m/b.bmp"][0]
    return flip(shard, header + 3, 0x20), 1  # a letter of the name: the checksum no longer matches


def _cut_mid_member(shard: bytes, archive: bytes, offsets: dict) -> tuple[bytes, int]:
    return shard[: offsets["m/c.jpg"][1] + 100], 2


def _cut_at_member_boundary(shard: bytes, archive: bytes, offsets: dict) -> tuple[bytes, int]:
    # Ends where the third member's header would start: no end-of-archive blocks.
    return shard[: offsets["m/c.jpg"][0]], 2


def _stored_member_flipped(shard: bytes, archive: bytes, offsets: dict) -> tuple[bytes, int]:
    # A BMP has no checksum of its own: only the gzip CRC-32 can tell its pixels changed.
    return flip(shard, _in_stream(shard, archive, offsets["m/b.bmp"][1] + 200), 0x01), 1


def _gzip_cut_mid_stream(shard: bytes, archive: bytes, offsets: dict) -> tuple[bytes, int]:
    return shard[: _in_stream(shard, archive, offsets["m/c.jpg"][1] + 50)], 2


def _gzip_bad_crc(shard: bytes, archive: bytes, offsets: dict) -> tuple[bytes, int]:
    return flip(shard, len(shard) - 6), len(MEMBERS)


def _garbage(shard: bytes, archive: bytes, offsets: dict) -> tuple[bytes, int]:
    return b"this is not a tar archive\n" * 40, 0


def _empty(shard: bytes, archive: bytes, offsets: dict) -> tuple[bytes, int]:
    return b"", 0


# --------------------------------------------------------------------------------------------


def all_kinds() -> list[Kind]:
    """Every kind of the corpus."""
    kinds = [_image_kind(name, ext, make) for name, (ext, make) in _image_kinds().items()]
    kinds += [_non_utf8_name(corrupt=False), _non_utf8_name(corrupt=True)]
    kinds += [
        Kind("symlink_to_image", _symlink_to_image, batchable=False),
        Kind("dangling_symlink", _dangling_symlink, batchable=False),
        Kind("fifo", _fifo, batchable=False),
        Kind("list_with_bad_image", _list_with_bad_image, batchable=False),
        Kind("non_utf8_list", _non_utf8_list, batchable=False),
        _tar_kind("tar_intact", ".tar", _intact),
        _tar_kind("tar_with_truncated_member", ".tar", _intact, bad_member=True),
        _tar_kind("tar_second_header_damaged", ".tar", _second_header_damaged),
        _tar_kind("tar_cut_mid_member", ".tar", _cut_mid_member),
        _tar_kind("tar_cut_without_end_blocks", ".tar", _cut_at_member_boundary),
        _tar_kind("tar_garbage", ".tar", _garbage),
        _tar_kind("tar_empty", ".tar", _empty),
        _tar_kind("tgz_intact", ".tar.gz", _intact, gzip_level=6),
        _tar_kind("tgz_stored_member_flipped", ".tar.gz", _stored_member_flipped, gzip_level=0),
        _tar_kind("tgz_cut_mid_stream", ".tar.gz", _gzip_cut_mid_stream, gzip_level=0),
        _tar_kind("tgz_bad_crc", ".tar.gz", _gzip_bad_crc, gzip_level=6),
    ]
    return kinds


# --------------------------------------------------------------------------------------------
# The good images every kind is placed among


def write_good_tree(root: Path, count: int = 40) -> list[np.ndarray]:
    """``count`` tiny JPEGs and PNGs in two folders; returns Pillow's RGB pixels of each."""
    pixels = []
    for i in range(count):
        data = png(photo(100 + i, 6, 8)) if i % 2 else encode(photo(100 + i, 8, 6), "JPEG", quality=85)
        path = root / f"class{i % 2}" / f"img{i:03d}.{'png' if i % 2 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        verdict = pillow_verdict(data)
        assert not isinstance(verdict, str), verdict
        pixels.append(verdict)
    return pixels
