"""A folder of 5,000 photographs with 10 assorted bad files, through the real command and its pool.

Checks what a user relies on at scale: under ``--on-error fail`` the run exits 2, lists all 10 bad
files (one line each) and writes nothing; under ``--on-error skip`` it exits 0, lists the same 10
under ``skipped`` and reports exactly the statistics of the 5,000 good images (oracle: Pillow's
pixels summed with Python integers, rounded once). Prints a small table.

    python bench/bad_inputs.py [--images 5000] [--workers 2] [--folder DIR]

The photographs are random crops (48-127 px, 1 in 7 saved as PNG, the rest JPEG) of the example
images in ``examples/images``; the folder is generated once and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "images"


def write_photos(folder: Path, count: int) -> None:
    photos = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(EXAMPLES.iterdir())]
    rng = np.random.default_rng(0)
    for i in range(count):
        photo = photos[i % len(photos)]
        height, width = rng.integers(48, 128, 2)
        top, left = rng.integers(0, photo.shape[0] - height), rng.integers(0, photo.shape[1] - width)
        sub = folder / f"class{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        crop = Image.fromarray(photo[top : top + height, left : left + width])
        crop.save(sub / f"img{i:05d}.{'png' if i % 7 == 0 else 'jpg'}", quality=90)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def write_bad_files(folder: Path, jpeg: Path, png: Path) -> list[str]:
    """Ten kinds of bad input; returns their names."""
    bad = folder / "bad"
    bad.mkdir()
    jpeg_bytes, png_bytes = jpeg.read_bytes(), png.read_bytes()
    damaged_crc = bytearray(png_bytes)
    damaged_crc[29] ^= 0xFF  # inside IHDR's CRC
    files = {
        "truncated.jpg": jpeg_bytes[: len(jpeg_bytes) // 2],
        "truncated.png": png_bytes[:100],
        "text.jpg": b"hello, not an image\n",
        "page.png": b"<html><body>404</body></html>\n",
        "empty.jpg": b"",
        "badcrc.png": bytes(damaged_crc),
        "bomb.png": _png(60000, 60000, zlib.compress(b"\0" * 100)),
        "zero.png": _png(0, 10, zlib.compress(b"")),
    }
    for name, content in files.items():
        (bad / name).write_bytes(content)
    os.symlink(bad / "nowhere.jpg", bad / "dangling.jpg")
    os.mkfifo(bad / "fifo.jpg")
    return sorted([*files, "dangling.jpg", "fifo.jpg"])


def exact_statistics(paths: list[Path]) -> tuple[list[float], list[float]]:
    """Mean and population std on [0, 1] from Python integers, each rounded once."""
    sums, squares, count = [0, 0, 0], [0, 0, 0], 0
    for path in paths:
        pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(np.int64)
        count += pixels.shape[0]
        for c in range(3):
            sums[c] += int(pixels[:, c].sum())
            squares[c] += int((pixels[:, c] * pixels[:, c]).sum())
    means = [float(Fraction(s, count * 255)) for s in sums]
    with localcontext() as context:
        context.prec = 80
        stds = [float((Decimal(count * q - s * s) / Decimal(count * count * 255 * 255)).sqrt()) for s, q in zip(sums, squares)]
    return means, stds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "chanstats-bad-inputs")
    args = parser.parse_args()
    data = args.folder / f"data-{args.images}"
    if not data.exists():
        write_photos(data, args.images)
        good = sorted(data.rglob("*.*"))
        write_bad_files(data, next(p for p in good if p.suffix == ".jpg"), next(p for p in good if p.suffix == ".png"))
    bad_names = sorted(p.name for p in (data / "bad").iterdir())
    good = sorted(p for p in data.rglob("*") if p.parent.name != "bad" and p.is_file())
    mean, std = exact_statistics(good)
    command = [sys.executable, "-m", "chanstats", "compute", str(data), "-q", "--workers", str(args.workers)]
    rows = []
    for policy in ("fail", "skip"):
        output = args.folder / f"{policy}.json"
        output.unlink(missing_ok=True)
        started = time.perf_counter()
        run = subprocess.run([*command, "--on-error", policy, "-o", str(output)], capture_output=True, text=True, timeout=900)
        seconds = time.perf_counter() - started
        if policy == "fail":
            named = [name for name in bad_names if any(line.strip().startswith(str(data / "bad" / name)) for line in run.stderr.splitlines())]
            ok = run.returncode == 2 and len(named) == len(bad_names) and not output.exists() and "Traceback" not in run.stderr
            rows.append((policy, run.returncode, f"{len(named)} of {len(bad_names)} named, no output", ok, seconds))
        else:
            result = json.loads(output.read_text()) if output.exists() else {}
            skipped = sorted(Path(entry["path"]).name for entry in result.get("skipped", []))
            exact = result.get("exact", {})
            ok = (run.returncode == 0 and skipped == bad_names and result["count"]["images"] == len(good)
                  and exact.get("mean") == mean and exact.get("std") == std and "Traceback" not in run.stderr)
            rows.append((policy, run.returncode, f"{len(skipped)} skipped, {result.get('count', {}).get('images')} measured, exact={exact.get('mean') == mean and exact.get('std') == std}", ok, seconds))
    print(f"{len(good)} photos + {len(bad_names)} bad files, {args.workers} workers")
    print(f"{'policy':<8}{'exit':>5}  {'what':<48}{'as promised':>12}{'seconds':>9}")
    for policy, code, what, ok, seconds in rows:
        print(f"{policy:<8}{code:>5}  {what:<48}{'yes' if ok else 'NO':>12}{seconds:>9.2f}")
    sys.exit(0 if all(row[3] for row in rows) else 1)


if __name__ == "__main__":
    main()
