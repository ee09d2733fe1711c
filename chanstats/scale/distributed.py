"""``torchrun ... -m chanstats compute PATH --distributed``: one shard per rank, gathered with torch.distributed.

Every rank lists the whole dataset (the listing is deterministic, so all ranks agree on it and on
its fingerprint), measures shard ``RANK+1`` of ``WORLD_SIZE`` into a lossless
:class:`~chanstats.scale.state.PartialState` whose per-image columns are files in a run directory
that every rank can read (see :func:`shared_directory`), and only then joins the process group
(gloo, CPU):

1. ``all_gather_object`` of each rank's error (or ``None``), so that every rank knows whether the
   run failed and none waits forever;
2. ``gather_object`` of the states' headers (options, slice, exact totals, bad images and where
   its column files are: a few kilobytes whatever the number of images) to rank 0, which opens
   every rank's columns, merges and finalizes them exactly like ``chanstats merge`` and writes the
   config;
3. ``broadcast_object_list`` of rank 0's outcome: the other ranks keep their column files (a
   checkpoint's, or the run directory's) until rank 0 has read them, then clean up.

The columns do not cross the network: on several machines the run directory (``--workdir``, or
each rank's ``--checkpoint``) must be on a file system every machine sees. The config is
byte-identical to a single-process run. Joining the group after measuring means the parent
process has started no torch threads when the engine forks its worker processes, and torch is
only imported here, never by a plain ``chanstats compute``. Ranks that finish early wait at the
rendezvous for the slowest; :data:`TIMEOUT` bounds that wait (torchrun itself stops the other
ranks when one crashes).
"""

from __future__ import annotations

import datetime
import os
import tempfile
from typing import Callable, TypeVar

from ..errors import ChanstatsError

T = TypeVar("T")

TIMEOUT = datetime.timedelta(hours=6)


class OtherRankFailed(ChanstatsError):
    """This rank is fine but another failed; rank 0 prints the reason, this one stays quiet."""

    def __init__(self) -> None:
        super().__init__("")

    def __reduce__(self):
        return type(self), ()


def rank_and_world() -> tuple[int, int]:
    """``RANK`` and ``WORLD_SIZE`` as torchrun sets them."""
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except (KeyError, ValueError):
        raise ChanstatsError(
            "--distributed needs torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): "
            "run it as torchrun --nproc-per-node N -m chanstats compute ... --distributed"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise ChanstatsError(f"--distributed: RANK={rank} and WORLD_SIZE={world} do not fit")
    return rank, world


def rank_checkpoint(checkpoint: str, rank: int, world: int) -> str:
    """This rank's checkpoint file: ``{rank}`` in ``checkpoint`` replaced by the rank (required
    when there is more than one rank, so that ranks do not overwrite each other's)."""
    if world > 1 and "{rank}" not in checkpoint:
        raise ChanstatsError(f"--checkpoint {checkpoint}: with --distributed put {{rank}} in the name, e.g. ckpt-{{rank}}.json")
    return checkpoint.replace("{rank}", str(rank))


def shared_directory(workdir: str | os.PathLike | None) -> str:
    """The run directory every rank of this job agrees on: ``chanstats-torchrun-<run id>`` in
    ``workdir`` (default: the temporary folder, enough when every rank is on one machine). The
    run id is torchrun's ``TORCHELASTIC_RUN_ID``, else the rendezvous address and port."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID") or "none"
    if run_id == "none":
        run_id = f"{os.environ.get('MASTER_ADDR', 'local')}-{os.environ.get('MASTER_PORT', '0')}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    parent = tempfile.gettempdir() if workdir is None else os.fspath(workdir)
    return os.path.join(parent, f"chanstats-torchrun-{safe}")


def missing_columns(rank: int, directory: str) -> str:
    """The message when rank 0 cannot see another rank's column files."""
    return (f"rank {rank}'s column files are not in {directory}: with ranks on several machines give --workdir "
            "(or --checkpoint) a folder on a file system every machine sees")


def gather_states(payload: str | None, error: str | None, rank: int, world: int,
                  consume: Callable[[list[str]], T]) -> T | None:
    """Join the process group, bring every rank's state header (``payload``) to rank 0 and run
    ``consume`` on them there, while the other ranks wait (their column files must stay).

    ``error``: this rank's failure, or ``None``. Every rank learns whether any failed; rank 0
    raises naming each failed rank, the others raise :class:`OtherRankFailed`. Returns what
    ``consume`` returned on rank 0, ``None`` elsewhere.
    """
    import torch.distributed as dist  # only here: plain compute must not pay torch's import time

    dist.init_process_group(backend="gloo", timeout=TIMEOUT)
    result: T | None = None
    outcome: list[str | None] = [None]
    try:
        errors: list[str | None] = [None] * world
        dist.all_gather_object(errors, error)
        gathered: list[str | None] | None = [None] * world if rank == 0 else None
        if not any(errors):
            dist.gather_object(payload, gathered, dst=0)
            if rank == 0:
                try:
                    result = consume([text or "" for text in gathered or []])
                except ChanstatsError as failure:
                    outcome = [str(failure)]
            dist.broadcast_object_list(outcome, src=0)
    finally:
        dist.destroy_process_group()

    failed = [(r, message) for r, message in enumerate(errors) if message]
    if failed:
        if rank != 0:
            raise OtherRankFailed()
        if len(failed) == 1 and world == 1:
            raise ChanstatsError(failed[0][1])
        raise ChanstatsError("\n".join(f"rank {r}: {message}" for r, message in failed))
    if outcome[0] is not None:
        if rank != 0:
            raise OtherRankFailed()
        raise ChanstatsError(outcome[0])
    return result
