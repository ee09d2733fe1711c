"""Scale: memory and CPU per image of chanstats' own machinery, on trees of tiny 8x8 PNGs.

Decoding an 8x8 PNG costs next to nothing, so what is measured is the per-file cost of listing,
the worker pool, the partial state, checkpoints and merges. Prints a Markdown table (and writes it
with ``--out``). Numbers come from:

* **real runs**: the ``chanstats`` command on a cached tree of real files (generated once under
  ``--cache``; 100k files by default), each in a fresh process started through a small launcher
  that reports the main process's own peak (``getrusage``, ``ru_maxrss``), its CPU time
  (``os.times``) and the CPU time spent in the measuring phase alone (``time.process_time`` around
  ``api.measure``); the parent polls the process tree's summed RSS every 20 ms (forked workers
  share pages with the main process, so the sum overstates what the tree really holds);
* **synthetic runs** for 1M images, where a tree of a million files would take too long to build
  on a small machine: the real listing code (``list_images``) fed by a synthetic folder walk (no
  ``stat``), a real :class:`PartialState` filled through ``state.add_chunk`` with chunks of 64 of one real measurement of
  an 8x8 PNG repeated, and the real checkpoint/partial writer, reader and merge. Each step runs in
  a fresh process;
* **.tar.gz**: total CPU (main + workers) of ``chanstats compute`` on gzip shards, against one
  decompression pass (``zlib`` over every shard, in this process) plus the same run on the
  uncompressed shards (decoding and the pool, no decompression).

The machine is shared and has few cores: numbers are noisy (repeat to see how much).

    PYTHONPATH=. python bench/scale.py --quick      # 100k images only (a few minutes on 2 cores)
    PYTHONPATH=. python bench/scale.py              # also 1M synthetic
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import platform
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PER_FOLDER = 1000
VARIANTS = 64  # distinct PNG files' contents, written round-robin
MIB = 1 << 20


# ---------------------------------------------------------------------------------------------
# Inputs


def png_variants(side: int = 8) -> list[bytes]:
    """``VARIANTS`` distinct ``side``x``side`` RGB PNGs, encoded once. Larger ones are stored
    without PNG compression (smooth gradients plus a little noise), so that gzip has work to do."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    encoded = []
    for k in range(VARIANTS):
        buffer = io.BytesIO()
        if side == 8:
            pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels, "RGB").save(buffer, "PNG")
        else:
            ramp = np.add.outer(np.arange(side), np.arange(side))[:, :, None] * np.array([1, 2, 3]) + k
            pixels = ((ramp + rng.integers(0, 4, size=(side, side, 3))) % 256).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(buffer, "PNG", compress_level=0)
        encoded.append(buffer.getvalue())
    return encoded


