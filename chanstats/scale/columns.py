"""Append-only column files: fixed-width little-endian records in a run directory, read back
through memory maps.

A run keeps one entry per image for its whole length; held as Python objects or growing arrays
that costs the main process memory in proportion to the dataset. Written to files instead, the
main process holds a few write buffers, saving a checkpoint is a flush and an fsync whatever the
run's length, and reading uses the page cache (:class:`numpy.memmap`), not the heap.

A column is saved with its length in records and the CRC-32 of those records (the header of a
checkpoint or partial state records both; the checksum is kept as records are appended, so a save
never re-reads a column); bytes past that length are what a run appended after its last save and
are cut when it resumes. A file shorter than its recorded length, or whose records do not match
the recorded checksum, is damaged and named in the error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from ..errors import ChanstatsError, cannot_write
from .integrity import Checksum

# Bytes copied per step when columns are concatenated or copied: bounds merge memory.
COPY_BLOCK = 1 << 22


class ColumnFile:
    """One column: ``path`` holds ``len(self)`` records of ``dtype`` (little-endian), appended to
    through a buffered file and read through a memory map of the records flushed so far."""

    __slots__ = ("path", "dtype", "_length", "_stream", "_view", "_view_length", "writable", "_checksum")

    def __init__(self, path: str, dtype: str, length: int = 0, *, writable: bool = True, fresh: bool = True,
                 checksum: int | None = None) -> None:
        """A new empty column at ``path`` (``fresh``), or the saved one whose first ``length``
        records are its content; with ``checksum`` (what the header recorded) they are verified."""
        self.path, self.dtype = path, np.dtype(dtype).newbyteorder("<")
        self._length, self._stream, self._view, self._view_length = length, None, None, -1
        self.writable = writable
        self._checksum = Checksum()
        with self._writing():
            if fresh:
                with open(path, "wb"):
                    pass
            else:
                self._check_size(length)
                if checksum is not None or writable:
                    self._checksum = Checksum(self._checksum_on_disk())
                    if checksum is not None and self._checksum.value != checksum:
                        raise ChanstatsError(f"{self.path}: damaged column file (checksum mismatch: its {length} "
                                             "values are not those saved)")
                if checksum is not None and not writable and os.path.getsize(path) != length * self.dtype.itemsize:
                    # a finished state's columns hold exactly what its header counts
                    raise ChanstatsError(f"{self.path}: damaged column file ({os.path.getsize(path)} bytes, its header "
                                         f"records {length} values of {self.dtype.itemsize} bytes)")
                if writable and os.path.getsize(path) != length * self.dtype.itemsize:
                    # what a run appended after its last save (a kill -9 before the header was rewritten)
                    os.truncate(path, length * self.dtype.itemsize)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A failed write (a full disk, a read-only folder) as one line naming this column file."""
        try:
            yield
        except OSError as error:
            raise cannot_write(self.path, error) from None

    def _check_size(self, length: int) -> None:
        try:
            size = os.path.getsize(self.path)
        except OSError as error:
            if length == 0:
                with open(self.path, "wb"):
                    return
            raise ChanstatsError(f"{self.path}: cannot read column file: {error.strerror or error}") from None
        if size < length * self.dtype.itemsize:
            raise ChanstatsError(
                f"{self.path}: damaged column file ({size} bytes, its header records {length} values of "
                f"{self.dtype.itemsize} bytes)"
            )

    def _checksum_on_disk(self) -> int:
        """The CRC-32 of the column's first ``len(self)`` records as they are in the file."""
        checksum, remaining = Checksum(), self._length * self.dtype.itemsize
        if remaining == 0:
            return checksum.value
        with open(self.path, "rb") as stream:
            while remaining:
                block = stream.read(min(remaining, COPY_BLOCK))
                if not block:
                    break
                checksum.update(block)
                remaining -= len(block)
        return checksum.value

    def __len__(self) -> int:
        return self._length

    @property
    def checksum(self) -> int:
        """The CRC-32 of the records appended so far (what a header records with the length)."""
        return self._checksum.value

    def append(self, values: np.ndarray) -> None:
        """Append ``values`` (converted to the column's type): one buffered write."""
        if not self.writable:
            raise ValueError(f"{self.path} is read-only")
        data = np.ascontiguousarray(values, dtype=self.dtype)
        with self._writing():
            if self._stream is None:
                self._stream = open(self.path, "ab", buffering=1 << 20)
            raw = data.tobytes()
            self._stream.write(raw)
        self._checksum.update(raw)
        self._length += len(data)

    def flush(self) -> None:
        if self._stream is not None:
            with self._writing():
                self._stream.flush()

    def sync(self) -> None:
        """Flush and fsync: the records are on disk before a header that counts them is written."""
        if self._stream is not None:
            with self._writing():
                self._stream.flush()
                os.fsync(self._stream.fileno())

    def close(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            with self._writing():
                stream.close()

    def view(self) -> np.ndarray:
        """The column's records as a read-only array backed by the file (no copy)."""
        if self._view_length != self._length:
            self.flush()
            if self._length == 0:
                self._view = np.zeros(0, dtype=self.dtype)
            else:
                self._view = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self._length,))
            self._view_length = self._length
        return self._view  # type: ignore[return-value]

    def blocks(self, records: int | None = None) -> Iterator[np.ndarray]:
        """The records in consecutive pieces of bounded size."""
        step = records or max(1, COPY_BLOCK // self.dtype.itemsize)
        view = self.view()
        for start in range(0, len(view), step):
            yield view[start : start + step]


def remove_directory(path: str) -> None:
    """Remove a run's column directory and everything in it; nothing if it is not there."""
    shutil.rmtree(path, ignore_errors=True)


def fsync_directory(path: str) -> None:
    """Make a rename or new file in ``path`` durable (where the platform allows it)."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


@contextmanager
def run_directory(workdir: str | os.PathLike | None = None, prefix: str = "chanstats-run-") -> Iterator[str]:
    """A new folder for a run's column files inside ``workdir`` (default: the system's temporary
    folder, ``TMPDIR``), removed when the run ends: on success, on an error, on Ctrl-C and on
    SIGTERM alike.

    A ``kill -9`` leaves it behind; the next run in the same place removes it. The folder holds a
    lock for as long as its run lives (the kernel drops it with the process, however it ends), so
    a folder whose lock can be taken belongs to a run that is gone.
    """
    parent = None if workdir is None else os.fspath(workdir)
    try:
        if parent is not None:
            os.makedirs(parent, exist_ok=True)
        path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    except OSError as error:
        raise ChanstatsError(f"--workdir {parent or tempfile.gettempdir()}: cannot create a folder there: "
                             f"{error.strerror or error}") from None
    lock = _hold_lock(path)
    try:
        _remove_abandoned(os.path.dirname(path), prefix, path)
        yield path
    finally:
        if lock is not None:
            os.close(lock)  # first: a network file system keeps a folder with an open file in it
        remove_directory(path)


RUN_LOCK = "run.lock"


def _hold_lock(folder: str) -> int | None:
    """Lock ``folder``'s lock file for as long as this process lives; ``None`` where file locks
    are not available (then a killed run's folder stays, as before)."""
    try:
        import fcntl
    except ImportError:  # not on a POSIX system
        return None
    # Locked under another name, then renamed: a folder whose lock file is visible is locked.
    staging = os.path.join(folder, RUN_LOCK + ".new")
    try:
        handle = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(staging, os.path.join(folder, RUN_LOCK))
    except OSError:
        os.close(handle)
        return None
    return handle


def _remove_abandoned(parent: str, prefix: str, own: str) -> None:
    """Remove the run folders in ``parent`` whose run was killed: their lock is free."""
    try:
        import fcntl

        entries = [entry.path for entry in os.scandir(parent) if entry.name.startswith(prefix) and entry.path != own]
    except (ImportError, OSError):
        return
    for folder in entries:
        try:
            handle = os.open(os.path.join(folder, RUN_LOCK), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # no lock file: a folder of an older chanstats, or not a run's; left alone
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: its run is alive
        finally:
            os.close(handle)
        remove_directory(folder)
