"""The fault corpus through the real ``chanstats compute`` command and its worker pool.

Every kind of broken, hostile or tricky input in :mod:`tests.fault_kinds` is placed among 40 good
images (more than one chunk, so the worker pool runs) and judged against Pillow: what Pillow
decodes is measured exactly, what it refuses is named, never a traceback, never a hang.

Kinds whose verdict concerns their own file only run together (one tree, every kind listed and
checked one by one); kinds that can stop a whole run (damaged archives, files that are not regular
files, list files) run alone, under ``--on-error fail`` and ``--on-error skip``. Each kind alone
under ``fail``, and everything again in-process, is the ``slow`` part.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from .conftest import chanstats_command
from .fault_kinds import Expected, Sums, all_kinds, write_good_tree

KINDS = all_kinds()
BATCHED = [kind for kind in KINDS if kind.batchable]
ALONE = [kind for kind in KINDS if not kind.batchable]
GOOD = "good"
RUN_TIMEOUT = 120  # seconds; a run that blocks (a FIFO opened for reading) fails instead of hanging


def test_the_corpus_has_at_least_40_distinct_kinds():
    assert len(KINDS) >= 40
    assert len({kind.name for kind in KINDS}) == len(KINDS)


@dataclass
class Corpus:
    cwd: Path
    good: Sums
    good_count: int


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    cwd = tmp_path_factory.mktemp("corpus")
    pixels = write_good_tree(cwd / GOOD)
    return Corpus(cwd, sum((Sums.of(p) for p in pixels), Sums()), len(pixels))


@pytest.fixture(scope="module")
def batch(corpus) -> Expected:
    """Every batchable kind in one folder, ``kinds``."""
    merged = Expected(["kinds"])
    for kind in BATCHED:
        merged.files.update(kind.place(corpus.cwd / "kinds", corpus.cwd).files)
    return merged


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def compute(cwd: Path, inputs: list[str], on_error: str, workers: int) -> Run:
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    env.pop("CHANSTATS_DEBUG", None)
    command = [*chanstats_command(), "compute", GOOD, *inputs, "-q", "--workers", str(workers), "--on-error", on_error]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, timeout=RUN_TIMEOUT)
    run = Run(done.returncode, done.stdout.decode("utf-8", "surrogateescape"), done.stderr.decode("utf-8", "surrogateescape"))
    assert "Traceback" not in run.stderr, run.stderr
    assert run.code in (0, 2), run.stderr
    return run


def spellings(name: str) -> tuple[str, ...]:
    """How a name with undecodable bytes may appear in text: as the raw bytes or escaped."""
    return (name, name.encode("utf-8", "backslashreplace").decode("ascii"))


def line_naming(stderr: str, name: str) -> str | None:
    for line in stderr.splitlines():
        if any(spelling in line for spelling in spellings(name)):
            return line
    return None


def mentions(stderr: str, name: str) -> bool:
    """Whether ``stderr`` names the file ``name`` itself (not merely a longer name it begins)."""
    return any(re.search(re.escape(spelling) + r"(?![\w./-])", stderr) for spelling in spellings(name))


# ------------------------------------------------------------------------------------------------
# Oracles


def assert_measured_exactly(run: Run, corpus: Corpus, expected: Expected) -> dict:
    """Exit 0; every file Pillow decodes measured exactly, every refused file listed as skipped."""
    assert run.code == 0, run.stderr
    output = json.loads(run.stdout)
    skipped = {entry["path"]: entry["error"] for entry in output["skipped"]}
    assert set(skipped) == set(expected.refused), "skipped must be exactly the files Pillow or the mode rule refuses"
    for name, reason in expected.refused.items():
        assert skipped[name], name
        if not reason.startswith("Pillow refuses"):
            assert reason.split(" (")[0].split(" or ")[0] in skipped[name], (name, skipped[name])
    total = sum((Sums.of(p) for p in expected.measured.values()), corpus.good)
    mean, std = total.mean_std()
    assert output["count"]["images"] == corpus.good_count + len(expected.measured)
    assert output["count"]["pixels"] == total.pixels
    assert output["count"]["skipped"] == len(expected.refused)
    assert output["exact"]["mean"] == mean
    assert output["exact"]["std"] == std
    return output


def assert_refused_and_named(run: Run, expected: Expected) -> None:
    """Exit 2, nothing on stdout, one error naming every refused file and no measured one."""
    assert run.code == 2, run.stdout[-2000:]
    assert run.stdout == ""
    assert run.stderr.startswith("Error: ")
    for name, reason in expected.refused.items():
        line = line_naming(run.stderr, name)
        assert line is not None, f"{name} not named in:\n{run.stderr}"
        if not reason.startswith("Pillow refuses"):
            assert reason.split(" (")[0].split(" or ")[0] in line, line
    for name in expected.measured:
        assert not mentions(run.stderr, name), f"{name} decodes, yet is named:\n{run.stderr}"


def assert_damaged_archive(run: Run, corpus: Corpus, expected: Expected, on_error: str) -> None:
    """The shard is named; under skip only members read before the damage are measured."""
    if on_error == "fail":
        assert run.code == 2 and run.stdout == "", run.stdout[-2000:]
        assert line_naming(run.stderr, expected.archive) is not None, run.stderr
        assert len(run.stderr.strip().splitlines()) <= 3, run.stderr
        return
    assert run.code == 0, run.stderr
    output = json.loads(run.stdout)
    named = [entry for entry in output["skipped"] if entry["path"].startswith(expected.archive)]
    assert named, f"the damaged shard is not listed under skipped: {output['skipped']}"
    prefixes = []
    for count in range(expected.intact_members + 1):
        members = expected.archive_members[:count]
        if any(isinstance(member, str) for member in members):
            break
        prefixes.append(sum((Sums.of(p) for p in members), corpus.good))
    results = [total.mean_std() for total in prefixes]
    measured = (output["exact"]["mean"], output["exact"]["std"])
    assert measured in [(mean, std) for mean, std in results], (
        "the statistics must be those of the good images plus the members read before the damage"
    )
    count = [mean_std for mean_std in results].index(measured)
    assert output["count"]["images"] == corpus.good_count + count


def assert_fatal(run: Run, expected: Expected) -> None:
    """One line on stderr naming the list file and the line; exit 2 whatever the policy."""
    assert run.code == 2 and run.stdout == "", run.stdout[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    list_file, line_number = expected.fatal
    assert list_file in lines[0], lines[0]
    assert re.search(rf"(?<![\d.]){line_number}(?!\d)", lines[0].replace(list_file, "")), lines[0]


def check(run: Run, corpus: Corpus, expected: Expected, on_error: str) -> None:
    if expected.fatal:
        assert_fatal(run, expected)
    elif expected.archive:
        assert_damaged_archive(run, corpus, expected, on_error)
    elif on_error == "skip" or not expected.refused:
        assert_measured_exactly(run, corpus, expected)
    else:
        assert_refused_and_named(run, expected)


# ------------------------------------------------------------------------------------------------
# Tests


def test_every_kind_together_under_skip_is_measured_or_listed_through_the_pool(corpus, batch):
    assert len(batch.refused) >= 20 and len(batch.measured) >= 20, "both verdicts must be well covered"
    pooled = compute(corpus.cwd, batch.inputs, "skip", workers=2)
    assert_measured_exactly(pooled, corpus, batch)
    in_process = compute(corpus.cwd, batch.inputs, "skip", workers=0)
    assert in_process.stdout == pooled.stdout, "the output must not depend on the number of workers"


def test_every_kind_together_under_fail_names_each_refused_file_through_the_pool(corpus, batch):
    run = compute(corpus.cwd, batch.inputs, "fail", workers=2)
    assert_refused_and_named(run, batch)
    assert f"{len(batch.refused)} of {corpus.good_count + len(batch.files)} images" in run.stderr.splitlines()[0]


@pytest.mark.parametrize("on_error", ["fail", "skip"])
@pytest.mark.parametrize("kind", ALONE, ids=lambda kind: kind.name)
def test_kind_that_can_stop_a_run_alone_through_the_pool(corpus, kind, on_error):
    expected = kind.place(corpus.cwd / f"alone_{on_error}_{kind.name}", corpus.cwd)
    check(compute(corpus.cwd, expected.inputs, on_error, workers=2), corpus, expected, on_error)


@pytest.mark.slow
@pytest.mark.parametrize("kind", BATCHED, ids=lambda kind: kind.name)
def test_each_kind_alone_under_fail_through_the_pool_and_in_process(corpus, kind):
    expected = kind.place(corpus.cwd / f"each_{kind.name}", corpus.cwd)
    pooled = compute(corpus.cwd, expected.inputs or [f"each_{kind.name}"], "fail", workers=2)
    check(pooled, corpus, expected, "fail")
    in_process = compute(corpus.cwd, expected.inputs or [f"each_{kind.name}"], "fail", workers=0)
    assert (in_process.code, in_process.stdout, in_process.stderr) == (pooled.code, pooled.stdout, pooled.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("on_error", ["fail", "skip"])
@pytest.mark.parametrize("kind", ALONE, ids=lambda kind: kind.name)
def test_kind_that_can_stop_a_run_alone_in_process(corpus, kind, on_error):
    expected = kind.place(corpus.cwd / f"inproc_{on_error}_{kind.name}", corpus.cwd)
    check(compute(corpus.cwd, expected.inputs, on_error, workers=0), corpus, expected, on_error)


def test_sums_oracle_matches_numpy():
    """The oracle's own arithmetic, against numpy's float64 mean and std."""
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(4)]
    mean, std = sum((Sums.of(image) for image in images), Sums()).mean_std()
    flat = np.concatenate([image.reshape(-1, 3) for image in images]).astype(np.float64) / 255
    np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, flat.std(0), rtol=1e-12)
