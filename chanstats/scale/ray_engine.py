"""``--engine ray``: the units of work of :mod:`.engine` run as Ray tasks, anywhere on a Ray cluster.

Only the scheduling changes. The listing is cut into the same units as for the process pool
(:func:`~chanstats.scale.engine.work_units`: chunks of consecutive images sized by the workers'
pace, a compressed shard or a small Parquet row group kept whole), each unit is one Ray task that
measures it with the run's :class:`~chanstats.measure.Measurer` and returns the same lossless
:class:`~chanstats.scale.chunk.ChunkResult` a worker process returns, and the driver adds the
chunks to the run's state in listing order, exactly as it does for the process pool. So the output
is byte-identical to a run in one process, whatever the cluster's size or the order tasks end in.

Faults, as Ray users expect them:

- a worker process or a node that dies mid-task is retried by Ray (``max_retries``); each unit's
  result is one object, read once, in its place in the listing, so a retried unit is never
  counted twice nor lost;
- bad images are named exactly as in a local run (they travel in the chunk, as from a worker
  process); an unexpected error is the same one line naming the image;
- Ctrl-C (or SIGTERM) on the driver cancels the tasks in flight and the run writes nothing.

Ray is imported only here, and only when a run asks for it (``pip install 'chanstats[ray]'``).
"""

from __future__ import annotations

import os
from collections import deque
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ..errors import ChanstatsError, WorkerError, one_line
from ..sources.base import ImageSource, Listing
from ..sources.kinds import kind_of
from .engine import CHUNK_SIZE, IN_FLIGHT_PER_WORKER, MeasureFn, _Pace, _pillow_pixel_limit, _units

if TYPE_CHECKING:
    from .chunk import ChunkResult

ENGINES = ("local", "ray")
MISSING_RAY = "Ray is not installed: pip install 'chanstats[ray]'"
# How often Ray reruns a unit whose worker process or node died (Ray's own default is 3).
MAX_RETRIES = 3
# A cluster chanstats starts itself carries only the measuring function and the chunks' small
# results: its object store need not take Ray's default 30% of the machine's memory.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024


def import_ray() -> Any:
    """The ``ray`` module, or the one-line error that names the extra to install."""
    try:
        import ray
    except ImportError:
        raise ChanstatsError(MISSING_RAY) from None
    return ray


@dataclass(frozen=True)
class RayEngine:
    """Where a run's units of work go: the Ray cluster at ``address`` (``None``: the one this
    process is connected to, else the one ``RAY_ADDRESS`` names, else a local one started for the
    run)."""

    address: str | None = None

    def measure_chunks(self, sources: Sequence[ImageSource], measure: MeasureFn, *, offset: int = 0,
                       progress: bool = False, cpus: int | None = None) -> Iterator["ChunkResult"]:
        """:func:`chanstats.scale.engine.measure_chunks` on the cluster: one
        :class:`~chanstats.scale.chunk.ChunkResult` per unit of work, in listing order. ``cpus``:
        the CPUs of a local cluster started for the run (default: all cores)."""
        if len(sources) and kind_of(sources[0]).forked:
            raise ChanstatsError("--engine ray measures files, shards and tables: a Python dataset lives in this "
                                 "process (measure it with the local engine, or give chanstats a ray.data.Dataset)")
        return _chunks_on_cluster(self.address, cpus, sources, measure, offset, progress)


_ENGINE: ContextVar[RayEngine | None] = ContextVar("chanstats_ray_engine", default=None)


def current() -> RayEngine | None:
    """The Ray engine the current run was asked for, or ``None`` for the local process pool."""
    return _ENGINE.get()


