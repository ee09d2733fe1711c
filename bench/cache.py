"""Benchmark of the measurement cache: ``chanstats check`` with a warm cache against without one.

A tree of small PNG images (default 100,000 of 32×32, generated once into bench/.cache/cache-tree),
a config computed on it, the cache filled by a first ``check --cache``; then, in each of
``--repeat`` rounds, 1 % of the images are replaced (new pixels, new mtime) and ``check`` runs
with the warm cache (twice: right after the change, and with nothing changed) and without it.
Prints a table of wall times per round and whether all three runs printed the same bytes.

Usage::

    python -m bench.cache                 # 100k images, 2 workers
    python -m bench.cache --images 20000 --workers 2 --size 64
    python -m bench.cache --photos        # 100k photographs instead (see below)

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


def timed(args: list[str]) -> tuple[float, bytes, str]:
    """Wall time of ``chanstats ARGS``, its stdout and stderr."""
    began = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "chanstats", *args], capture_output=True)
    seconds = time.perf_counter() - began
    if run.returncode not in (0, 1):
        raise SystemExit(f"chanstats {' '.join(args)} failed:\n{run.stderr.decode()}")
    return seconds, run.stdout, run.stderr.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of images replaced")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of change, warm check, plain check")
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
    cold, _, _ = timed([*check, *cache])  # fills the cache
    # Each round changes other images, then times the first warm check after the change (what CI
    # meets), a second one (nothing changed since), and the check without the cache on the same files.
    rounds = []
    summary = ""
    for number in range(options.repeat):
        changed = change(root, options.images, options.size, options.changed,
                         seed=(int(time.time()) + 97 * number) % 1000, photos=photos)
        warm, warm_out, warm_err = timed([*check, *cache])
        again, again_out, _ = timed([*check, *cache])
        plain, plain_out, _ = timed(check)
        rounds.append((changed, plain, warm, again, plain_out == warm_out == again_out))
        summary = next((line for line in warm_err.splitlines() if "reused" in line), "")
    # Where the time goes: compute's --timings phases, without the cache and with the warm one.
    phases = {}
    for name, extra in (("plain", []), ("warm", cache)):
        _, _, timings = timed(["compute", str(root), "-q", "-o", str(work / f"{name}.json"), "--timings", *workers,
                               *extra])
        phases[name] = {phase: float(seconds) for phase, seconds in re.findall(r"(\w+) ([\d.]+) s", timings)}
    startup = min(timed(["--version"])[0] for _ in range(3))
    size = sum(f.stat().st_size for f in (work / "cache").iterdir())
    print(f"{options.images:,} images ({kind}, --cache-verify {options.verify}); filling the cache: {cold:.2f} s; "
          f"cache size {size / 2**20:.0f} MiB")
    print()
    print("| round | changed | check, no cache | check, warm cache (after change) | speed-up | "
          "warm, nothing changed | output identical |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | :---: |")
    for number, (changed, plain, warm, again, identical) in enumerate(rounds, start=1):
        print(f"| {number} | {changed:,} | {plain:.2f} s | {warm:.2f} s | {plain / warm:.1f}× | {again:.2f} s | "
              f"{'yes' if identical else 'NO'} |")
    ratios = sorted(plain / warm for _, plain, warm, _, _ in rounds)
    print(f"| median | | | | **{ratios[len(ratios) // 2]:.1f}×** | | |")
    print()
    print("| compute phase | no cache | warm cache |")
    print("| --- | ---: | ---: |")
    print(f"| start-up (`chanstats --version`) | {startup:.2f} s | {startup:.2f} s |")
    for phase in ("listing", "measuring", "finalizing", "writing"):
        print(f"| {phase} | {phases['plain'].get(phase, 0):.2f} s | {phases['warm'].get(phase, 0):.2f} s |")
    print(summary.replace(str(work / "cache"), "cache"), file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    if not all(identical for *_, identical in rounds):
        raise SystemExit("a cached check printed other bytes than the check without a cache")


if __name__ == "__main__":
    main()
