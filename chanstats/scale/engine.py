"""The parallel pass: measure every source with worker processes, results back in listing order.

Work goes out in chunks of consecutive sources and comes back, never as pixels, as one
:class:`~chanstats.scale.chunk.ChunkResult` per chunk (:func:`measure_chunks`: totals merged and
per-image columns packed by the worker, so the main process works per chunk) or as one small
:class:`~chanstats.measure.Measurement` per image (:func:`measure_all`). Every chunk costs the main
process about the same (a submission, a result to read back and merge) however many images it holds, and
that process must keep up with every core: so chunks are sized by time, not by count. They grow until
each takes a worker about :data:`CHUNK_SECONDS` of CPU (workers report what their chunks took), and
shrink towards the end so that no worker is left alone with a long last chunk: guided scheduling.
Forked workers inherit the listing and the measuring function, so a chunk goes out as its bounds
alone. The output never depends on the chunking: totals are exact integers, and float moments are
merged per image in listing order at the end.
Results are yielded in listing order whatever order workers finish in, which is what makes the
output identical for any number of workers. At most a few chunks per worker are in flight, so
memory stays constant.

Failures are reported as the user's file, never as the pool's: an unexpected exception while
measuring a file becomes a one-line :class:`~chanstats.errors.WorkerError` naming it (in-process
and in workers alike), and a worker that dies (the out-of-memory killer, a crash in a C library) is
named by the file it was measuring, read from a small shared board each worker writes its current
index to. Workers ignore Ctrl-C, and SIGTERM ends them at once: the main process handles both, stops
the workers and reports the interrupt. Workers end with the main process whatever ends it, kill -9
included (see :func:`_die_with_main_process`).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, Sequence

from .. import collector
from ..exits import default_signals, stops_held_back
from ..errors import BadImageError, ChanstatsError, WorkerError, one_line
from ..measure import Measurement
from ..sources.base import ImageSource, Listing
from ..sources.kinds import unit_of

if TYPE_CHECKING:
    from .chunk import ChunkResult

Outcome = Measurement | BadImageError
# Called with the source's global listing index, which seeds any randomness of that sample.
MeasureFn = Callable[[int, ImageSource], Measurement]

CHUNK_SIZE = 16  # in-process (workers=0) and the smallest parallel chunk
LARGEST_CHUNK = 64  # the largest chunk until workers have said how long an image takes them
CHUNK_SECONDS = 0.1  # what a chunk should cost a worker, once known: the main process's share stays small
LARGEST_TIMED_CHUNK = 4096  # bounds a chunk's result (and the work a failure or Ctrl-C throws away)
IN_FLIGHT_PER_WORKER = 4
IN_PROCESS_PACKED = 4
STOP_GRACE_SECONDS = 2.0  # how long stopped workers get to end on SIGTERM before they are killed


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
    packed: bool = False,
) -> Iterator[tuple[int, Outcome]]:
    """Yield ``(index, measurement or BadImageError)`` for every source, in listing order.

    ``workers=0`` measures in this process (for debugging and tiny inputs); ``None`` means all
    cores. Bad images are yielded, not raised, so the caller can apply its error policy after
    seeing all of them. ``start_method="forkserver"`` starts workers from a clean process: what a
    transform needs, since the parent has imported torch by then (see :func:`_context`).
    ``offset`` is the global listing index of ``sources[0]`` when ``sources`` is a slice (a shard,
    or the rest after a checkpoint): indices passed to ``measure`` and yielded stay global, so
    per-sample seeding does not depend on how the listing was split.

    An unexpected exception while measuring, or a worker process that dies, raises
    :class:`~chanstats.errors.WorkerError` naming the file. Close the iterator (or use
    :func:`contextlib.closing`) when stopping early, so that the workers stop at once.
    """
    collector.work_starts()  # before any fork: see chanstats.collector
    if workers is None:
        workers = default_workers()
    if workers < 0:
        raise ChanstatsError("--workers must be 0 (in-process) or more")
    if workers == 0 or len(sources) <= chunk_size:
        # In-process chunks send nothing anywhere, so packed ones stay small: a checkpoint lands
        # between chunks, and small runs and --workers 0 keep it fine-grained.
        step = min(chunk_size, IN_PROCESS_PACKED) if packed else chunk_size
        if packed and getattr(measure, "in_process_step", None):  # a measurement cache: mostly reuses, in bulk
            step = measure.in_process_step
        chunks = (
            _measure_chunk(measure, sources[i : i + step], offset + i, packed=packed)
            for i in range(0, len(sources), step)
        )
    else:
        chunks = _parallel_chunks(sources, measure, workers, chunk_size, offset, start_method, packed)
    bar = _progress_bar(len(sources), progress)
    try:
        for chunk in chunks:
            if packed:
                yield chunk
            else:
                yield from chunk
            if bar is not None:
                bar.update(len(chunk))
    finally:
        chunks.close()  # stops the worker processes now when the caller stopped early or failed
        if bar is not None:
            bar.close()


def guided_chunks(total: int, workers: int, smallest: int = CHUNK_SIZE, largest: int = LARGEST_CHUNK) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks covering ``range(total)``: each a quarter of what is
    left per worker, between ``smallest`` and ``largest``.

    >>> [stop - start for start, stop in guided_chunks(300, 2, 8, 64)]
    [37, 32, 28, 25, 22, 19, 17, 15, 13, 11, 10, 8, 8, 8, 8, 8, 8, 8, 8, 7]
    """
    return _guided(total, workers, lambda: (smallest, largest))


