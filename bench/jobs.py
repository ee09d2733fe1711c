"""The benchmark's measurements: subprocess runs, start-up and import checks, chanstats' routing
of the corpus, pixel identity of the fast decoders, and the interleaved timed rounds.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

from bench import decisions, decoding, programs

PROGRAMS = str(Path(programs.__file__).resolve())
#: Tree RSS poll interval of the memory runs, seconds.
POLL_S = 0.025
HELP_RUNS = 5


@dataclass
class Finished:
    """One finished subprocess: wall time, rusage of its whole tree, polled tree RSS, output."""

    cmd: list[str]
    rc: int
    wall: float
    cpu: float
    maxrss: int
    peak_tree_rss: int
    stdout: str
    stderr: str

    @property
    def failure(self) -> str:
        return f"exit {self.rc}: " + " | ".join(self.stderr.strip().splitlines()[-3:])


def run_command(cmd: list[str], poll_s: float | None = None) -> Finished:
    """Run ``cmd`` to the end. ``maxrss`` is ``ru_maxrss`` from ``os.wait4`` (the largest single
    process of the tree); with ``poll_s`` the sum of RSS over the tree is also polled, which costs
    CPU (it walks /proc), so timed runs do not poll."""
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=err)
    peak = [0]
    done = threading.Event()
    poller = threading.Thread(target=_poll_tree_rss, args=(proc.pid, poll_s, done, peak), daemon=True)
    if poll_s is not None:
        poller.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    if poller.is_alive():
        poller.join()
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    return Finished(
        cmd=cmd,
        rc=rc,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss=usage.ru_maxrss * 1024,  # KiB on Linux
        peak_tree_rss=peak[0],
        stdout=out.read().decode(errors="replace"),
        stderr=err.read().decode(errors="replace"),
    )


def _poll_tree_rss(pid: int, poll_s: float, done: threading.Event, peak: list[int]) -> None:
    try:
        import psutil

        root = psutil.Process(pid)
    except Exception:
        return
    while not done.is_set():
        try:
            procs = [root] + root.children(recursive=True)
        except Exception:
            break
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except Exception:
                pass
        peak[0] = max(peak[0], total)
        done.wait(poll_s)


# --------------------------------------------------------------------------- start-up


@dataclass
class Startup:
    """``chanstats --help`` wall times and what ``-X importtime`` shows ``--help`` and ``compute``
    import (torch must stay out of both; the compute trace shows which decoders chanstats loads)."""

    help_times: list[float]
    torch_in_help: list[str]
    torch_in_compute: list[str]
    help_traced: bool
    compute_traced: bool
    compute_modules: set[str]
    errors: list[str]


def measure_startup(command: list[str], tiny: Path, workers_flag: list[str], tmp: Path) -> Startup:
    help_times = [r.wall for r in (run_command(command + ["--help"]) for _ in range(HELP_RUNS)) if r.rc == 0]
    traced_help = run_command([sys.executable, "-X", "importtime", "-m", "chanstats", "--help"])
    traced_compute = run_command(
        [sys.executable, "-X", "importtime", "-m", "chanstats", "compute", str(tiny), "-q", "-o", str(tmp / "tiny.json")]
        + workers_flag
    )
    errors = []
    if traced_compute.rc != 0:
        errors.append(f"importtime compute run failed: {traced_compute.stderr.strip().splitlines()[-1:]}")
    help_modules, compute_modules = importtime_modules(traced_help.stderr), importtime_modules(traced_compute.stderr)
    return Startup(
        help_times=help_times,
        torch_in_help=_torch_modules(help_modules),
        torch_in_compute=_torch_modules(compute_modules),
        help_traced=traced_help.rc == 0,
        compute_traced=traced_compute.rc == 0,
        compute_modules=compute_modules,
        errors=errors,
    )


def importtime_modules(stderr: str) -> set[str]:
    mods = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":
                mods.add(name)
    return mods


def _torch_modules(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in ("torch", "torchvision"))


# --------------------------------------------------------------------------- corpus passes


def route_files(files: list[str], workers: int) -> list[decisions.Routed]:
    """Ask chanstats which fast path takes each file (in a pool: it decodes every file)."""
    with _fork_pool(workers) as pool:
        return [r for chunk in pool.map(decisions.route_chunk, decoding.chunks(files)) for r in chunk]


def check_identity(routed: list[decisions.Routed], combinations: list[str], workers: int) -> dict[str, decoding.Identity]:
    """Pixel identity of every fast decoder some combination uses vs Pillow, on the corpus files
    of its format."""
    used = {d for name in combinations for d in decoding.COMBINATIONS[name].fast_decoders}
    identity = {}
    with _fork_pool(workers) as pool:
        for decoder, spec in decoding.FAST_DECODERS.items():
            if decoder not in used:
                continue
            files = [(r.fast_path, r.path) for r in routed if r.format == spec.format]
            task = partial(decoding.identity_chunk, decoder, decisions.MODE)
            identity[decoder] = decoding.Identity.total(list(pool.map(task, decoding.chunks(files))))
    return identity


def _fork_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))


# --------------------------------------------------------------------------- timed rounds


class Job(NamedTuple):
    """One measured command; ``output``: the chanstats result file kept for the byte-identity check."""

    name: str
    cmd: list[str]
    poll_s: float | None = None
    output: Path | None = None


@dataclass
class Rounds:
    """Every job's successful runs (in round order), the kept outputs, and what failed."""

    runs: dict[str, list[Finished]]
    outputs: dict[str, list[bytes]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def bench_jobs(sets, combinations: list[str], list_file: Path, workers: int, workers_flag: list[str], tmp: Path) -> list[Job]:
    """Every measured command, in round order: chanstats (default and one worker), the decode-only
    programs, the recipe, chanstats on the big set, and the two untimed memory runs."""
    cs = decisions.chanstats_command()

    def compute(root: Path, out: str, *flags: str) -> list[str]:
        return cs + ["compute", str(root), "-q", "-o", str(tmp / out), *flags]

    return [
        Job("chanstats", compute(sets.main, "out.json", "--timings", *workers_flag), output=tmp / "out.json"),
        Job("chanstats_w1", compute(sets.main, "out_w1.json", "--workers", "1"), output=tmp / "out_w1.json"),
        *[Job(f"decode_{name}", [sys.executable, PROGRAMS, "decode", name, str(workers), str(list_file)]) for name in combinations],
        Job("recipe", [sys.executable, PROGRAMS, "recipe", str(sets.main), str(workers)]),
        Job("chanstats_big", compute(sets.big, "out_big.json", *workers_flag)),
        # The same two runs again, with the tree's RSS polled (see "Memory"): not timed.
        Job("memory_n", compute(sets.main, "mem.json", *workers_flag), poll_s=POLL_S),
        Job("memory_big", compute(sets.big, "mem_big.json", *workers_flag), poll_s=POLL_S),
    ]


def run_rounds(jobs: list[Job], repeat: int, log: Callable[[str], None]) -> Rounds:
    """Run every job ``repeat`` times, interleaved, the order rotated each round (the machine may
    be shared: slow drifts then hit every job alike)."""
    rounds = Rounds(runs={job.name: [] for job in jobs}, outputs={job.name: [] for job in jobs if job.output})
    for rnd in range(repeat):
        for job in jobs[rnd % len(jobs) :] + jobs[: rnd % len(jobs)]:
            log(f"round {rnd + 1}/{repeat}: {job.name} ...")
            run = run_command(job.cmd, job.poll_s)
            if run.rc != 0:
                rounds.errors.append(f"{job.name} round {rnd + 1}: {run.failure}")
                continue
            rounds.runs[job.name].append(run)
            if job.output is not None:
                rounds.outputs[job.name].append(job.output.read_bytes())
    return rounds
