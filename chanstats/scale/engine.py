"""The parallel pass: measure every source with worker processes, results back in listing order.

Work goes out in chunks of consecutive sources and comes back as small
:class:`~chanstats.measure.Measurement` objects, never pixels. Chunks are large while much work is
left (per-chunk overhead falls on the main process, which shares the cores with the workers) and
shrink towards the end (so no worker is left alone with a long last chunk): guided scheduling.
Results are yielded in listing order whatever order workers finish in, which is what makes the
output identical for any number of workers. At most a few chunks per worker are in flight, so
memory stays constant.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Callable, Iterator, Sequence

from ..errors import BadImageError, ChanstatsError
from ..measure import Measurement
from ..sources.base import ImageSource

Outcome = Measurement | BadImageError
# Called with the source's global listing index, which seeds any randomness of that sample.
MeasureFn = Callable[[int, ImageSource], Measurement]

CHUNK_SIZE = 16  # in-process (workers=0) and the smallest parallel chunk
LARGEST_CHUNK = 64
IN_FLIGHT_PER_WORKER = 4


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def measure_all(
    sources: Sequence[ImageSource],
    measure: MeasureFn,
    *,
    workers: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = False,
    start_method: str | None = None,
    offset: int = 0,
) -> Iterator[tuple[int, Outcome]]:
    """Yield ``(index, measurement or BadImageError)`` for every source, in listing order.

    ``workers=0`` measures in this process (for debugging and tiny inputs); ``None`` means all
    cores. Bad images are yielded, not raised, so the caller can apply its error policy after
    seeing all of them. ``start_method="forkserver"`` starts workers from a clean process: what a
    transform needs, since the parent has imported torch by then (see :func:`_context`).
    ``offset`` is the global listing index of ``sources[0]`` when ``sources`` is a slice (a shard,
    or the rest after a checkpoint): indices passed to ``measure`` and yielded stay global, so
    per-sample seeding does not depend on how the listing was split.
    """
    if workers is None:
        workers = default_workers()
    if workers < 0:
        raise ChanstatsError("--workers must be 0 (in-process) or more")
    bar = _progress_bar(len(sources), progress)
    try:
        if workers == 0 or len(sources) <= chunk_size:
            chunks = (
                _measure_chunk(measure, sources[i : i + chunk_size], offset + i) for i in range(0, len(sources), chunk_size)
            )
        else:
            chunks = _parallel_chunks(sources, measure, workers, chunk_size, offset, start_method)
        for chunk in chunks:
            for item in chunk:
                yield item
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()


def guided_chunks(total: int, workers: int, smallest: int = CHUNK_SIZE, largest: int = LARGEST_CHUNK) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks covering ``range(total)``: each a quarter of what is
    left per worker, between ``smallest`` and ``largest``.

    >>> [stop - start for start, stop in guided_chunks(300, 2, 8, 64)]
    [37, 32, 28, 25, 22, 19, 17, 15, 13, 11, 10, 8, 8, 8, 8, 8, 8, 8, 8, 7]
    """
    start = 0
    while start < total:
        size = min(largest, max(smallest, (total - start) // (4 * workers)))
        yield start, min(total, start + size)
        start += size


def _parallel_chunks(
    sources: Sequence[ImageSource],
    measure: MeasureFn,
    workers: int,
    chunk_size: int,
    offset: int = 0,
    start_method: str | None = None,
) -> Iterator[list[tuple[int, Outcome]]]:
    chunks = guided_chunks(len(sources), workers, smallest=chunk_size)
    pending: deque[Future] = deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=_context(start_method)) as pool:

        def submit_next() -> None:
            bounds = next(chunks, None)
            if bounds is not None:
                start, stop = bounds
                pending.append(pool.submit(_measure_chunk, measure, list(sources[start:stop]), offset + start))

        for _ in range(workers * IN_FLIGHT_PER_WORKER):
            submit_next()
        while pending:
            chunk = pending.popleft().result()
            submit_next()
            yield chunk


def _measure_chunk(measure: MeasureFn, chunk: Sequence[ImageSource], start: int) -> list[tuple[int, Outcome]]:
    results: list[tuple[int, Outcome]] = []
    for offset, source in enumerate(chunk):
        try:
            results.append((start + offset, measure(start + offset, source)))
        except BadImageError as error:
            results.append((start + offset, error))
    return results


def _context(start_method: str | None = None) -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds; it is safe here because the parent has not started
    # any threads that a child could inherit in a locked state. A transform imports torch in the
    # parent (to check the spec), after which fork is not safe (OpenMP/intra-op thread pools):
    # such runs ask for forkserver, a clean process that preloads torchvision once and forks
    # the workers from there.
    methods = multiprocessing.get_all_start_methods()
    if start_method == "forkserver" and "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["torchvision.transforms.v2", "chanstats.measure"])
        return context
    if start_method is not None and start_method != "fork":
        return multiprocessing.get_context("spawn")
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="chanstats", leave=False, mininterval=0.5)