def make_tree(cache: str, files: int) -> str:
    """A cached tree of ``files`` 8x8 PNGs, ``PER_FOLDER`` per folder (built once)."""
    root = os.path.join(cache, f"tree-{files}")
    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return root
    variants = png_variants()
    started = time.perf_counter()
    for start in range(0, files, PER_FOLDER):
        folder = os.path.join(root, f"f{start // PER_FOLDER:05d}")
        os.makedirs(folder, exist_ok=True)
        for i in range(start, min(files, start + PER_FOLDER)):
            with open(os.path.join(folder, f"img{i:08d}.png"), "wb") as handle:
                handle.write(variants[i % VARIANTS])
    open(done, "wb").close()
    print(f"# built {root} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return root


def make_shards(cache: str, shards: int, members: int, side: int) -> tuple[list[str], list[str]]:
    """``shards`` WebDataset-style shards of ``members`` PNGs of ``side``x``side`` pixels (each
    with a ``.cls`` member), as ``.tar`` and as ``.tar.gz`` (gzip level 6), built once."""
    folder = os.path.join(cache, f"shards-{shards}x{members}-{side}px")
    plain = [os.path.join(folder, f"train-{k:04d}.tar") for k in range(shards)]
    gz = [path + ".gz" for path in plain]
    if all(os.path.exists(p) for p in plain + gz):
        return plain, gz
    os.makedirs(folder, exist_ok=True)
    variants = png_variants(side)
    for k, path in enumerate(plain):
        with tarfile.open(path + ".tmp", "w", format=tarfile.USTAR_FORMAT) as archive:
            for i in range(members):
                key = f"{k * members + i:08d}"
                for name, data in ((f"{key}.png", variants[(k * members + i) % VARIANTS]), (f"{key}.cls", b"1")):
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime = len(data), 0
                    archive.addfile(info, io.BytesIO(data))
        os.replace(path + ".tmp", path)
        with open(path, "rb") as source:
            compressed = zlib.compressobj(6, zlib.DEFLATED, 31)
            data = compressed.compress(source.read()) + compressed.flush()
        with open(path + ".gz.tmp", "wb") as target:
            target.write(data)
        os.replace(path + ".gz.tmp", path + ".gz")
    return plain, gz


# ---------------------------------------------------------------------------------------------
# Real runs: the chanstats command in a fresh process, watched


def launcher(report_path: str, argv: list[str]) -> None:
    """Run the ``chanstats`` command in this process and write what it cost to ``report_path``.

    Wraps ``api.plan`` and ``api.measure`` (looked up at call time by every command) and the
    checkpointer's save and resume, so their wall and CPU times are known without changing
    chanstats.
    """
    from chanstats import api, cli
    from chanstats.scale import checkpoint

    record: dict = {"saves": [], "measure_cpu": 0.0, "measure_wall": 0.0, "measured": 0}
    watch_memory_kinds(record)

    def timed(function, on_done):
        def wrapper(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            result = function(*args, **kwargs)
            on_done(time.perf_counter() - wall, time.process_time() - cpu, result)
            return result

        return wrapper

    def after_measure(wall, cpu, state):
        record["measure_wall"] += wall
        record["measure_cpu"] += cpu
        record["measured"] += state.done - state.start

    def after_plan(wall, cpu, run):
        record["listing_wall"], record["listing_cpu"], record["listed"] = wall, cpu, len(run.sources)

    def after_save(wall, cpu, _):
        record["saves"].append(wall)

    def after_resume(wall, cpu, state):
        record["resume_wall"], record["resumed_at"] = wall, state.done
        if os.environ.get("BENCH_STOP_AFTER_SAVE"):
            record["resumed_at"] = state.done

    api.measure = timed(api.measure, after_measure)
    api.plan = timed(api.plan, after_plan)
    checkpoint.Checkpointer.save = timed(checkpoint.Checkpointer.save, after_save)
    checkpoint.Checkpointer.resume = timed(checkpoint.Checkpointer.resume, after_resume)
    stop_at = int(os.environ.get("BENCH_STOP_AFTER_DONE", "0"))
    if stop_at:
        # Simulates a crash right after the first checkpoint saved past ``stop_at`` images.
        original_save = checkpoint.Checkpointer.save

        def save_then_die(self, state):
            original_save(self, state)
            if state.done >= stop_at:
                write_report(report_path, record, crashed=True)
                os._exit(0)

        checkpoint.Checkpointer.save = save_then_die
    sys.argv = ["chanstats", *argv]
    code = 0
    try:
        cli.main()
    except SystemExit as exit_:
        code = exit_.code or 0
    record["exit"] = code
    write_report(report_path, record)


def watch_memory_kinds(record: dict) -> None:
    """Keep the peaks of this process's anonymous and file-backed resident memory in ``record``
    (sampled every 10 ms from ``/proc/self/status``, Linux only). Pages of memory-mapped files
    (the listing's and the per-image columns) count in RSS but are page cache the kernel can
    drop; anonymous memory is what the process really holds."""
    if not os.path.exists("/proc/self/status"):
        return
    record["main_peak_anon"] = record["main_peak_file"] = 0

    def sample() -> None:
        while True:
            with open("/proc/self/status") as status:
                kinds = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status if line.startswith("Rss")}
            record["main_peak_anon"] = max(record["main_peak_anon"], kinds.get("RssAnon", 0))
            record["main_peak_file"] = max(record["main_peak_file"], kinds.get("RssFile", 0) + kinds.get("RssShmem", 0))
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()


def write_report(path: str, record: dict, crashed: bool = False) -> None:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    record.update(
        crashed=crashed,
        main_peak=own.ru_maxrss * 1024,
        main_cpu=own.ru_utime + own.ru_stime,
        children_cpu=children.ru_utime + children.ru_stime,
    )
    with open(path, "w") as handle:
        json.dump(record, handle)


def run_chanstats(argv: list[str], env: dict | None = None) -> dict:
    """Run ``chanstats argv`` through the launcher; its report plus wall time and tree peak."""
    import psutil

    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        report = handle.name
    command = [sys.executable, os.path.abspath(__file__), "_launch", report, "--", *argv]
    started = time.perf_counter()
    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = psutil.Process(process.pid)
    tree_peak = 0
    while process.poll() is None:
        try:
            members = [watched, *watched.children(recursive=True)]
            tree_peak = max(tree_peak, sum(_rss(member) for member in members))
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - started
    stderr = process.stderr.read().decode(errors="replace")
    with open(report) as handle:
        result = json.load(handle)
    os.unlink(report)
    if result.get("exit") not in (0, None) and not result.get("crashed"):
        raise RuntimeError(f"chanstats {' '.join(argv)} failed: {stderr.strip()[-2000:]}")
    result.update(wall=wall, tree_peak=tree_peak)
    return result


def _rss(process) -> int:
    import psutil

    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


# ---------------------------------------------------------------------------------------------
# Synthetic runs: the real listing and state code without a million files


def synthetic(step: str, images: int, folder: str, parts: int) -> None:
    """One synthetic step in this (fresh) process; prints a JSON line of what it cost."""
    import gc

    import psutil

    from chanstats import api
    from chanstats.measure import Measurer
    from chanstats.scale import state_file
    from chanstats.scale.merge import merge_states
    from chanstats.scale.state import PartialState, shard_bounds
    from chanstats.scale.chunk import pack_chunk
    from chanstats.scale.checkpoint import Checkpointer
    from chanstats.scale.table import ImageTable
    from chanstats.sources.listing import fingerprint

    me = psutil.Process()
    gc.collect()
    base = me.memory_info().rss
    result: dict = {"step": step, "images": images}
    if step in ("listing", "state", "partials", "saves"):
        wall = time.perf_counter()
        sources = synthetic_listing(images, folder)
        result["listing_wall"] = time.perf_counter() - wall
        gc.collect()
        result["listing_bytes"] = me.memory_info().rss - base
        if step == "listing":
            print(json.dumps(result))
            return
        sample = os.path.join(folder, "one.png")
        with open(sample, "wb") as handle:
            handle.write(png_variants()[0])
        from chanstats.sources.base import ImageSource

        measurement = Measurer("RGB", None, 1, 0)(0, ImageSource.from_path(sample, "one.png", 0))
        options = api.RunOptions().resolve([folder]).record
        listing_fingerprint = fingerprint(sources)
        states = []
        for k in range(1, parts + 1):
            start, stop = shard_bounds(images, k, parts)
            state = PartialState("bench", options, listing_fingerprint, images, (k, parts), start, stop, start)
            # the columns go where a checkpoint keeps them: beside its header
            state.images = ImageTable(sources, os.path.join(folder, f"part-{k}.json") + state_file.COLUMNS_SUFFIX)
            # What a worker sends per chunk of 64, pickled; the main process unpickles and adds it.
            template = pack_chunk(0, [sources[0]] * 64, [measurement] * 64)
            blob = pickle.dumps(template)
            # step "saves": a checkpoint saved every SAVE_EVERY images as the run goes (its cost
            # must not grow with the images already saved)
            saver = Checkpointer(os.path.join(folder, f"part-{k}.json")) if step == "saves" else None
            saves: list[list[float]] = []
            wall, cpu = time.perf_counter(), time.process_time()
            for chunk_start in range(start, stop, 64):
                if saver is not None and chunk_start > start and (chunk_start - start) % SAVE_EVERY == 0:
                    save_start = time.perf_counter()
                    saver.save(state)
                    saves.append([state.done, time.perf_counter() - save_start])
                chunk = pickle.loads(blob)
                size = min(64, stop - chunk_start)
                chunk.start, chunk.stop = chunk_start, chunk_start + size
                chunk.index = chunk.index[:size] + chunk_start
                for column in ("format_id", "dropped_alpha", "width", "height", "row_lengths"):
                    setattr(chunk, column, getattr(chunk, column)[:size])
                chunk.rows = chunk.rows[: int(chunk.row_lengths.sum())]
                state.add_chunk(chunk)
            result["add_us_per_image"] = (time.process_time() - cpu) / max(1, stop - start) * 1e6
            states.append(state)
            if saver is not None:
                result["saves"] = saves
                print(json.dumps(result))
                return
        gc.collect()
        result["state_bytes"] = me.memory_info().rss - base - result["listing_bytes"]
        result["peak_before_save"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        paths = []
        for k, state in enumerate(states, start=1):
            path = os.path.join(folder, f"part-{k}.json")
            wall = time.perf_counter()
            if step == "state":  # a checkpoint save: fsync the columns, rewrite the header
                Checkpointer(path).save(state)
            else:  # a finished partial: columns copied beside the header, with the slice's sources
                state_file.write(state, path + ".partial", "columns", sources)
                path += ".partial"
            result["save_wall"] = time.perf_counter() - wall
            result["save_size"] = os.path.getsize(path)
            result["columns_size"] = sum(os.path.getsize(os.path.join(path + ".columns", name))
                                         for name in os.listdir(path + ".columns"))
            paths.append(path)
        result["peak_after_save"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result["paths"] = paths
    elif step == "resume":
        # what Checkpointer.resume does once the run has listed its files: read the header, cut
        # the columns to their saved lengths and open them for appending
        wall = time.perf_counter()
        path = os.path.join(folder, "part-1.json")
        with open(path, encoding="utf-8") as stream:
            data = state_file.parse_header(stream.read(), path)
        state = state_file.open_columns(data, path, path + state_file.COLUMNS_SUFFIX, writable=True)
        result["resume_wall"] = time.perf_counter() - wall
        result["resumed"] = state.done
    elif step == "finalize":
        # the end of a whole run: its state (header + columns) finalized, then the atypical summary
        watch_memory_kinds(result)
        path = os.path.join(folder, "part-1.json")
        with open(path, encoding="utf-8") as stream:
            data = state_file.parse_header(stream.read(), path)
        state = state_file.open_columns(data, path, path + state_file.COLUMNS_SUFFIX, writable=False)
        wall = time.perf_counter()
        finalized = api.finalize(state)
        finalized.per_image.atypical_summary(finalized.channels)
        result["finalize_wall"] = time.perf_counter() - wall
    elif step == "merge":
        wall = time.perf_counter()
        paths = [os.path.join(folder, f"part-{k}.json.partial") for k in range(1, parts + 1)]
        merged = merge_states([state_file.read_partial(p) for p in paths], paths, os.path.join(folder, "merge"))
        result["merge_wall"] = time.perf_counter() - wall
        result["merge_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        wall = time.perf_counter()
        finalized = api.finalize(merged)
        result["finalize_wall"] = time.perf_counter() - wall
        wall = time.perf_counter()
        finalized.per_image.to_csv(finalized.channels)
        finalized.per_image.atypical_summary(finalized.channels)
        result["per_image_wall"] = time.perf_counter() - wall
    result["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["base"] = base
    print(json.dumps(result))


def synthetic_listing(images: int, folder: str):
    """``list_images([folder])`` with the folder walk replaced by ``images`` made-up files, named
    and sized like the cached tree's: the listing's own containers and de-duplication are real."""
    from chanstats.sources import listing
    from chanstats.sources.base import ImageSource

    def walk(root, extensions, folders=None):
        for i in range(images):
            yield ImageSource(root, f"f{i // PER_FOLDER:05d}/img{i:08d}.png", 100 + i % 50), (1, 1000 + i)

    original = listing.walk
    listing.walk = walk
    try:
        return listing.list_images([folder])
    finally:
        listing.walk = original


def listing_step(images: int, tree: str) -> None:
    """List ``tree`` (or, with ``tree`` = ``-``, ``images`` synthetic files), then draw a
    ``--sample 2000`` from it as ``api.plan`` does, in this (fresh) process; prints a JSON line:
    the main process's peak and retained memory above the start, for each phase."""
    import gc
    import hashlib  # noqa: F401  imported before the baseline: not the listing's cost
    import numpy as np  # noqa: F401

    import psutil

    from chanstats.sources.base import Listing
    from chanstats.sources.listing import fingerprint, list_images
    from chanstats.stats.sampling import sample_indices

    me = psutil.Process()
    gc.collect()
    base = me.memory_info().rss
    wall = time.perf_counter()
    if tree == "-":
        sources = synthetic_listing(images, tempfile.mkdtemp())
    else:
        sources = list_images([tree])
    fingerprint(sources)
    result = {"images": len(sources), "listing_wall": time.perf_counter() - wall}
    result["listing_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    gc.collect()
    result["listing_retained"] = me.memory_info().rss - base
    wall = time.perf_counter()
    chosen = Listing(sources[int(i)] for i in sample_indices(len(sources), 2000, 0))
    result["sample_wall"] = time.perf_counter() - wall
    result["sample_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    result["chosen"] = len(chosen)
    print(json.dumps(result))


def listing_runs(table: Table, cache: str, images: int, quick: bool) -> None:
    """The listing alone and ``--sample 2000``: real files and synthetic listings, fresh processes."""
    real = make_tree(cache, images)
    cases = [(images, real, "real")] + [(n, "-", "synthetic") for n in ([images] if quick else [images, 1_000_000])]
    for size, tree, kind in cases:
        output = subprocess.run([sys.executable, os.path.abspath(__file__), "_listing", str(size), tree],
                                check=True, capture_output=True, text=True).stdout
        got = json.loads(output.strip().splitlines()[-1])
        n = got["images"]
        table.add(f"{kind}: listing wall; peak / retained above start, per image", human(size),
                  f"{got['listing_wall']:.2f} s; {got['listing_peak'] / n:,.0f} B / {got['listing_retained'] / n:,.0f} B")
        table.add(f"{kind}: `--sample 2000` draw: wall; peak above start (listing included)", human(size),
                  f"{got['sample_wall']:.2f} s; {mib(got['sample_peak'])}")


# Step "saves": images between two checkpoint saves (a multiple of the chunk of 64).
SAVE_EVERY = 64 * 782


def run_synthetic(step: str, images: int, folder: str, parts: int = 1) -> dict:
    output = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "_synthetic", step, str(images), folder, str(parts)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# The benchmark


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def add(self, what: str, size: str, value: str) -> None:
        self.rows.append((what, size, value))
        print(f"{what:<58} {size:>8}  {value}", file=sys.stderr, flush=True)

    def markdown(self) -> str:
        lines = ["| what | images | measured |", "| --- | --- | --- |"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in self.rows]
        return "\n".join(lines)


def mib(value: float) -> str:
    return f"{value / MIB:,.0f} MiB"


def human(images: int) -> str:
    if images % 1_000_000 == 0:
        return f"{images // 1_000_000}M"
    return f"{images // 1000}k" if images % 1000 == 0 else str(images)


def real_runs(table: Table, cache: str, sizes: list[int], workers: int, work: str) -> None:
    root = make_tree(cache, max(sizes))
    folders = sorted(os.path.join(root, d) for d in os.listdir(root) if d.startswith("f"))
    peaks = {}
    for size in sizes:
        inputs = folders[: size // PER_FOLDER]
        out = os.path.join(work, "plain.json")
        run = run_chanstats(["compute", *inputs, "-o", out, "-q", "--workers", str(workers)])
        peaks[size] = run["main_peak"]
        table.add("plain run: main-process peak", human(size), f"{mib(run['main_peak'])} ({run['main_peak'] / size:,.0f} B/image)")
        table.add("plain run: process-tree peak (summed RSS, shared pages counted twice)", human(size), mib(run["tree_peak"]))
        table.add("plain run: wall / listing wall", human(size), f"{run['wall']:.1f} s / {run['listing_wall']:.1f} s")
        table.add("main-process CPU per image while measuring", human(size),
                  f"{run['measure_cpu'] / run['measured'] * 1e6:.1f} µs ({run['measured'] / run['measure_wall']:,.0f} images/s)")
    if len(sizes) > 1:
        low, high = sizes[0], sizes[-1]
        table.add("main-process peak growth per image (real runs)", f"{human(low)}→{human(high)}",
                  f"{(peaks[high] - peaks[low]) / (high - low):,.0f} B/image")
    size = sizes[-1]
    inputs = folders[: size // PER_FOLDER]
    parts = []
    shard_peaks, tree_peaks, total_size = [], [], 0
    for k in range(1, 5):
        part = os.path.join(work, f"part-{k}.json")
        run = run_chanstats(["compute", *inputs, "--shard", f"{k}/4", "--partial", part, "-q", "--workers", str(workers)])
        parts.append(part)
        shard_peaks.append(run["main_peak"])
        tree_peaks.append(run["tree_peak"])
        total_size += os.path.getsize(part)
    table.add("`--shard K/4 --partial`: files, total", human(size), f"{total_size / 1e6:,.1f} MB")
    table.add("`--shard K/4 --partial`: main-process peak per shard (max)", human(size), mib(max(shard_peaks)))
    table.add("`--shard K/4 --partial`: process-tree peak per shard (max)", human(size), mib(max(tree_peaks)))
    run = run_chanstats(["merge", *parts, "-o", os.path.join(work, "merged.json"), "-q"])
    table.add("`merge` of the 4 partials: wall, peak", human(size), f"{run['wall']:.1f} s, {mib(run['main_peak'])}")
    checkpoint = os.path.join(work, "run.ckpt")
    for leftover in (checkpoint,):
        if os.path.exists(leftover):
            os.unlink(leftover)
    every = str(max(1000, size // 4))
    argv = ["compute", *inputs, "-o", os.path.join(work, "ckpt.json"), "-q", "--workers", str(workers),
            "--checkpoint", checkpoint, "--checkpoint-every", every]
    run = run_chanstats(argv, env={"BENCH_STOP_AFTER_DONE": str(size // 2)})
    saves = run["saves"]
    table.add(f"`--checkpoint` every {int(every):,} images: save at ~{size // 2 // 1000}k done", human(size),
              f"{saves[-1]:.2f} s, {os.path.getsize(checkpoint) / 1e6:,.1f} MB")
    run = run_chanstats(argv)
    table.add(f"resume from it (then finish): resume, run peak", human(size),
              f"{run.get('resume_wall', float('nan')):.2f} s, {mib(run['main_peak'])}")
    if len(run["saves"]) > 1:
        table.add("`--checkpoint`: last save of the resumed run", human(size), f"{run['saves'][-2]:.2f} s")
    run = run_chanstats(["compute", *inputs, "-o", os.path.join(work, "sample.json"), "-q", "--workers", str(workers),
                         "--sample", "2000"])
    table.add("`--sample 2000`: wall (listing), main-process peak", human(size),
              f"{run['wall']:.1f} s ({run['listing_wall']:.1f} s), {mib(run['main_peak'])}")


def synthetic_finalize_runs(table: Table, sizes: list[int], work: str) -> None:
    """Main-process memory of a whole run's state at the end: finalize (the BatchNorm simulation
    over every sample) and the atypical-image summary, reading the columns through memory maps."""
    for size in sizes:
        folder = tempfile.mkdtemp(dir=work)
        whole = run_synthetic("state", size, folder)
        done = run_synthetic("finalize", size, folder)
        table.add("synthetic: finalize + atypical summary: wall, peak (anonymous; mapped files)", human(size),
                  f"{done['finalize_wall']:.1f} s, {mib(done['peak'])} ({mib(done.get('main_peak_anon', 0))}; "
                  f"{mib(done.get('main_peak_file', 0))}); the state before it: "
                  f"{whole['state_bytes'] / size:,.0f} B/image")
        shutil.rmtree(folder, ignore_errors=True)


def synthetic_runs(table: Table, sizes: list[int], work: str) -> None:
    memory = {}
    for size in sizes:
        folder = tempfile.mkdtemp(dir=work)
        whole = run_synthetic("state", size, folder)
        memory[size] = whole
        table.add("synthetic: listing, bytes per image (RSS growth)", human(size), f"{whole['listing_bytes'] / size:,.0f} B")
        table.add("synthetic: state (table), bytes per image", human(size), f"{whole['state_bytes'] / size:,.0f} B")
        table.add("synthetic: unpickle a chunk + `state.add_chunk`, CPU per image", human(size), f"{whole['add_us_per_image']:.1f} µs")
        table.add("synthetic: checkpoint save (fsync columns + header rewrite)", human(size),
                  f"{whole['save_wall']:.3f} s, header {whole['save_size'] / 1e3:,.1f} kB, columns "
                  f"{whole['columns_size'] / size:,.0f} B/image on disk, peak {mib(whole['peak_after_save'])} "
                  f"(before saving {mib(whole['peak_before_save'])})")
        saving = run_synthetic("saves", size, tempfile.mkdtemp(dir=work))["saves"]
        if saving:
            times = sorted(t for _, t in saving)
            table.add(f"synthetic: checkpoint saves every {SAVE_EVERY:,} images: first, median, last", human(size),
                      f"{saving[0][1]:.3f} s, {times[len(times) // 2]:.3f} s, {saving[-1][1]:.3f} s "
                      f"(at {saving[-1][0]:,} done)")
        resumed = run_synthetic("resume", size, folder)
        table.add("synthetic: resume (header + columns; the listing not included)", human(size),
                  f"{resumed['resume_wall']:.3f} s, peak {mib(resumed['peak'])}")
        quarters = tempfile.mkdtemp(dir=work)
        written = run_synthetic("partials", size, quarters, 4)
        table.add("synthetic: write a column partial (copy columns + sources), per part", human(size // 4),
                  f"{written['save_wall']:.2f} s, header {written['save_size'] / 1e3:,.1f} kB")
        merged = run_synthetic("merge", size, quarters, 4)
        table.add("synthetic: `merge` of 4 column partials (+ finalize, + per-image CSV and atypical)", human(size),
                  f"{merged['merge_wall']:.1f} s (+{merged['finalize_wall']:.1f} s, +{merged['per_image_wall']:.1f} s), "
                  f"peak after merging {mib(merged['merge_peak'])}, overall {mib(merged['peak'])}")
    if len(sizes) > 1:
        low, high = sizes[0], sizes[-1]
        for key, name in (("listing_bytes", "listing"), ("state_bytes", "state")):
            growth = (memory[high][key] - memory[low][key]) / (high - low)
            table.add(f"synthetic: {name} growth per image", f"{human(low)}→{human(high)}", f"{growth:,.0f} B/image")


def gzip_runs(table: Table, cache: str, shards: int, members: int, side: int, workers: int, work: str) -> None:
    plain, gz = make_shards(cache, shards, members, side)
    images = shards * members
    cpu = time.process_time()
    for path in gz:
        with open(path, "rb") as handle:
            inflater = zlib.decompressobj(31)
            while chunk := handle.read(1 << 20):
                inflater.decompress(chunk)
    one_pass = time.process_time() - cpu
    results = {}
    for label, inputs in (("plain", plain), ("gz", gz)):
        for n in ({0, workers} if workers else {0}):
            run = run_chanstats(["compute", *inputs, "-o", os.path.join(work, f"{label}{n}.json"), "-q", "--workers", str(n)])
            results[label, n] = run
    for n in sorted({0, workers}):
        total_plain = results["plain", n]["main_cpu"] + results["plain", n]["children_cpu"]
        total_gz = results["gz", n]["main_cpu"] + results["gz", n]["children_cpu"]
        table.add(f"`.tar.gz` --workers {n}: CPU / (one decompression {one_pass:.2f} s + plain `.tar` run {total_plain:.2f} s)",
                  f"{human(images)} ({side}px)", f"{total_gz:.2f} s = {total_gz / (one_pass + total_plain):.2f}×")
        table.add(f"`.tar.gz` --workers {n}: listing CPU (plain `.tar` listing)", human(images),
                  f"{results['gz', n]['listing_cpu']:.2f} s ({results['plain', n]['listing_cpu']:.2f} s)")


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cores} cores ({model}), Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k images only (no 1M synthetic run)")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/chanstats/bench-scale"), help="where trees and shards are built once")
    parser.add_argument("--images", type=int, default=100_000, help="real files in the tree (default 100,000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gz-shards", type=int, default=4)
    parser.add_argument("--gz-members", type=int, default=1000, help="images per shard")
    parser.add_argument("--gz-side", type=int, default=128, help="side of the shards' PNGs (uncompressed PNG data)")
    parser.add_argument("--only", choices=["real", "synthetic", "gzip", "listing", "finalize"], action="append", help="run only these parts")
    parser.add_argument("--out", help="also write the table (Markdown) here")
    args = parser.parse_args()
    parts = args.only or ["real", "synthetic", "gzip", "listing"]
    os.makedirs(args.cache, exist_ok=True)
    table = Table()
    started = time.perf_counter()
    header = f"Machine: {machine()}. Images: 8x8 RGB PNGs. Workers: {args.workers}."
    print(header, file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=args.cache) as work:
        if "real" in parts:
            real_runs(table, args.cache, sorted({args.images // 5, args.images}), args.workers, work)
        if "synthetic" in parts:
            synthetic_runs(table, [args.images] if args.quick else [args.images, 1_000_000], work)
        if "finalize" in parts:
            synthetic_finalize_runs(table, [args.images] if args.quick else [args.images, 1_000_000, 10_000_000], work)
        if "listing" in parts:
            listing_runs(table, args.cache, args.images, args.quick)
        if "gzip" in parts:
            gzip_runs(table, args.cache, args.gz_shards, args.gz_members, args.gz_side, args.workers, work)
    text = f"{header} Total bench time {time.perf_counter() - started:.0f} s.\n\n{table.markdown()}\n"
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_launch":
        launcher(sys.argv[2], sys.argv[4:])
    elif len(sys.argv) > 1 and sys.argv[1] == "_listing":
        listing_step(int(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "_synthetic":
        synthetic(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    else:
        main()
