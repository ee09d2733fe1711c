"""Checking where a command will write before it starts the work.

A missing folder, a read-only file system or a folder standing where a file should go would
otherwise be found only when the output is written, after the whole computation. Each destination
is checked by creating (and at once removing) an empty file beside it, which asks the file system
itself: permissions, read-only mounts and quotas on inodes are all answered, for root too.
"""

from __future__ import annotations

import os
import stat
import tempfile
from typing import Iterable

from ..errors import ChanstatsError, cannot_write


def check_destinations(destinations: Iterable[tuple[str, str | os.PathLike | None]]) -> None:
    """Raise :class:`ChanstatsError` (``cannot write PATH: REASON``) unless every ``(option,
    path)`` can be written; ``None`` paths (options not given) are skipped. Two options naming the
    same file are refused too: one output would silently replace the other."""
    seen: dict[str, str] = {}
    for option, path in destinations:
        if path is None:
            continue
        path = os.fspath(path)
        _check_one(path)
        key = os.path.realpath(path)
        if key in seen and _is_regular_or_missing(path):
            raise ChanstatsError(f"cannot write {path}: {seen[key]} and {option} both name it")
        seen[key] = option


def _check_one(path: str) -> None:
    if path == "":
        raise ChanstatsError("cannot write '': an empty file name")
    if os.path.isdir(path):
        raise ChanstatsError(f"cannot write {path}: a folder is in the way")
    if not _is_regular_or_missing(path):
        return  # /dev/null, /dev/stdout, a FIFO: written to directly
    target = os.path.realpath(path) if os.path.islink(path) else path
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise ChanstatsError(f"cannot write {path}: the folder {folder} {what}")
    try:
        handle, probe = tempfile.mkstemp(prefix=".chanstats-probe-", dir=folder)
    except OSError as error:
        raise cannot_write(path, error) from None
    os.close(handle)
    os.unlink(probe)


def _is_regular_or_missing(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True