@contextmanager
def engine_in_effect(engine: str | None = None, address: str | None = None) -> Iterator[None]:
    """Run what is inside on ``engine`` (``"local"``: the process pool; ``"ray"``: a Ray cluster;
    ``None``: the engine already in effect, so that ``check`` and ``compare`` pass theirs on)."""
    if engine is None and address is None:
        yield
        return
    engine = engine or "local"
    if engine not in ENGINES:
        raise ChanstatsError(f"engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "local":
        if address is not None:
            raise ChanstatsError("--ray-address goes with --engine ray")
        token = _ENGINE.set(None)
    else:
        import_ray()  # a missing Ray fails before anything is listed
        token = _ENGINE.set(RayEngine(address))
    try:
        yield
    finally:
        _ENGINE.reset(token)


@contextmanager
def connected(address: str | None, cpus: int | None = None) -> Iterator[Any]:
    """This process connected to a Ray cluster for the length of the block: the one it already is
    connected to, else ``address`` (or ``RAY_ADDRESS``), else, as Ray's ``init`` does, a cluster
    started on this machine by ``ray start``, else a local cluster of ``cpus`` CPUs started here
    (``address="local"``: always a new one). The connection is closed at the end, and a local
    cluster started here shut down."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    settings: dict[str, Any] = dict(include_dashboard=False, log_to_driver=True)
    starting = dict(num_cpus=cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    try:
        if address == "local":  # Ray's word for: a new local cluster, even beside a running one
            ray.init(address=address, **settings, **starting)
        elif address is None:
            try:
                ray.init(**settings, **starting)
            except ValueError:  # Ray found a cluster started on this machine (ray start): it connects to that one
                ray.init(**settings)
        else:
            ray.init(address=address, **settings)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ChanstatsError(f"--ray-address {address or 'auto'}: cannot connect to the Ray cluster: "
                             f"{one_line(error)}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _chunks_on_cluster(address: str | None, cpus: int | None, sources: Sequence[ImageSource], measure: MeasureFn, offset: int,
                       progress: bool) -> Iterator["ChunkResult"]:
    from .engine import _progress_bar

    with connected(address, cpus) as ray:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_measure_unit)
        # Sent once: every task reads the measuring function from the object store.
        shared = ray.put((measure, _pillow_pixel_limit()))
        pace = _Pace(CHUNK_SIZE)
        units = _units(sources, cpus, pace.bounds)
        pending: deque[tuple[Any, int, int]] = deque()  # (the unit's result, its bounds), in listing order
        bar = _progress_bar(len(sources), progress)

        def submit_next() -> None:
            bounds = next(units, None)
            if bounds is not None:
                start, stop = bounds
                chunk = sources[start:stop]  # a listing's view pickles as a few flat buffers
                pending.append((task.remote(shared, chunk if isinstance(chunk, Listing) else list(chunk),
                                            offset + start), start, stop))

        try:
            for _ in range(cpus * IN_FLIGHT_PER_WORKER):
                submit_next()
            while pending:
                reference, start, stop = pending.popleft()
                seconds, chunk = _result(ray, reference, sources, start, stop)
                del reference  # the object store lets go of the result once the state holds it
                if (chunk.start, chunk.stop) != (offset + start, offset + stop):
                    raise WorkerError(f"{sources[start].display}: a Ray task returned images {chunk.start}..{chunk.stop - 1}, "
                                      f"not {offset + start}..{offset + stop - 1}")
                pace.record(stop - start, seconds)
                submit_next()
                yield chunk
                if bar is not None:
                    bar.update(stop - start)
        finally:
            # Ctrl-C, an error or a consumer that stopped early: the tasks in flight are not needed.
            for reference, _, _ in pending:
                ray.cancel(reference, force=True)
            if bar is not None:
                bar.close()


def _result(ray: Any, reference: Any, sources: Sequence[ImageSource], start: int, stop: int) -> tuple[float, Any]:
    """A unit's ``(seconds, ChunkResult)``; Ray's failures as chanstats' one-line errors."""
    from ray import exceptions

    try:
        return ray.get(reference)
    except exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, ChanstatsError):  # WorkerError and the like: already names the image
            raise cause from None
        raise WorkerError(f"{sources[start].display} and the images after it: measuring failed in a Ray task: "
                          f"{one_line(cause or error)}") from None
    except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.ObjectLostError) as error:
        last = sources[stop - 1].display
        raise WorkerError(f"a Ray worker died while measuring {sources[start].display} .. {last}, "
                          f"{MAX_RETRIES + 1} times ({type(error).__name__})") from None
    except exceptions.RayError as error:
        raise WorkerError(f"{sources[start].display} and the images after it: Ray failed: {one_line(error)}") from None


def _measure_unit(shared: tuple[MeasureFn, tuple[bool, Any]], chunk: Sequence[ImageSource], start: int) -> tuple[float, Any]:
    """In a Ray worker: a unit's CPU seconds and :class:`~chanstats.scale.chunk.ChunkResult`, with
    the driver's decompression-bomb limit (a worker does not inherit the driver's Pillow settings)."""
    from .engine import _measure_timed

    measure, (known, limit) = shared
    if known:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = limit
    return _measure_timed(measure, chunk, start, True)
