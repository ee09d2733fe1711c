"""One run at a time on a checkpoint: an exclusive ``flock`` on ``FILE.lock`` beside it.

Two runs appending to one checkpoint's column files and rewriting its header would interleave
their records and leave a state that belongs to neither, so the second run refuses at once,
naming the file and the process holding it.

The lock is the kernel's (``flock``), not the existence of a file: the kernel releases it when
the holding process ends, however it ends (``kill -9``, the out-of-memory killer, a power cut
for a local disk), so a lock left by a dead run never blocks the rerun. The holder's pid is
written into the lock file only to be named in the message. Processes forked while a lock is held
(the worker pool) close their copy at once: a worker that outlives a killed parent does not keep
the lock.

On a file system that does not implement locks (some network file systems answer ``ENOLCK``) the
run goes on unlocked: refusing every run there would be worse than the race this guards against.
"""

from __future__ import annotations

import errno
import fcntl
import os

from ..errors import ChanstatsError

LOCK_SUFFIX = ".lock"
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
# Descriptors of the locks this process holds: a forked child closes its copies (see _forget_in_child).
_held: set[int] = set()


class StateInUseError(ChanstatsError):
    """Another running chanstats process holds the lock."""


def _forget_in_child() -> None:
    for handle in list(_held):
        try:
            os.close(handle)
        except OSError:
            pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class StateLock:
    """The exclusive lock on ``path`` (``path.lock``); ``what`` names it in messages, e.g.
    ``"checkpoint ckpt.json"``, and ``option`` is what to change to run beside the holder."""

    def __init__(self, path: str, what: str, option: str) -> None:
        self.path, self.what, self.option = path, what, option
        self.lock_path = path + LOCK_SUFFIX
        self._handle: int | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> "StateLock":
        """Take the lock, or raise :class:`StateInUseError` at once if another process holds it."""
        while self._handle is None:
            try:
                handle = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as error:
                raise ChanstatsError(f"{self.what}: cannot create its lock file {self.lock_path}: "
                                     f"{error.strerror or error}") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    holder = _read_pid(handle)
                    os.close(handle)
                    by = f" (pid {holder})" if holder else ""
                    raise StateInUseError(f"{self.what} is in use by another chanstats run{by}; wait for it to end, "
                                          f"or give this run another {self.option}") from None
                os.close(handle)
                if error.errno in _UNSUPPORTED:
                    return self  # no locks on this file system: run unlocked
                raise ChanstatsError(f"{self.what}: cannot lock {self.lock_path}: {error.strerror or error}") from None
            # The run that held the lock removes the file as it releases it: if it did so between
            # our open and our flock, we hold a lock on a file nobody else will open. Try again.
            if not _same_file(handle, self.lock_path):
                os.close(handle)
                continue
            try:
                os.ftruncate(handle, 0)
                os.write(handle, f"{os.getpid()}\n".encode())
            except OSError:
                pass  # the pid is only for the message
            self._handle = handle
            _held.add(handle)
        return self

    def release(self) -> None:
        """Remove the lock file and let go (removing first, while still holding, keeps the
        file a competitor locks the one the next run will see)."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            os.unlink(self.lock_path)
        except OSError:
            pass
        _held.discard(handle)
        os.close(handle)

    def __enter__(self) -> "StateLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def _read_pid(handle: int) -> int | None:
    try:
        text = os.pread(handle, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _same_file(handle: int, path: str) -> bool:
    try:
        mine, there = os.fstat(handle), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)
