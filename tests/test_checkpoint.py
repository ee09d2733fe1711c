"""``--checkpoint``: kill -9 mid-run, rerun the same command, get the uninterrupted run's bytes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from chanstats.scale.checkpoint import TEST_DELAY_ENV, Interval
from chanstats.errors import ChanstatsError
from .helpers.cli import chanstats_command, run
from .helpers.files import make_dataset

OPTIONS = ["--batch-size", "4", "--workers", "0", "-q"]


@pytest.fixture()
def dataset(tmp_path):
    data = make_dataset(tmp_path, count=16)
    run(["compute", "data", "-o", "uninterrupted.json", *OPTIONS], cwd=tmp_path)
    return tmp_path


def done_in(path) -> int:
    try:
        return json.loads(path.read_text())["done"]
    except (OSError, ValueError):
        return 0


def start_and_kill(root, args, at_least: int, delay: float = 0.15) -> int:
    """Start a checkpointed run slowed down by the test hook; kill -9 it once the checkpoint
    holds ``at_least`` images. Returns how many the checkpoint held."""
    env = dict(os.environ, **{TEST_DELAY_ENV: str(delay)})
    process = subprocess.Popen(chanstats_command() + args, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = root / "ckpt.json"
    deadline = time.monotonic() + 60
    try:
        while done_in(checkpoint) < at_least:
            assert process.poll() is None, f"run ended before it could be killed: {process.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint progress"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return done_in(checkpoint)


def test_kill_then_resume_is_byte_identical(dataset, engine):
    engine.pad(dataset / "data")
    if engine.padding:  # the uninterrupted reference stays an in-process run
        run(["compute", "data", "-o", "uninterrupted.json", *OPTIONS], cwd=dataset)
    options = ["--batch-size", "4", "-q", *engine.options]
    args = ["compute", "data", "-o", "out.json", "--checkpoint", "ckpt.json", "--checkpoint-every", "1", *options]
    held = start_and_kill(dataset, args, at_least=5)
    assert 5 <= held < 16 + engine.padding
    assert not (dataset / "out.json").exists()  # nothing written by a run that did not finish
    run(args, cwd=dataset)  # the same command resumes
    assert (dataset / "out.json").read_bytes() == (dataset / "uninterrupted.json").read_bytes()
    assert not (dataset / "ckpt.json").exists()  # deleted after success


def test_kill_twice_with_shards_and_resume_each(dataset):
    # a checkpointed shard resumes into the same partial state; merged, it matches the single run
    for k in (1, 2):
        args = ["compute", "data", "--shard", f"{k}/2", "--partial", f"p{k}.json", "--checkpoint", "ckpt.json",
                "--checkpoint-every", "2", *OPTIONS]
        start_and_kill(dataset, args, at_least=2)
        run(args, cwd=dataset)
    merged = run(["merge", "p1.json", "p2.json", "-q"], cwd=dataset).stdout
    assert merged.encode() == (dataset / "uninterrupted.json").read_bytes()


def test_checkpoint_for_other_options_or_listing_is_refused_and_restart_discards_it(dataset):
    args = ["compute", "data", "-o", "out.json", "--checkpoint", "ckpt.json", "--checkpoint-every", "1", *OPTIONS]
    start_and_kill(dataset, args, at_least=2)
    saved = (dataset / "ckpt.json").read_bytes()

    other = run([*args, "--seed", "3"], cwd=dataset, check=False)
    assert other.returncode == 2
    assert "checkpoint ckpt.json was written with other options (seed: 0 there, 3 now)" in other.stderr
    assert "--restart" in other.stderr and not (dataset / "out.json").exists()

    (dataset / "data" / "img003.png").unlink()
    changed = run(args, cwd=dataset, check=False)
    assert changed.returncode == 2
    assert "different file list (16 images then, 15 now" in changed.stderr
    assert (dataset / "ckpt.json").read_bytes() == saved  # a refused checkpoint is left alone

    fresh = run([*args, "--restart"], cwd=dataset)
    assert fresh.returncode == 0 and not (dataset / "ckpt.json").exists()
    uninterrupted = run(["compute", "data", *OPTIONS], cwd=dataset).stdout
    assert (dataset / "out.json").read_text() == uninterrupted


def test_a_finished_checkpoint_is_not_measured_again(dataset):
    # a crash after the last checkpoint but before the output was written: the rerun reads no image
    # (a checkpoint is a partial state in the column format)
    run(["compute", "data", "--shard", "1/1", "--partial", "ckpt.json", "--partial-format", "columns", *OPTIONS],
        cwd=dataset)
    victim = dataset / "data" / "img002.jpg"
    victim.write_bytes(b"\0" * victim.stat().st_size)  # same name and size, no longer an image
    args = ["compute", "data", "-o", "out.json", "--checkpoint", "ckpt.json", *OPTIONS]
    run(args, cwd=dataset)
    assert (dataset / "out.json").read_bytes() == (dataset / "uninterrupted.json").read_bytes()
    assert run(["compute", "data", *OPTIONS], cwd=dataset, check=False).returncode == 2  # it is bad now


def test_interval_parsing():
    assert Interval.parse("10") == Interval(10, None)
    assert Interval.parse("30s") == Interval(None, 30.0)
    assert Interval.parse("2m,100") == Interval(100, 120.0)
    for bad in ("", "0", "-1", "5x", "1.5"):
        with pytest.raises(ChanstatsError):
            Interval.parse(bad)


def test_restart_needs_checkpoint(dataset):
    result = run(["compute", "data", "--restart", "-q"], cwd=dataset, check=False)
    assert result.returncode == 2 and "--restart" in result.stderr
