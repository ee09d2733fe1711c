"""``torchrun ... -m chanstats compute PATH --distributed``: one shard per rank, gathered with torch.distributed.

Every rank lists the whole dataset (the listing is deterministic, so all ranks agree on it and on
its fingerprint), measures shard ``RANK+1`` of ``WORLD_SIZE`` into a lossless
:class:`~chanstats.scale.state.PartialState`, and only then joins the process group (gloo, CPU):

1. ``all_gather_object`` of each rank's error (or ``None``), so that every rank knows whether the
   run failed and none waits forever;
2. ``gather_object`` of the partial states (as their JSON text, the same lossless form a
   ``--partial`` file holds) to rank 0, which merges and finalizes them exactly like
   ``chanstats merge`` and writes the config.

The config is byte-identical to a single-process run. Joining the group after measuring means the
parent process has started no torch threads when the engine forks its worker processes, and torch
is only imported here, never by a plain ``chanstats compute``. Ranks that finish early wait at the
rendezvous for the slowest; :data:`TIMEOUT` bounds that wait (torchrun itself stops the other ranks
when one crashes).
"""

from __future__ import annotations

import datetime
import os

from ..errors import ChanstatsError
from . import state_file
from .state import PartialState

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


def gather_states(payload: str | None, error: str | None, rank: int, world: int) -> list[PartialState] | None:
    """Join the process group and bring every rank's state (its file text, ``payload``) to rank 0.

    ``error``: this rank's failure, or ``None``. Every rank learns whether any failed; rank 0
    raises naming each failed rank, the others raise :class:`OtherRankFailed`. Returns the states
    in rank order on rank 0, ``None`` elsewhere.
    """
    import torch.distributed as dist  # only here: plain compute must not pay torch's import time

    dist.init_process_group(backend="gloo", timeout=TIMEOUT)
    try:
        errors: list[str | None] = [None] * world
        dist.all_gather_object(errors, error)
        gathered: list[str | None] | None = [None] * world if rank == 0 else None
        if not any(errors):
            dist.gather_object(payload, gathered, dst=0)
    finally:
        dist.destroy_process_group()

    failed = [(r, message) for r, message in enumerate(errors) if message]
    if failed:
        if rank != 0:
            raise OtherRankFailed()
        if len(failed) == 1 and world == 1:
            raise ChanstatsError(failed[0][1])
        raise ChanstatsError("\n".join(f"rank {r}: {message}" for r, message in failed))
    if rank != 0 or gathered is None:
        return None
    return [state_file.loads(text or "", f"rank {r}") for r, text in enumerate(gathered)]
