"""chanstats against the decode-only limit in CPU seconds, for machines shared with other work.

    python bench/cpu.py [--n 2000] [--rounds 5] [--baseline DIR]

On a machine whose cores other processes are using, wall times (what ``bench/run.py`` reports)
mostly measure the neighbours. The CPU time a command's process tree spends (user + system, from
``os.wait4``) depends far less on them: this script compares that, launch to exit, for

- ``chanstats compute`` with its defaults, and with the standard percentiles asked for by name
  (``--percentiles 0.5,1,2,50,98,99,99.5``: what the default was before it became ``auto``);
- with ``--baseline DIR``, the default ``chanstats compute`` of another checkout (run with
  ``PYTHONPATH=DIR``: e.g. the previous commit, exported with ``git archive``);
- the fastest pixel-identical decode-only program of ``bench/run.py`` (simplejpeg for JPEG,
  chanstats' PNG decoder for PNG, a forked pool, every file read and decoded once),

on the first ``--n`` images of the bench corpus, in ``--rounds`` interleaved rounds (order rotated
each round). It prints each command's median CPU seconds and wall seconds and the ratios
"decode-only CPU / chanstats CPU", i.e. chanstats' rate relative to the decode-only rate at equal
CPU, with the range over rounds. The load average before and after is printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import decisions, decoding, jobs, programs  # noqa: E402
from bench.corpus import build_corpus  # noqa: E402
from bench.sets import SETS_DIR, make_set  # noqa: E402

STANDARD = "0.5,1,2,50,98,99,99.5"


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(CPU seconds of the whole process tree, wall seconds) of ``cmd``, launch to exit."""
    start = time.perf_counter()
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {process.stderr.read().decode()[-2000:]}")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--baseline", default=None, help="another chanstats checkout to time with PYTHONPATH=DIR")
    args = parser.parse_args()

    decisions.precompile_chanstats()
    root = make_set(build_corpus(args.n), SETS_DIR / f"n{args.n}")
    routed = jobs.route_files(decisions.listed_files(root), args.workers)
    fastest = decoding.combination_for({r.fast_path for r in routed if r.fast_path})
    chanstats = decisions.chanstats_command()
    with tempfile.TemporaryDirectory(prefix="chanstats-cpu-") as scratch:
        list_file = Path(scratch) / "files.txt"
        programs.write_list(list_file, routed)
        out = str(Path(scratch) / "out.json")
        commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
            "chanstats default": ([*chanstats, "compute", str(root), "-q", "-o", out], None),
            "chanstats --percentiles by name": ([*chanstats, "compute", str(root), "-q", "-o", out, "--percentiles", STANDARD], None),
            f"decode-only {fastest}": ([sys.executable, str(programs.__file__), "decode", fastest, str(args.workers), str(list_file)], None),
        }
        if args.baseline:
            env = dict(os.environ, PYTHONPATH=str(Path(args.baseline).resolve()))
            commands["baseline chanstats default"] = ([*chanstats, "compute", str(root), "-q", "-o", out], env)
        names = list(commands)
        load_before = os.getloadavg()[0]
        cpu: dict[str, list[float]] = {name: [] for name in names}
        wall: dict[str, list[float]] = {name: [] for name in names}
        for rnd in range(args.rounds):
            for name in names[rnd % len(names):] + names[: rnd % len(names)]:
                c, w = timed(*commands[name])
                cpu[name].append(c)
                wall[name].append(w)
                print(f"round {rnd + 1}/{args.rounds}: {name}: {c:.2f} s CPU, {w:.2f} s wall", file=sys.stderr)
        load_after = os.getloadavg()[0]
    decode = f"decode-only {fastest}"
    print(f"{len(routed)} images, {args.rounds} interleaved rounds, {args.workers} processes; "
          f"load average {load_before:.1f} before, {load_after:.1f} after")
    print(f"{'command':<36}{'CPU s (median)':>16}{'wall s (median)':>17}{'decode CPU / CPU':>18}{'range':>14}")
    for name in names:
        per_round = [d / c for d, c in zip(cpu[decode], cpu[name])]
        ratio = statistics.median(cpu[decode]) / statistics.median(cpu[name])
        print(f"{name:<36}{statistics.median(cpu[name]):>16.2f}{statistics.median(wall[name]):>17.2f}{ratio:>17.2f}×"
              f"{min(per_round):>8.2f}–{max(per_round):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
