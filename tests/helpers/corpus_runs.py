"""Running ``chanstats compute`` on a corpus placed among good images, and the exact-measurement
oracle shared by the fault-corpus and fuzz tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .cli import chanstats_command
from .fault_kinds import Expected, Sums

GOOD = "good"  # the folder of good images every run measures, relative to the run's folder
RUN_TIMEOUT = 120  # seconds; a run that blocks (a FIFO opened for reading) fails instead of hanging


@dataclass
class Corpus:
    cwd: Path
    good: Sums
    good_count: int


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def compute(cwd: Path, inputs: list[str], on_error: str, workers: int, *options: str) -> Run:
    """`chanstats compute good INPUTS` in `cwd`: no traceback, exit 0 or 2, within the time limit."""
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    env.pop("CHANSTATS_DEBUG", None)
    command = [*chanstats_command(), "compute", GOOD, *inputs, "-q", "--workers", str(workers), "--on-error", on_error, *options]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, timeout=RUN_TIMEOUT)
    run = Run(done.returncode, done.stdout.decode("utf-8", "surrogateescape"), done.stderr.decode("utf-8", "surrogateescape"))
    assert "Traceback" not in run.stderr, run.stderr
    assert run.code in (0, 2), run.stderr
    return run


def spellings(name: str) -> tuple[str, ...]:
    """How a name with undecodable bytes may appear in text: as the raw bytes or with each such
    byte escaped as ``\\xNN`` (how chanstats prints and writes such names)."""
    return (name, os.fsencode(name).decode("utf-8", "backslashreplace"))


def printed(name: str) -> str:
    """``name`` as chanstats writes it into JSON: undecodable bytes as ``\\xNN`` escapes."""
    return spellings(name)[1]


def line_naming(stderr: str, name: str) -> str | None:
    for line in stderr.splitlines():
        if any(spelling in line for spelling in spellings(name)):
            return line
    return None


def mentions(stderr: str, name: str) -> bool:
    """Whether ``stderr`` names the file ``name`` itself (not merely a longer name it begins)."""
    return any(re.search(re.escape(spelling) + r"(?![\w./-])", stderr) for spelling in spellings(name))


def required_words(reason: str) -> str | None:
    """What a refusal by chanstats' own rule must say (16-bit data, not a regular file); Pillow's
    refusals may be worded freely, as long as the file is named."""
    if reason.startswith("Pillow refuses"):
        return None
    return "16-bit" if reason.startswith("16-bit") else reason


def assert_measured_exactly(run: Run, corpus: Corpus, expected: Expected) -> dict:
    """Exit 0; every file Pillow decodes measured exactly, every refused file listed as skipped."""
    assert run.code == 0, run.stderr
    output = json.loads(run.stdout)
    skipped = {entry["path"]: entry["error"] for entry in output["skipped"]}
    refused = {printed(name): reason for name, reason in expected.refused.items()}
    assert set(skipped) == set(refused), "skipped must be exactly the files Pillow or the mode rule refuses"
    for name, reason in refused.items():
        assert skipped[name], name
        words = required_words(reason)
        assert words is None or words in skipped[name], (name, skipped[name])
    total = sum((Sums.of(p) for p in expected.measured.values()), corpus.good)
    mean, std = total.mean_std()
    assert output["count"]["images"] == corpus.good_count + len(expected.measured)
    assert output["count"]["pixels"] == total.pixels
    assert output["count"]["skipped"] == len(expected.refused)
    assert output["exact"]["mean"] == mean
    assert output["exact"]["std"] == std
    return output
