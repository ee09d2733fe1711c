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
import re

import numpy as np
import pytest

from .helpers.corpus_runs import GOOD, Corpus, Run, assert_measured_exactly, compute, line_naming, mentions, required_words
from .helpers.fault_kinds import Expected, Sums, all_kinds, write_good_tree

KINDS = all_kinds()
BATCHED = [kind for kind in KINDS if kind.batchable]
ALONE = [kind for kind in KINDS if not kind.batchable]


def test_the_corpus_has_at_least_40_distinct_kinds():
    assert len(KINDS) >= 40
    assert len({kind.name for kind in KINDS}) == len(KINDS)


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


# ------------------------------------------------------------------------------------------------
# Oracles


def assert_refused_and_named(run: Run, expected: Expected) -> None:
    """Exit 2, nothing on stdout, one error naming every refused file and no measured one."""
    assert run.code == 2, run.stdout[-2000:]
    assert run.stdout == ""
    assert run.stderr.startswith("Error: ")
    for name, reason in expected.refused.items():
        line = line_naming(run.stderr, name)
        assert line is not None, f"{name} not named in:\n{run.stderr}"
        words = required_words(reason)
        assert words is None or words in line, line
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
