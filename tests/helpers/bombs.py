"""Decompression bombs: small files whose headers declare far more pixels than they hold.

Each is written from its format's specification with ``struct`` and ``zlib`` (no encoder would
make a 60000×60000 image without first holding it in memory), and each is a file a real decoder
accepts as far as its header: decoding it would allocate the declared size.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# TIFF tag types
_SHORT, _LONG = 3, 4


def tiff_bomb(width: int, height: int, *, tiled: bool = True, bits: int = 8, samples: int = 1,
              pages: int = 1) -> bytes:
    """A little-endian classic TIFF of ``width``×``height`` pixels (``samples`` per pixel of
    ``bits`` bits, Deflate-compressed) whose tiles (or one-row strips) all point at the same
    small compressed blob of zeros: a few hundred KB that decode to gigabytes. ``pages`` > 1
    chains that many such pages (a stack)."""
    tile = 256
    if tiled:
        across, down = -(-width // tile), -(-height // tile)
        segments, segment_bytes = across * down, tile * tile * samples * bits // 8
    else:
        segments, segment_bytes = height, width * samples * bits // 8
    blob = zlib.compress(bytes(segment_bytes), 9)
    out = io.BytesIO()
    out.write(b"II*\x00" + struct.pack("<I", 0))  # the first IFD's offset is patched below
    blob_at = out.tell()
    out.write(blob)
    counts_at = out.tell()
    out.write(struct.pack(f"<{segments}I", *([len(blob)] * segments)))
    offsets_at = out.tell()
    out.write(struct.pack(f"<{segments}I", *([blob_at] * segments)))
    bits_at = out.tell()
    out.write(struct.pack(f"<{max(samples, 2)}H", *([bits] * max(samples, 2))))
    previous_link = 4
    for _ in range(pages):
        tags = [
            (256, _LONG, 1, width),
            (257, _LONG, 1, height),
            (258, _SHORT, samples, bits if samples == 1 else bits_at),
            (259, _SHORT, 1, 8),  # Adobe Deflate
            (262, _SHORT, 1, 1 if samples == 1 else 2),  # min-is-black, or RGB
            (277, _SHORT, 1, samples),
            (284, _SHORT, 1, 1),  # chunky
        ]
        if tiled:
            tags += [(322, _LONG, 1, tile), (323, _LONG, 1, tile), (324, _LONG, segments, offsets_at),
                     (325, _LONG, segments, counts_at)]
        else:
            tags += [(273, _LONG, segments, offsets_at), (278, _LONG, 1, 1), (279, _LONG, segments, counts_at)]
        tags.sort()
        if out.tell() % 2:
            out.write(b"\0")
        ifd_at = out.tell()
        out.seek(previous_link)
        out.write(struct.pack("<I", ifd_at))
        out.seek(ifd_at)
        out.write(struct.pack("<H", len(tags)))
        for tag, kind, count, value in tags:
            packed = struct.pack("<HI", value, 0)[:4] if kind == _SHORT and count == 1 else struct.pack("<I", value)
            out.write(struct.pack("<HHI", tag, kind, count) + packed)
        previous_link = out.tell()
        out.write(struct.pack("<I", 0))
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def png_bomb(width: int, height: int, *, bits: int = 8, colour_type: int = 2) -> bytes:
    """A PNG whose IHDR declares ``width``×``height`` and whose image data is a zlib stream of
    zeros (the first rows of the image: a decoder that trusted the header would allocate it all
    before finding the stream short)."""
    header = struct.pack(">IIBBBBB", width, height, bits, colour_type, 0, 0, 0)
    data = zlib.compress(bytes(1 << 20), 9)
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def jpeg_bomb(width: int, height: int, grey: bool = False) -> bytes:
    """A real small JPEG (written by Pillow) whose start-of-frame marker is edited to declare
    ``width``×``height`` (at most 65535 each, the format's limit)."""
    image = Image.fromarray(np.full((16, 16) if grey else (16, 16, 3), 128, dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_bomb(width: int = 16383, height: int = 16383) -> bytes:
    """A real lossless WebP (written by Pillow) whose VP8L header is edited to declare
    ``width``×``height`` (at most 16384 each, the format's limit)."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, dtype=np.uint8)).save(buffer, format="WEBP", lossless=True)
    data = bytearray(buffer.getvalue())
    at = data.index(b"VP8L") + 8  # chunk tag, chunk size, then the 0x2f signature byte
    assert data[at] == 0x2F
    (bits,) = struct.unpack_from("<I", data, at + 1)
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    struct.pack_into("<I", data, at + 1, bits)
    return bytes(data)


def npy_bomb(path: Path, shape: tuple[int, ...], dtype: str = "uint8") -> Path:
    """A ``.npy`` whose header declares ``shape``, its data a sparse hole of that size (the file
    takes no disk space: the kernel reads zeros)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                  "shape": shape})
    with open(path, "wb") as out:
        out.write(header.getvalue())
        out.truncate(len(header.getvalue()) + int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return path


def npz_bomb(path: Path, key: str, shape: tuple[int, ...], dtype: str = "uint8") -> Path:
    """A ``.npz`` (a zip file) whose Deflate-compressed member ``key`` is an array of zeros of
    ``shape``, whose size must be a whole number of MiB: the Deflate stream is one compressed MiB
    of zeros repeated (a full flush makes each copy independent), so a gigabyte member is written
    in a few KB and the time of its CRC."""
    try:
        from isal.isal_zlib import crc32  # about 8× zlib's on this much data
    except ImportError:  # pragma: no cover
        from zlib import crc32
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                  "shape": shape})
    mib = bytes(1 << 20)
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    assert size % len(mib) == 0 and len(header.getvalue()) + size < 2**32, "keep it a whole MiB, under 4 GiB"
    copies = size // len(mib)

    def deflated(data: bytes, flush: int = zlib.Z_FULL_FLUSH) -> bytes:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        return packer.compress(data) + packer.flush(flush)

    stream = deflated(header.getvalue()) + deflated(mib) * copies + deflated(b"", zlib.Z_FINISH)
    checksum = crc32(header.getvalue())
    for _ in range(copies):
        checksum = crc32(mib, checksum)
    name = (key + ".npy").encode()
    fields = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0x21, checksum, len(stream), len(header.getvalue()) + size)
    local = b"PK\x03\x04" + fields + struct.pack("<HH", len(name), 0) + name
    central = b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0, 0) + name
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, len(central), len(local) + len(stream), 0)
    path.write_bytes(local + stream + central + end)
    return path


# A child that runs the real command in-process and reports the peak memory of itself and of the
# workers it started (the kernel's own counts).
_CHILD = """
import resource, sys
from chanstats.cli import main
sys.argv = ["chanstats", *sys.argv[1:]]
try:
    main()
except SystemExit as done:
    code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
else:
    code = 0
# VmHWM, not RUSAGE_SELF: ru_maxrss survives exec, so it would count the (large) test process
# this child was forked from.
with open("/proc/self/status") as status:
    self_peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stderr.write(f"\\nPEAK_KB {max(self_peak, children_peak)}\\n")
sys.exit(code)
"""


def run_measuring_peak(args: list[str], timeout: float = 120) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``chanstats ARGS`` in a fresh Python process; returns the finished process (the peak
    report removed from its stderr) and the peak resident memory in MB of that process or of any
    worker it started."""
    import os

    env = dict(os.environ)
    env.pop("CHANSTATS_DEBUG", None)
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    stderr, _, peak = done.stderr.rpartition("\nPEAK_KB ")
    done.stderr = stderr
    return done, int(peak.strip()) // 1024
