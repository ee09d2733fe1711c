"""End-to-end benchmark: chanstats vs the decode-only limit vs the community recipe.

Measures, in one run and on the same files (``bench/corpus.py``'s cached
ImageNet-like corpus of real photographs, JPEG + PNG; page cache warmed first):

1. ``chanstats compute DIR -q -o out.json`` through the installed CLI, as a
   subprocess, default options and default workers: wall time, images/s, MP/s,
   CPU cores used and peak memory (see "Memory" below);
2. the decode-only limit: ``ProcessPoolExecutor(N)`` (fork), chunks of 32
   paths, each worker reads its files and decodes them to RGB, returning only a
   counter: (a) Pillow ``Image.open(BytesIO(data)).convert("RGB")``;
   (b) simplejpeg ``decode_jpeg(data, colorspace="RGB")`` for the JPEGs
   chanstats' JPEG fast path takes (YCbCr / grey), Pillow for PNG and CMYK
   JPEGs; (c) as (b) with pyspng (libspng) for the PNGs chanstats' PNG fast
   path takes, when pyspng is installed; (d) as (b) with chanstats' own PNG
   decoder (ISA-L inflation + the compiled unfilter), which is what chanstats
   uses.  Which file goes to which decoder is chanstats' decision, asked file by
   file (``bench/decisions.py``), as is which combination is chanstats' own.
   Every fast decoder's pixels are checked against Pillow's on every file of
   its kind in the corpus, in the same run; a decoder counts as
   "pixel-identical" only if all of them match;
3. the community recipe: torchvision ``ImageFolder`` + ``ToTensor()`` +
   ``DataLoader(batch_size=64, num_workers=N, collate_fn=list)``, full
   resolution, mean of per-image float32 means and mean of per-image stds (the
   common wrong recipe); its images/s and its error against chanstats' exact
   values;
4. scaling: ``chanstats compute --workers 1`` vs default;
5. start-up: ``chanstats --help`` (median of 5) and ``python -X importtime``
   proof that ``compute`` without a transform imports no torch/torchvision
   (the same trace confirms that the command loads the decoders chanstats chose);
6. memory at two corpus sizes (``--n`` and ``--big``) and its growth.

Every timed measurement is repeated ``--repeat`` times, the measurements
interleaved (rotated order in each round) because the machine may be shared;
tables show the median and the spread (min-max) of the repeats; ratios are
ratios of medians, with the range of the per-round ratios beside them.

Timing boundaries: chanstats is timed from process launch to exit (interpreter
start, imports, listing, worker start-up, output write all included).  The
decode-only runs are timed from pool creation to pool shutdown inside an
already started helper process (no interpreter start, no imports, no listing):
a strict limit; the same runs are also timed from launch to exit (a whole
decode-only program: interpreter, imports of its decoder, reading its file
list), which is the like-for-like comparison with the chanstats command; and
chanstats is also timed without its start-up, from the end of listing to the
end of writing (its ``--timings``), like the decode-only pool; all three
ratios are reported.  The recipe is timed from ``ImageFolder(...)`` to the final
division, after ``import torch, torchvision`` (import time shown apart): also
favourable to the recipe.

Memory: (a) ``ru_maxrss`` of the CLI from ``os.wait4`` -- the largest peak
RSS of any *single* process in the CLI's tree (the CLI and every worker it
waited for; Linux folds waited-for descendants into the max, it does not sum
them); exact, no sampling.  (b) the peak of the *sum* of RSS over the CLI's
process tree, polled every 25 ms with psutil: an upper bound on the tree's
footprint (pages shared after fork are counted once per process) that may
miss spikes shorter than the poll interval.  The growth target must hold for
both.  Polling walks /proc and costs CPU, so memory comes from separate,
untimed runs of the same commands; timed runs are not polled.

Usage::

    python bench/run.py [--n 2000] [--big 8000] [--workers N] [--repeat 3] [--quick]
    python bench/run.py --quick          # 200 / 400 images, 1 round: smoke test

Modules: ``sets`` (views of the ``corpus``), ``decisions`` (everything asked of
chanstats), ``decoding`` and ``programs`` (the decode-only and recipe programs),
``jobs`` (the measurements), ``analysis`` (medians and ratios), ``report``
(tables, RESULTS.md), ``machine``.

``--workers N`` sets the processes of the decode-only and recipe runs and is
passed on to chanstats; without it chanstats runs with its default (all
cores) and the others with ``len(os.sched_getaffinity(0))``.  Results go to
stdout and to ``bench/RESULTS.md`` (``--md PATH`` to change, ``--json PATH``
for the raw numbers).

Bench-only dependencies (not chanstats dependencies)::

    pip install -e ".[bench]"        # scikit-image (the corpus) and psutil (memory polling)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the bench package from the repository
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import decisions, decoding, jobs, machine, programs, report  # noqa: E402
from bench.analysis import Measured, exact_values, fastest_identical, recipe_values  # noqa: E402
from bench.sets import BenchSets, prepare_sets  # noqa: E402

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Options:
    """What to measure: set sizes, rounds and processes; where to write."""

    n: int
    big: int
    repeat: int
    workers: int
    workers_option: int | None
    md: str
    json: str | None
    command: str

    @property
    def workers_flag(self) -> list[str]:
        """chanstats' ``--workers``, only when one was asked for (else chanstats' default)."""
        return ["--workers", str(self.workers_option)] if self.workers_option else []


def parse_options(argv: list[str] | None) -> Options:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=None, help="images of the main corpus (default 2000; --quick 200)")
    ap.add_argument("--big", type=int, default=None, help="images of the memory-growth corpus (default 8000; --quick 400)")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: chanstats' default / all usable cores)")
    ap.add_argument("--repeat", type=int, default=None, help="rounds of every timed measurement (default 3; --quick 1)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 200/400 images, 1 round")
    ap.add_argument("--md", default=str(HERE / "RESULTS.md"), help="markdown output (default bench/RESULTS.md)")
    ap.add_argument("--json", default=None, help="also write the raw numbers here")
    a = ap.parse_args(argv)
    n = a.n or (200 if a.quick else 2000)
    big = a.big or (400 if a.quick else 8000)
    if big <= n:
        ap.error("--big must be larger than --n")
    # The options that change what is measured; where the results are written is not one of them
    # (and would put a path of this machine into RESULTS.md).
    measured = [f"--{k} {v}" for k, v in (("n", a.n), ("big", a.big), ("workers", a.workers), ("repeat", a.repeat)) if v]
    return Options(
        n=n,
        big=big,
        repeat=a.repeat or (1 if a.quick else 3),
        workers=a.workers or len(os.sched_getaffinity(0)),
        workers_option=a.workers,
        md=a.md,
        json=a.json,
        command=" ".join(["python bench/run.py", *(["--quick"] if a.quick else []), *measured]),
    )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Build the sets, ask chanstats how it decodes them, measure, analyse, report."""
    options = parse_options(argv)
    decisions.precompile_chanstats()
    machine_info = machine.describe()
    load_before = os.getloadavg()
    sets = prepare_sets(options.n, options.big, log)
    with tempfile.TemporaryDirectory(prefix="chanstats-bench-") as scratch:
        tmp = Path(scratch)
        log("start-up: chanstats --help x5, -X importtime ...")
        startup = jobs.measure_startup(decisions.chanstats_command(), sets.tiny, options.workers_flag, tmp)
        log("which fast path chanstats takes for each file ...")
        routed = jobs.route_files(decisions.listed_files(sets.main), options.workers)
        own = decoding.combination_for({r.fast_path for r in routed if r.fast_path})
        combinations = decoding.available_combinations()
        log("pixel identity of the fast decoders vs Pillow ...")
        identity = jobs.check_identity(routed, combinations, options.workers)
        list_file = tmp / "files.txt"
        programs.write_list(list_file, routed)
        bench_jobs = jobs.bench_jobs(sets, combinations, list_file, options.workers, options.workers_flag, tmp)
        rounds = jobs.run_rounds(bench_jobs, options.repeat, log)
    load_after = os.getloadavg()

    measured = Measured(rounds, *job_sizes(sets, rounds))
    outcome = report.Outcome(
        command=options.command,
        machine=machine_info,
        sets=sets,
        repeat=options.repeat,
        workers=options.workers,
        workers_option=options.workers_option,
        startup=startup,
        combinations=combinations,
        identity=identity,
        own=own,
        fastest=fastest_identical(measured, combinations, identity),
        measured=measured,
        exact=exact_values(rounds),
        recipe=recipe_values(measured),
        load=(load_before[0], load_after[0]),
        errors=startup.errors + own_decoder_errors(own, startup) + rounds.errors,
    )
    tables = report.build_tables(outcome)
    report.print_tables(tables, outcome.errors)
    report.write_outputs(outcome, tables, options.md, options.json)
    return 1 if outcome.errors else 0


def job_sizes(sets: BenchSets, rounds: jobs.Rounds) -> tuple[dict[str, int], dict[str, int]]:
    """Images and pixels each job measured: the big set for the big runs, the main set else."""
    summary = {name: sets.big_summary if name.endswith("_big") else sets.main_summary for name in rounds.runs}
    return {k: s["images"] for k, s in summary.items()}, {k: s["pixels"] for k, s in summary.items()}


def own_decoder_errors(own: str | None, startup: jobs.Startup) -> list[str]:
    """chanstats' own decoders must be fast ones, and the command must load them as well."""
    if own == "pillow":
        return ["chanstats took no fast path on the corpus: is its compiled kernel missing?"]
    if own is None:
        return ["chanstats' fast paths on the corpus match no decode-only program"]
    missing = [m for m in decoding.modules_of(own) if m not in startup.compute_modules]
    if startup.compute_traced and missing:
        return [f"`chanstats compute` did not import {', '.join(missing)}: the command runs another chanstats than the bench asked"]
    return []


if __name__ == "__main__":
    sys.exit(main())
