"""A real run over a million images: WebDataset-style tar shards of tiny 8x8 PNGs.

A tree of a million files takes long to build and to walk on a small machine; a million tar
members is what the largest datasets look like anyway (LAION-style shards), and every image is
still read, decoded and measured for real. Decoding an 8x8 PNG costs next to nothing, so what is
measured is chanstats' own per-image cost: listing, the worker pool, the state, checkpoints and
merges. Each command runs in a fresh process through ``bench/scale.py``'s launcher, which reports
the main process's own peak (``ru_maxrss``) and CPU; the process tree's summed RSS is polled.

Steps, at 100k and 1M images (the first ``N`` shards): a plain run; then at 1M a checkpointed run
killed after its save past half-way and resumed; four ``--shard K/4 --partial`` runs and their
``merge``; and ``--sample 2000``. Prints a Markdown table (``--out`` writes it too).

    PYTHONPATH=. python bench/million.py               # builds ~1 GB of shards once (about a minute)
    PYTHONPATH=. python bench/million.py --images 200000 --step 50000
    PYTHONPATH=. python bench/million.py --images 10000000 --step 1000000 --only plain   # ~10 GB of shards
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scale import Table, human, machine, mib, png_variants, run_chanstats  # noqa: E402

PER_SHARD = 10_000


def make_shards(cache: str, images: int) -> list[str]:
    """``images // PER_SHARD`` plain tar shards of 8x8 PNG members, built once."""
    folder = os.path.join(cache, "million")
    shards = [os.path.join(folder, f"shard-{k:05d}.tar") for k in range(images // PER_SHARD)]
    missing = [path for path in shards if not os.path.exists(path)]
    if not missing:
        return shards
    os.makedirs(folder, exist_ok=True)
    variants = png_variants()
    started = time.perf_counter()
    for path in missing:
        k = shards.index(path)
        with tarfile.open(path + ".tmp", "w", format=tarfile.USTAR_FORMAT) as archive:
            for i in range(k * PER_SHARD, (k + 1) * PER_SHARD):
                data = variants[i % len(variants)]
                info = tarfile.TarInfo(f"{i:08d}.png")
                info.size, info.mtime = len(data), 0
                archive.addfile(info, io.BytesIO(data))
        os.replace(path + ".tmp", path)
    print(f"# built {len(missing)} shards in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return shards


def plain_runs(table: Table, shards: list[str], sizes: list[int], workers: int, work: str) -> None:
    peaks, trees, anon = {}, {}, {}
    for size in sizes:
        inputs = shards[: size // PER_SHARD]
        run = run_chanstats(["compute", *inputs, "-o", os.path.join(work, "plain.json"), "-q", "--workers", str(workers)])
        peaks[size], trees[size], anon[size] = run["main_peak"], run["tree_peak"], run.get("main_peak_anon", 0)
        table.add("plain run: main-process peak (anonymous; mapped files)", human(size),
                  f"{mib(run['main_peak'])} ({mib(run.get('main_peak_anon', 0))}; {mib(run.get('main_peak_file', 0))})")
        table.add("plain run: process-tree peak (summed RSS)", human(size), mib(run["tree_peak"]))
        table.add("plain run: wall (listing)", human(size), f"{run['wall']:.1f} s ({run['listing_wall']:.1f} s)")
        table.add("main-process CPU per image while measuring", human(size),
                  f"{run['measure_cpu'] / run['measured'] * 1e6:.1f} µs ({run['measured'] / run['measure_wall']:,.0f} images/s)")
    low, high = sizes[0], sizes[-1]
    if high > low:
        table.add("main-process peak growth per image (anonymous memory only)", f"{human(low)}→{human(high)}",
                  f"{(peaks[high] - peaks[low]) / (high - low):,.0f} B/image ({(anon[high] - anon[low]) / (high - low):,.0f} B/image)")
        table.add("process-tree peak growth per image", f"{human(low)}→{human(high)}",
                  f"{(trees[high] - trees[low]) / (high - low):,.0f} B/image")


def checkpoint_runs(table: Table, inputs: list[str], size: int, workers: int, work: str) -> None:
    checkpoint = os.path.join(work, "run.ckpt")
    every = str(max(1000, size // 5))
    argv = ["compute", *inputs, "-o", os.path.join(work, "ckpt.json"), "-q", "--workers", str(workers),
            "--checkpoint", checkpoint, "--checkpoint-every", every]
    run = run_chanstats(argv, env={"BENCH_STOP_AFTER_DONE": str(size // 2)})
    saves = run["saves"]
    table.add(f"`--checkpoint` every {int(every):,} images: each save (last, max)", human(size),
              f"{saves[-1]:.2f} s, {max(saves):.2f} s" if saves else "no save")
    run = run_chanstats(argv)
    table.add("resume: reading the checkpoint, then the resumed run's main-process peak (anonymous)", human(size),
              f"{run.get('resume_wall', float('nan')):.2f} s, {mib(run['main_peak'])} ({mib(run.get('main_peak_anon', 0))})")


def shard_runs(table: Table, inputs: list[str], size: int, workers: int, work: str) -> None:
    parts, peaks, total = [], [], 0
    for k in range(1, 5):
        part = os.path.join(work, f"part-{k}.json")
        run = run_chanstats(["compute", *inputs, "--shard", f"{k}/4", "--partial", part, "-q", "--workers", str(workers)])
        parts.append(part)
        peaks.append(run["main_peak"])
        total += _size_on_disk(part)
    table.add("`--shard K/4 --partial`: main-process peak per shard (max); files in all", human(size),
              f"{mib(max(peaks))}; {total / 1e6:,.1f} MB")
    run = run_chanstats(["merge", *parts, "-o", os.path.join(work, "merged.json"), "-q"])
    table.add("`merge` of the 4 partials: wall, peak (anonymous)", human(size),
              f"{run['wall']:.1f} s, {mib(run['main_peak'])} ({mib(run.get('main_peak_anon', 0))})")


def sample_runs(table: Table, shards: list[str], sizes: list[int], workers: int, work: str) -> None:
    for size in sizes:
        run = run_chanstats(["compute", *shards[: size // PER_SHARD], "-o", os.path.join(work, "sample.json"), "-q",
                             "--workers", str(workers), "--sample", "2000"])
        table.add("`--sample 2000`: wall (listing), main-process peak (anonymous)", human(size),
                  f"{run['wall']:.1f} s ({run['listing_wall']:.1f} s), {mib(run['main_peak'])} "
                  f"({mib(run.get('main_peak_anon', 0))})")


def _size_on_disk(path: str) -> int:
    """A partial's bytes: one file, or a header beside a folder of column files."""
    total = os.path.getsize(path) if os.path.isfile(path) else 0
    for candidate in (path + ".columns", path if os.path.isdir(path) else None):
        if candidate and os.path.isdir(candidate):
            total += sum(os.path.getsize(os.path.join(candidate, name)) for name in os.listdir(candidate))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/chanstats/bench-scale"), help="where shards are built once")
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--step", type=int, default=100_000, help="the smaller run, for growth per image")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=["plain", "checkpoint", "shards", "sample"], action="append")
    parser.add_argument("--out", help="also write the table (Markdown) here")
    args = parser.parse_args()
    shards = make_shards(args.cache, args.images)
    table = Table()
    work = tempfile.mkdtemp(prefix="chanstats-million-")
    started = time.perf_counter()
    wanted = set(args.only or ["plain", "checkpoint", "shards", "sample"])
    try:
        if "plain" in wanted:
            plain_runs(table, shards, [args.step, args.images], args.workers, work)
        if "checkpoint" in wanted:
            checkpoint_runs(table, shards, args.images, args.workers, work)
        if "shards" in wanted:
            shard_runs(table, shards, args.images, args.workers, work)
        if "sample" in wanted:
            sample_runs(table, shards, [args.step, args.images], args.workers, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = (f"{machine()}. Images: 8x8 RGB PNGs in tar shards of {PER_SHARD:,}. Workers: {args.workers}. "
            f"Total bench time {time.perf_counter() - started:.0f} s.\n\n{table.markdown()}\n")
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
