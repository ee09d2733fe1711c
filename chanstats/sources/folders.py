"""Folders as image sources: a recursive walk in a deterministic order.

Inside a folder the files are sorted by the bytes of their path relative to it. Hidden files and
folders (a name starting with ``.``) are skipped and symlinked folders are followed once (loops
are cut).
"""

from __future__ import annotations

import os
import stat as stat_module
from typing import Iterator

from ..errors import ChanstatsError
from .base import ImageSource, Listed, not_regular


def walk(root: str, extensions: tuple[str, ...]) -> Iterator[Listed]:
    """Image files under ``root``, sorted by the bytes of their path relative to ``root``.

    One ``stat`` per image (for its size and identity) and none per rejected entry: ``scandir``'s
    file types answer ``is_dir``/``is_file`` without a system call except for symlinks. Only the
    relative names are kept while walking, so the peak memory is a few dozen bytes per file. An
    entry with an image extension that is not a regular file (a dangling link, a FIFO, a socket,
    a device) is listed as a bad image, never opened.
    """
    names: list[str] = []
    visited: set[tuple[int, int]] = set()
    stack = [""]
    while stack:
        relative_dir = stack.pop()
        directory = os.path.join(root, relative_dir) if relative_dir else root
        try:
            stat = os.stat(directory)
        except OSError:
            continue  # a dangling link to a folder: nothing to read
        if (stat.st_dev, stat.st_ino) in visited:
            continue  # a symlink loop or a second link to a folder already walked
        visited.add((stat.st_dev, stat.st_ino))
        prefix = relative_dir + "/" if relative_dir else ""
        try:
            with os.scandir(directory) as iterator:
                for entry in iterator:
                    name = entry.name
                    if name[0] == ".":
                        continue
                    if entry.is_dir():
                        stack.append(prefix + name)
                    elif name.lower().endswith(extensions):
                        names.append(prefix + name)  # regular or not: told apart below
        except OSError as error:
            raise ChanstatsError(f"{directory}: cannot list folder: {error.strerror or error}") from None
    names.sort(key=os.fsencode)
    for name in names:
        path = os.path.join(root, name)
        try:
            stat = os.stat(path)
        except OSError:
            # A dangling link or a link loop: a bad image named by its link (removed: skipped).
            try:
                stat = os.lstat(path)
            except OSError:
                continue
            yield ImageSource(root, name, 0, problem=not_regular(path)), (stat.st_dev, stat.st_ino)
            continue
        if stat_module.S_ISREG(stat.st_mode):
            yield ImageSource(root, name, stat.st_size), (stat.st_dev, stat.st_ino)
        else:
            yield ImageSource(root, name, 0, problem=not_regular(path)), (stat.st_dev, stat.st_ino)