def _guided(total: int, workers: int, bounds: Callable[[], tuple[int, int]]) -> Iterator[tuple[int, int]]:
    # ``bounds`` (smallest, largest) is asked again for every chunk: they follow the workers' pace.
    start = 0
    while start < total:
        size = _guided_size(total - start, workers, *bounds())
        yield start, min(total, start + size)
        start += size


def _guided_size(left: int, workers: int, smallest: int, largest: int) -> int:
    return min(largest, max(smallest, left // (4 * workers)))


def work_units(sources: Sequence[ImageSource], workers: int, smallest: int = CHUNK_SIZE,
               largest: int = LARGEST_CHUNK) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of the chunks the workers get: :func:`guided_chunks`, except that every
    member of a gzip-compressed shard goes to one chunk, in order, with nothing else, and so does
    every row of a small Parquet row group (see :class:`~chanstats.sources.parquet.TableRow`).

    A ``.tar.gz`` has no random access: a worker given a piece of one inflates everything before
    it. Given the whole shard, one worker inflates it exactly once, so a run inflates each shard
    once in the workers whatever their number (compressed shards are then measured in parallel
    with each other, not within one). A Parquet row group is the same on a smaller scale: it is
    read from its start.

    >>> from chanstats.sources.base import ImageSource
    >>> from chanstats.sources.base import ArchiveMember
    >>> gz = [ArchiveMember("a.tar.gz", f"{i}.png", 1, None, 512 * i, True) for i in range(40)]
    >>> files = [ImageSource("d", f"{i}.png", 1) for i in range(30)]
    >>> list(work_units(files[:20] + gz + files[20:], 1, 8, 64))
    [(0, 17), (17, 20), (20, 60), (60, 68), (68, 70)]
    """
    return _units(sources, workers, lambda: (smallest, largest))


def _units(sources: Sequence[ImageSource], workers: int,
           bounds: Callable[[], tuple[int, int]]) -> Iterator[tuple[int, int]]:
    keys = _archive_keys(sources)
    if keys is None:
        yield from _guided(len(sources), workers, bounds)
        return
    total = len(sources)
    start = 0
    while start < total:
        key = keys[start]
        stop = start + 1
        if key >= 0:
            while stop < total and keys[stop] == key:
                stop += 1
        else:
            limit = min(total, start + _guided_size(total - start, workers, *bounds()))
            while stop < limit and keys[stop] < 0:
                stop += 1
        yield start, stop
        start = stop


class _Pace:
    """How long the workers take per image, from the chunks they finished; it sizes the next chunks.

    Until a first chunk is back, chunks hold from ``smallest`` to :data:`LARGEST_CHUNK` images.
    Then a chunk may hold as many images as a worker measures in about :data:`CHUNK_SECONDS`,
    never fewer than that first bound (slow images keep the chunks they always had) nor more than
    :data:`LARGEST_TIMED_CHUNK`; and the last chunks, small so that workers finish together, need
    not be smaller than an eighth of that: a few milliseconds of work, not a handful of images.
    """

    def __init__(self, smallest: int) -> None:
        self.smallest = smallest
        self.seconds_per_image: float | None = None

    def record(self, images: int, seconds: float) -> None:
        if images <= 0 or seconds <= 0:
            return
        latest = seconds / images
        # A moving average: follows a listing whose images change in cost, without jumping at one outlier.
        self.seconds_per_image = latest if self.seconds_per_image is None else 0.5 * (self.seconds_per_image + latest)

    def bounds(self) -> tuple[int, int]:
        """(smallest, largest) images for the next chunk."""
        if self.seconds_per_image is None:
            return self.smallest, LARGEST_CHUNK
        largest = max(LARGEST_CHUNK, min(LARGEST_TIMED_CHUNK, int(CHUNK_SECONDS / self.seconds_per_image)))
        return max(self.smallest, largest // 8), largest


def _archive_keys(sources: Sequence[ImageSource]) -> list[int] | None:
    """Per source, a number naming the compressed shard or the row group it belongs to, or -1;
    ``None`` when no source belongs to one."""
    if isinstance(sources, Listing):
        return sources.archive_keys()
    numbers: dict[tuple[str, int], int] = {}
    keys = [-1 if unit is None else numbers.setdefault(unit, len(numbers)) for unit in map(_unit_of, sources)]
    return keys if any(key >= 0 for key in keys) else None


def _unit_of(source: ImageSource) -> Hashable | None:
    """The piece of work ``source`` must not be separated from, as its kind says (its compressed
    shard, or its table's small row group); else ``None``."""
    return unit_of(source)


def _parallel_chunks(
    sources: Sequence[ImageSource],
    measure: MeasureFn,
    workers: int,
    chunk_size: int,
    offset: int = 0,
    start_method: str | None = None,
    packed: bool = False,
) -> Iterator[Any]:
    pace = _Pace(chunk_size)
    chunks = _units(sources, workers, pace.bounds)
    pending: deque[tuple[Future, int, int]] = deque()
    context = _context(start_method)
    board = _Board(context, workers)
    # Forked workers inherit the listing and the measuring function as they are now: a chunk is then
    # sent as its bounds. Other start methods get both pickled with each chunk (only the chunk's rows).
    inherited = context.get_start_method() == "fork"
    job = (measure, sources, offset, packed) if inherited else None
    processes: dict[int, Any] = {}
    broken: tuple[BrokenProcessPool, int] | None = None
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                             initargs=(*board.worker_args(), job, os.getpid())) as pool:

        def submit_next() -> None:
            bounds = next(chunks, None)
            if bounds is not None:
                start, stop = bounds
                if inherited:
                    future = pool.submit(_measure_inherited, start, stop)
                else:
                    chunk = sources[start:stop]  # a listing's view pickles as a few flat buffers
                    future = pool.submit(_measure_timed, measure, chunk if isinstance(chunk, Listing) else list(chunk),
                                         offset + start, packed)
                pending.append((future, start, stop))

        try:
            with stops_held_back():  # the first submissions start the worker processes
                for _ in range(workers * IN_FLIGHT_PER_WORKER):
                    submit_next()
            while pending:
                future, start, stop = pending.popleft()
                try:
                    seconds, chunk = future.result()
                except BrokenProcessPool as error:
                    processes = dict(getattr(pool, "_processes", None) or {})
                    broken = (error, start)
                    break
                except ChanstatsError:
                    raise
                except Exception as error:  # a result that could not be sent back, and the like
                    raise WorkerError(f"{sources[start].display} and the images after it: measuring failed in a "
                                      f"worker process: {one_line(error)}") from error
                pace.record(stop - start, seconds)
                submit_next()
                yield chunk
        except BaseException:
            # An error, Ctrl-C or a consumer that stopped early: nobody needs the chunks in flight,
            # so the workers stop now instead of finishing them.
            _stop_workers(pool)
            raise
    # Outside the pool: its processes have been joined, so their exit codes are known.
    if broken is not None:
        error, start = broken
        raise WorkerError(board.death_report(sources, offset, start, processes, error)) from None


def measure_chunks(
    sources: Sequence[ImageSource],
    measure: MeasureFn,
    *,
    workers: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = False,
    start_method: str | None = None,
    offset: int = 0,
) -> Iterator["ChunkResult"]:
    """Like :func:`measure_all`, but yields one :class:`~chanstats.scale.chunk.ChunkResult` per
    chunk of consecutive images, in listing order: the workers merge each chunk's exact totals and
    pack its per-image columns, so the caller works per chunk, not per image."""
    return measure_all(sources, measure, workers=workers, chunk_size=chunk_size, progress=progress,
                       start_method=start_method, offset=offset, packed=True)


def _measure_chunk(
    measure: MeasureFn, chunk: Sequence[ImageSource], start: int, packed: bool = False
) -> "list[tuple[int, Outcome]] | ChunkResult":
    from ..sources.storage import read_ahead

    if packed and hasattr(measure, "measure_chunk"):
        # A measurement cache: it packs the items it holds itself, and measures the others here.
        return measure.measure_chunk(start, chunk, _measure_chunk)
    results: list[tuple[int, Outcome]] = []
    board = _WORKER_BOARD
    with read_ahead(chunk):  # remote data: requests in flight for the images that come next
        for offset, source in enumerate(chunk):
            if board is not None:
                board[_WORKER_CELL] = start + offset
            try:
                results.append((start + offset, measure(start + offset, source)))
            except BadImageError as error:
                results.append((start + offset, error))
            except ChanstatsError:
                raise
            except Exception as error:
                # Not a bad image: name the file, keep the original as the cause (--debug shows it;
                # from a worker, as the remote traceback). Only strings cross the process boundary.
                raise WorkerError(f"{source.display}: {_unexpected(error)}") from error
    if board is not None:
        board[_WORKER_CELL] = _IDLE
    if packed:
        from .chunk import pack_chunk

        return pack_chunk(start, chunk, [outcome for _, outcome in results])
    return results


def _measure_timed(measure: MeasureFn, chunk: Sequence[ImageSource], start: int, packed: bool) -> tuple[float, Any]:
    """In a worker: a chunk's results and the CPU seconds they took (which size the next chunks).

    CPU time, not wall time: a worker that waits for a busy core or a slow disk has not done more
    work, and the chunk should not shrink because of it."""
    began = time.process_time()
    result = _measure_chunk(measure, chunk, start, packed)
    return time.process_time() - began, result


def _measure_inherited(start: int, stop: int) -> tuple[float, Any]:
    """In a forked worker: :func:`_measure_timed` of ``sources[start:stop]`` of the inherited job."""
    measure, sources, offset, packed = _WORKER_JOB
    return _measure_timed(measure, sources[start:stop], offset + start, packed)


def _unexpected(error: Exception) -> str:
    if isinstance(error, MemoryError):
        return "out of memory while measuring it (MemoryError)"
    return (f"unexpected error while measuring it: {one_line(error)} "
            "(not a bad image: a bug in chanstats or a library it uses; --debug shows the traceback)")




_IDLE = -1
# In a worker process: the shared board and this worker's cell on it (None in the main process).
_WORKER_BOARD: Any = None
_WORKER_CELL = 0
# In a forked worker: (measure, sources, offset, packed) of the run, inherited from the main process.
_WORKER_JOB: Any = None


class _Board:
    """Shared memory where each worker writes its process id and the global index of the image it is
    measuring (``_IDLE`` between chunks): one integer store per image, no locks, no messages."""

    def __init__(self, context: multiprocessing.context.BaseContext, workers: int):
        self.cells = context.RawArray("q", 2 * workers)
        for cell in range(1, 2 * workers, 2):
            self.cells[cell] = _IDLE
        self.next_slot = context.Value("i", 0)
        self.pillow_limit = _pillow_pixel_limit()

    def worker_args(self) -> tuple:
        return (self.cells, self.next_slot, self.pillow_limit)

    def busy(self) -> dict[int, int]:
        """Process id → index of the image each busy worker was measuring."""
        pairs = zip(self.cells[0::2], self.cells[1::2])
        return {pid: index for pid, index in pairs if pid and index != _IDLE}

    def death_report(self, sources: Sequence[ImageSource], offset: int, chunk_start: int,
                     processes: dict[int, Any], error: BrokenProcessPool) -> str:
        """One line naming the file a dead worker was measuring, and how it died."""
        busy = self.busy()
        codes = {pid: getattr(process, "exitcode", None) for pid, process in processes.items()}
        # The pool terminates the surviving workers with SIGTERM once one has died.
        dead = {pid: code for pid, code in codes.items() if code is not None and code != -signal.SIGTERM}
        if not dead and error.__cause__ is not None:  # no death: a result could not be read back
            cause = str(error.__cause__).strip().strip("'").strip().splitlines()
            return (f"{sources[chunk_start].display} and the images after it: a worker's result could not be read "
                    f"back ({cause[-1].strip() if cause else 'unknown reason'})")
        suspects = [index for pid, index in busy.items() if pid in dead] or list(busy.values())
        how = ", ".join(sorted({_how_it_ended(code) for code in dead.values()})) or "it ended abruptly"
        names = [sources[index - offset].display for index in sorted(suspects) if 0 <= index - offset < len(sources)]
        if len(names) == 1:
            return f"{names[0]}: a worker process died while measuring it ({how})"
        if names:
            return f"a worker process died ({how}) while measuring one of: {', '.join(names)}"
        return f"a worker process died ({how}) while measuring {sources[chunk_start].display} or the images after it"


def _how_it_ended(exit_code: int) -> str:
    if exit_code >= 0:
        return f"it exited with code {exit_code}"
    try:
        name = signal.Signals(-exit_code).name
    except ValueError:
        name = f"signal {-exit_code}"
    if -exit_code == signal.SIGKILL:
        return f"killed by {name}, often the out-of-memory killer"
    return f"killed by {name}"


def _pillow_pixel_limit() -> tuple[bool, Any]:
    # Workers started by forkserver or spawn do not inherit the caller's Pillow settings; the
    # decompression-bomb limit (None lifts it) must be the same in every process.
    image_module = sys.modules.get("PIL.Image")
    return (False, None) if image_module is None else (True, image_module.MAX_IMAGE_PIXELS)


def _start_worker(cells, next_slot, pillow_limit: tuple[bool, Any], job: Any = None, main_pid: int | None = None) -> None:
    global _WORKER_BOARD, _WORKER_CELL, _WORKER_JOB
    default_signals()
    _die_with_parent()
    if main_pid is not None and os.getppid() != main_pid:
        _die_with_main_process(main_pid)
    with next_slot.get_lock():
        slot = next_slot.value
        next_slot.value += 1
    cells[2 * slot] = os.getpid()
    _WORKER_BOARD, _WORKER_CELL, _WORKER_JOB = cells, 2 * slot + 1, job
    known, limit = pillow_limit
    if known:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = limit


def _die_with_parent() -> None:
    # A worker blocks waiting for work that a killed main process (kill -9, the out-of-memory
    # killer) will never send: on Linux the kernel ends it with its parent instead.
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # no usable libc: the watch below still applies to forkserver workers
        pass


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_main_process(main_pid: int) -> None:
    """In a worker whose parent is the fork server, not the main process: end with the main process.

    The fork server exits when every copy of its keep-alive pipe is closed, but multiprocessing
    hands a copy to every worker it forks, and the worker holds the queues' pipes too: once the
    main process is killed, the fork server, its workers and the resource tracker would wait for
    each other for ever. So the worker closes its copy (the fork server now ends with the main
    process, and the kernel ends the worker with it, see :func:`_die_with_parent`), and a thread
    watches the main process and exits the worker as soon as it is gone, whatever killed it.
    """
    try:
        from multiprocessing import forkserver

        server = forkserver._forkserver  # type: ignore[attr-defined]
        if server._forkserver_alive_fd is not None:
            os.close(server._forkserver_alive_fd)
            server._forkserver_alive_fd = None
    except (AttributeError, OSError):  # another Python's internals: the watch alone remains
        pass
    threading.Thread(target=_exit_when_gone, args=(main_pid,), name="chanstats-watch-main", daemon=True).start()


def _exit_when_gone(pid: int) -> None:
    try:
        handle = os.pidfd_open(pid)  # Linux 5.3+: readable once the process has ended
    except (AttributeError, OSError):
        handle = None
    if handle is not None:
        import select

        select.select([handle], [], [])
    else:
        while True:  # the parent's death is all that matters; a reused pid only delays the exit
            time.sleep(0.5)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:  # alive, under another user: a reused pid
                break
    os._exit(1)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    # Read before shutting down: shutdown() forgets the processes.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    # A worker still there after a moment is killed: shutdown() would wait for it for ever, and it
    # may never end by itself (it waits for the queue's lock that a terminated worker held).
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
    # Joins the pool's manager thread, which sees the workers gone and cleans up at once.
    pool.shutdown(wait=True, cancel_futures=True)


def _context(start_method: str | None = None) -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds; it is safe here because the parent has not started
    # any threads that a child could inherit in a locked state. A transform imports torch in the
    # parent (to check the spec), after which fork is not safe (OpenMP/intra-op thread pools):
    # such runs ask for forkserver, a clean process that preloads torchvision once and forks
    # the workers from there.
    methods = multiprocessing.get_all_start_methods()
    if start_method == "forkserver" and "forkserver" in methods:
        _short_socket_folder()
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


# The fork server listens on a Unix socket at <multiprocessing's folder>/listener-XXXXXXXX, and a
# socket path may not be longer than this (108 bytes with its NUL on Linux).
_SOCKET_PATH_LIMIT = 107
_SOCKET_NAME_ROOM = len("/pymp-xxxxxxxx/listener-xxxxxxxx")


def _short_socket_folder() -> None:
    """Let the fork server start under a long TMPDIR: multiprocessing keeps its socket in a folder
    under TMPDIR, and a path past the socket limit fails with "AF_UNIX path too long" before any
    worker starts. Then that folder is made under the system's own temporary folder (``/tmp``)
    instead, as Python 3.13 does itself; it is removed at exit as multiprocessing removes its own."""
    import shutil
    import tempfile
    from multiprocessing import process, util

    config = process.current_process()._config  # where multiprocessing.util.get_temp_dir keeps it
    if config.get("tempdir") is not None or len(tempfile.gettempdir()) + _SOCKET_NAME_ROOM <= _SOCKET_PATH_LIMIT:
        return
    for base in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(base) and os.access(base, os.W_OK | os.X_OK):
            folder = tempfile.mkdtemp(prefix="pymp-", dir=base)
            util.Finalize(None, shutil.rmtree, args=(folder, True), exitpriority=-100)
            config["tempdir"] = folder
            return
