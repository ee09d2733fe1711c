"""One run at a time on a checkpoint: a second run on the same ``--checkpoint`` refuses at once in
one line naming the first's pid, while the first goes on undisturbed; a run killed with ``kill -9``
leaves no lock that blocks the rerun. Through the installed command, in-process and through the pool."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time

import pytest

from chanstats.scale.checkpoint import TEST_DELAY_ENV

from .helpers.cli import chanstats_command, run
from .helpers.files import make_dataset
from .test_checkpoint import done_in

IN_PROCESS = ["--batch-size", "4", "--workers", "0", "-q"]
POOL = ["--batch-size", "8", "--workers", "2", "-q"]


def start_slow(root, args, delay: float) -> subprocess.Popen:
    """Start a checkpointed run slowed by the test hook; return once its checkpoint shows progress."""
    env = dict(os.environ, **{TEST_DELAY_ENV: str(delay)})
    process = subprocess.Popen(chanstats_command() + args, cwd=root, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while done_in(root / "ckpt.json") < 1:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint progress"
        time.sleep(0.02)
    return process


def refused_while_running(root, args, first: subprocess.Popen) -> None:
    started = time.monotonic()
    second = run(args, cwd=root, check=False)
    took = time.monotonic() - started
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip().splitlines() == [
        f"Error: checkpoint ckpt.json is in use by another chanstats run (pid {first.pid}); wait for it to end, "
        "or give this run another --checkpoint"
    ]
    assert first.poll() is None, "the first run should still be running"
    assert took < 20  # at once: not after waiting for the first


def test_a_second_run_on_a_checkpoint_refuses_at_once_and_the_first_is_undisturbed(tmp_path):
    make_dataset(tmp_path, count=12)
    run(["compute", "data", "-o", "uninterrupted.json", *IN_PROCESS], cwd=tmp_path)
    args = ["compute", "data", "-o", "out.json", "--checkpoint", "ckpt.json", "--checkpoint-every", "1", *IN_PROCESS]
    first = start_slow(tmp_path, args, delay=0.6)  # long enough for two more runs to start on a busy machine
    try:
        refused_while_running(tmp_path, args, first)
        # another command on the same checkpoint (a shard) is refused too
        shard = ["compute", "data", "--shard", "1/2", "--partial", "p.json", "--checkpoint", "ckpt.json", *IN_PROCESS]
        refused_while_running(tmp_path, shard, first)
        assert not (tmp_path / "p.json").exists()
    finally:
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert (tmp_path / "out.json").read_bytes() == (tmp_path / "uninterrupted.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out.json", "uninterrupted.json"]


@pytest.mark.slow
def test_kill_9_leaves_no_lock_that_blocks_the_rerun_through_the_pool(tmp_path):
    make_dataset(tmp_path, count=46)  # more than one chunk: forked workers share the lock's file
    run(["compute", "data", "-o", "uninterrupted.json", "--batch-size", "8", "--workers", "0", "-q"], cwd=tmp_path)
    args = ["compute", "data", "-o", "out.json", "--checkpoint", "ckpt.json", "--checkpoint-every", "1", *POOL]
    first = start_slow(tmp_path, args, delay=0.05)
    try:
        refused_while_running(tmp_path, args, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (tmp_path / "ckpt.json.lock").exists()  # left behind by kill -9, but no longer locked
    held = json.loads((tmp_path / "ckpt.json").read_text())["done"]
    assert 0 < held < 46
    run(args, cwd=tmp_path)  # resumes at once, even if a killed run's worker were still exiting
    assert (tmp_path / "out.json").read_bytes() == (tmp_path / "uninterrupted.json").read_bytes()
    assert not (tmp_path / "ckpt.json").exists() and not (tmp_path / "ckpt.json.lock").exists()


def test_a_lock_held_by_another_process_is_named_by_its_pid(tmp_path):
    # the lock is the kernel's flock on FILE.lock, whoever holds it; released, the run goes ahead
    make_dataset(tmp_path, count=3)
    args = ["compute", "data", "-o", "out.json", "--checkpoint", "ckpt.json", *IN_PROCESS]
    with open(tmp_path / "ckpt.json.lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.write("4242\n")
        holder.flush()
        result = run(args, cwd=tmp_path, check=False)
        assert result.returncode == 2 and "in use by another chanstats run (pid 4242)" in result.stderr
        assert not (tmp_path / "out.json").exists()
    run(args, cwd=tmp_path)
    assert (tmp_path / "out.json").exists()


@pytest.mark.slow
def test_torchrun_ranks_lock_their_own_checkpoints(tmp_path):
    pytest.importorskip("torch")
    from .test_distributed import torchrun

    make_dataset(tmp_path, count=11)
    options = ["--batch-size", "3", "--workers", "0", "-q"]
    with open(tmp_path / "ckpt-1.json.lock", "w") as holder:  # rank 1's checkpoint is taken
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.write("4242\n")
        holder.flush()
        failed = torchrun(tmp_path, ["compute", "data", "--distributed", "-o", "dist.json",
                                     "--checkpoint", "ckpt-{rank}.json", *options])
    assert failed.returncode != 0 and not (tmp_path / "dist.json").exists()
    assert "rank 1: checkpoint ckpt-1.json is in use by another chanstats run (pid 4242)" in failed.stderr
    result = torchrun(tmp_path, ["compute", "data", "--distributed", "-o", "dist.json",
                                 "--checkpoint", "ckpt-{rank}.json", *options])
    assert result.returncode == 0, result.stderr
    single = run(["compute", "data", *options], cwd=tmp_path).stdout
    assert (tmp_path / "dist.json").read_text() == single
    assert not list(tmp_path.glob("ckpt-*"))


@pytest.mark.parametrize("option", ["--partial", "--per-image", "-o"])
def test_a_checkpoint_that_is_also_an_output_is_refused(tmp_path, option):
    # the checkpoint is deleted once the run ends: it would take the output with it
    make_dataset(tmp_path, count=2)
    extra = ["--shard", "1/1"] if option == "--partial" else []
    result = run(["compute", "data", *extra, option, "./state.json", "--checkpoint", "state.json", *IN_PROCESS],
                 cwd=tmp_path, check=False)
    assert result.returncode == 2 and "are the same file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "state.json").exists()
