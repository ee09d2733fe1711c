"""Benchmark of the measurement cache: ``chanstats check`` with a warm cache against without one.

A tree of small PNG images (default 100,000 of 32×32, generated once into bench/.cache/cache-tree),
a config computed on it, the cache filled by a first ``check --cache``; then 1 % of the images are
replaced (new pixels, new mtime) and ``check`` runs without the cache and with the warm cache.
Prints a table of wall times (best of ``--repeat``) and whether both runs printed the same bytes.

Usage::

    python -m bench.cache                 # 100k images, 2 workers
    python -m bench.cache --images 20000 --workers 2 --size 64
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


def change(root: Path, count: int, size: int, fraction: float, seed: int) -> int:
    """Replace ``fraction`` of the images (evenly spread) with new pixels and a new mtime."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    step = max(1, round(1 / fraction))
    changed = 0
    stamp = time.time() - 3600 + seed
    for i in range(0, count, step):
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
    options = parser.parse_args()

    root = CACHE / f"cache-tree-{options.size}"
    work = CACHE / "cache-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    began = time.perf_counter()
    generate(root, options.images, options.size)
    print(f"tree: {options.images} images of {options.size}x{options.size} ({time.perf_counter() - began:.0f} s to "
          "generate or find)", file=sys.stderr)
    config = work / "config.json"
    workers = ["--workers", str(options.workers)]
    subprocess.run([sys.executable, "-m", "chanstats", "compute", str(root), "-q", "-o", str(config), *workers],
                   check=True)
    cache = ["--cache", str(work / "cache"), "--cache-verify", options.verify]
    check = ["check", str(root), "--against", str(config), *workers]
    cold, _, _ = timed([*check, *cache], 1)  # fills the cache
    changed = change(root, options.images, options.size, options.changed, seed=int(time.time()) % 1000)
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
    print(f"| {options.images:,} ({options.size}×{options.size} PNG, {options.verify}) | {changed:,} | {plain:.2f} s | {cold:.2f} s | "
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
