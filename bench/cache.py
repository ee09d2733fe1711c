"""Benchmark of the measurement cache: ``chanstats check`` with a warm cache against without one.

A tree of small PNG images (default 100,000 of 32×32, generated once into bench/.cache/cache-tree),
a config computed on it, the cache filled by a first ``check --cache``; then 1 % of the images are
replaced (new pixels, new mtime) and ``check`` runs without the cache and with the warm cache.
Prints a table of wall times (best of ``--repeat``) and whether both runs printed the same bytes.

Usage::

    python -m bench.cache                 # 100k images, 2 workers
    python -m bench.cache --images 20000 --workers 2 --size 64
    python -m bench.cache --photos --repeat 1   # 100k photographs instead (see below)

``--photos``: the tree holds copies of the 2,000 photographs of ``bench/corpus.py`` (ImageNet-like
JPEG and PNG, about 500×375, 127 KiB on average: 12 GiB for 100k), over and over (copies, not hard
links: chanstats reads a file reached by two paths once), and a changed image is replaced by a copy
of another photograph.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"


def generate(root: Path, count: int, size: int, seed: int = 0) -> None:
    """``count`` random ``size``×``size`` RGB PNGs in folders of 1000 (kept between runs)."""
    from PIL import Image

    marker = root / f".complete-{count}-{size}-{seed}"
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    past = time.time() - 86400
    for i in range(count):
        folder = root / f"{i // 1000:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 200)
        pixels = (base + rng.integers(0, 56, (size, size, 3))).astype(np.uint8)
        path = folder / f"{i:07d}.png"
        Image.fromarray(pixels).save(path)
        os.utime(path, (past, past))
    marker.touch()


def link_photos(root: Path, count: int) -> list[Path]:
    """``count`` copies of the bench corpus's photographs, cycled, in folders of 1000 (kept between
    runs); returns the tree's files in order."""
    from bench.corpus import build_corpus

    photos = build_corpus(2000)
    files = [root / f"{i // 1000:04d}" / f"{i:07d}{photos[i % len(photos)].suffix.lower()}" for i in range(count)]
    marker = root / f".complete-photos-{count}"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        for i, path in enumerate(files):
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photos[i % len(photos)], path)
        marker.touch()
    return files


def change(root: Path, count: int, size: int, fraction: float, seed: int, photos: list[Path] | None = None) -> int:
    """Replace ``fraction`` of the images (evenly spread) with new pixels and a new mtime: new
    random pixels, or (``photos``: the tree's files) a copy of the next photograph, written as a new
    file so that the photograph it linked to is left alone."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    step = max(1, round(1 / fraction))
    changed = 0
    stamp = time.time() - 3600 + seed
    for i in range(0, count, step):
        if photos is not None:
            path = photos[i]
            other = next(photos[(i + k + seed) % len(photos)] for k in range(1, len(photos))
                         if photos[(i + k + seed) % len(photos)].suffix == path.suffix
                         and (i + k + seed) % 2000 != i % 2000)
            replacement = other.read_bytes()
            path.unlink()
            path.write_bytes(replacement)
        else:
            path = root / f"{i // 1000:04d}" / f"{i:07d}.png"
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        os.utime(path, (stamp, stamp))
        changed += 1
    return changed


def timed(args: list[str], repeat: int) -> tuple[float, bytes, str]:
    """Best wall time of ``chanstats ARGS`` over ``repeat`` runs, its stdout and stderr."""
    best = float("inf")
    out = b""
    err = ""
    for _ in range(repeat):
        began = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "chanstats", *args], capture_output=True)
        best = min(best, time.perf_counter() - began)
        if run.returncode not in (0, 1):
            raise SystemExit(f"chanstats {' '.join(args)} failed:\n{run.stderr.decode()}")
        out, err = run.stdout, run.stderr.decode()
    return best, out, err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of images replaced")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--verify", choices=["stat", "hash"], default="stat", help="--cache-verify")
    parser.add_argument("--photos", action="store_true", help="a tree of the bench corpus's photographs instead")
    options = parser.parse_args()

    root = CACHE / (f"cache-photos-{options.images}" if options.photos else f"cache-tree-{options.size}")
    work = CACHE / "cache-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    began = time.perf_counter()
    photos = None
    if options.photos:
        photos = link_photos(root, options.images)
        kind = "photographs (JPEG/PNG, ~500×375)"
    else:
        generate(root, options.images, options.size)
        kind = f"{options.size}×{options.size} PNG"
    print(f"tree: {options.images} images, {kind} ({time.perf_counter() - began:.0f} s to generate or find)",
          file=sys.stderr)
    config = work / "config.json"
    workers = ["--workers", str(options.workers)]
    subprocess.run([sys.executable, "-m", "chanstats", "compute", str(root), "-q", "-o", str(config), *workers],
                   check=True)
    cache = ["--cache", str(work / "cache"), "--cache-verify", options.verify]
    check = ["check", str(root), "--against", str(config), *workers]
    cold, _, _ = timed([*check, *cache], 1)  # fills the cache
    changed = change(root, options.images, options.size, options.changed, seed=int(time.time()) % 1000, photos=photos)
    plain, plain_out, _ = timed(check, options.repeat)
    warm, warm_out, warm_err = timed([*check, *cache], 1)  # the first warm run after the change
    again, again_out, _ = timed([*check, *cache], options.repeat)
    # Where the time goes: compute's --timings phases, without the cache and with the warm one.
    phases = {}
    for name, extra in (("plain", []), ("warm", cache)):
        _, _, timings = timed(["compute", str(root), "-q", "-o", str(work / f"{name}.json"), "--timings", *workers,
                               *extra], options.repeat)
        phases[name] = {phase: float(seconds) for phase, seconds in re.findall(r"(\w+) ([\d.]+) s", timings)}
    startup, _, _ = timed(["--version"], options.repeat)
    size = sum(f.stat().st_size for f in (work / "cache").iterdir())
    identical = plain_out == warm_out == again_out
    summary = next((line for line in warm_err.splitlines() if "reused" in line), "")
    print(f"| images | changed | check, no cache | check, cache filling | check, warm cache (after change) | "
          f"speed-up | warm, nothing changed | output identical | cache size |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: |")
    print(f"| {options.images:,} ({kind}, {options.verify}) | {changed:,} | {plain:.2f} s | {cold:.2f} s | "
          f"{warm:.2f} s | {plain / warm:.1f}× | {again:.2f} s | {'yes' if identical else 'NO'} | "
          f"{size / 2**20:.0f} MiB |")
    print()
    print("| compute phase | no cache | warm cache |")
    print("| --- | ---: | ---: |")
    print(f"| start-up (`chanstats --version`) | {startup:.2f} s | {startup:.2f} s |")
    for phase in ("listing", "measuring", "finalizing", "writing"):
        print(f"| {phase} | {phases['plain'].get(phase, 0):.2f} s | {phases['warm'].get(phase, 0):.2f} s |")
    print(summary.replace(str(work / "cache"), "cache"), file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    if not identical:
        raise SystemExit("the cached check printed other bytes than the check without a cache")


if __name__ == "__main__":
    main()
