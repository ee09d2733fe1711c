"""Folders as image sources: a recursive walk in a deterministic order.

Inside a folder the files are sorted by the bytes of their path relative to it. Hidden files and
folders (a name starting with ``.``) are skipped and symlinked folders are followed once (loops
are cut).

What cannot be walked is never fatal to the run, and never silently lost when it may hold images:

- a symbolic link that leads nowhere (dangling, or a loop of links) is a file whose target
  cannot be found: listed as a bad image when its name has an image extension, ignored like any
  other non-image file otherwise (nothing tells a link to a lost folder from a link to a lost
  file, and a walk only looks at image extensions);
- a folder that cannot be listed (no permission, an I/O error) is one bad entry named
  ``folder/`` with the reason, which ``--on-error skip`` skips and ``--max-bad`` counts like a
  bad image. Only the folder given as the input itself is an error of the run.
"""

from __future__ import annotations

import os
import stat as stat_module
import sys
from typing import Iterator

from ..errors import ChanstatsError
from .base import FileRun, ImageSource, Listed, not_regular, printable_path


def walk(root: str, extensions: tuple[str, ...], folders: list[str] | None = None) -> Iterator[Listed | FileRun]:
    """Image files under ``root``, sorted by the bytes of their path relative to ``root``:
    regular files as :class:`FileRun` columns (consecutive files, at most :data:`RUN` of them),
    anything else as a :data:`Listed` pair.

    One ``stat`` per image (for its size, modification time and identity) and none per rejected
    entry: ``scandir``'s file types answer ``is_dir``/``is_file`` without a system call except for
    symlinks. An entry with an image extension that is not a regular file (a dangling link, a
    FIFO, a socket, a device) is listed as a bad image, never opened.

    Memory does not grow with the tree: a first pass finds the folders to walk (each folder once,
    by identity), a second reads them again in order, one folder's entries at a time (the first
    :data:`KEPT_ENTRIES` entries the first pass read are kept for it, not read twice). Sorting by
    whole relative paths is the same as visiting each folder's entries sorted by their name's
    bytes, a folder's name followed by ``/``: a path's first differing component decides both
    orders alike (a file ``a.png`` before the folder ``a``'s files, since ``.`` < ``/``).

    ``folders``, when given, receives the path of every folder walked.
    """
    children, kept = _folders_to_walk(root)
    if folders is not None:
        folders.extend(os.path.join(root, relative) if relative else root for relative in children)
    stack = [_sorted_entries(root, "", children, extensions, kept)]
    prefix = os.path.join(root, "")  # os.path.join(root, name) of a relative name, without a call per file
    files: list[str] = []  # consecutive files met, listed together before what comes next
    while stack:
        for name, is_folder in stack[-1]:  # resumed where it stopped when a sub-folder was entered
            if not is_folder:
                files.append(name)
                if len(files) == RUN:
                    yield from _file_runs(root, prefix, files)
                    files = []
                continue
            yield from _file_runs(root, prefix, files)
            files = []
            try:
                stack.append(_sorted_entries(root, name, children, extensions, kept))
                break
            except OSError as error:
                yield _unlistable(root, name, error)
        else:
            stack.pop()
    yield from _file_runs(root, prefix, files)


def _file_runs(root: str, prefix: str, names: list[str]) -> Iterator[Listed | FileRun]:
    """The files ``names`` (relative to ``root``, whose path ends ``prefix``), in order: regular
    files as runs of at most :data:`RUN`, anything else as a bad entry."""
    for begin in range(0, len(names), RUN):
        part = names[begin : begin + RUN]
        try:
            infos = list(map(os.stat, [prefix + name for name in part]))  # the common case, without a loop here
        except OSError:
            infos = None  # one vanished, or is a dangling link: see below
        if infos is not None and all(_regular(info) for info in infos):
            yield _run(root, part, infos)
            continue
        kept: list[str] = []
        kept_infos: list[os.stat_result] = []
        for name in part:  # one at a time: the entries that are not regular files go between runs
            try:
                info: os.stat_result | None = os.stat(prefix + name)
            except OSError:
                info = None
            if info is not None and _regular(info):
                kept.append(name)
                kept_infos.append(info)
                continue
            if kept:
                yield _run(root, kept, kept_infos)
                kept, kept_infos = [], []
            listed = _listed(root, name, prefix + name)  # a bad entry, named with the reason
            if listed is not None:  # None: removed since the folder was read
                yield listed
        if kept:
            yield _run(root, kept, kept_infos)


def _regular(info: os.stat_result) -> bool:
    return info.st_mode & 0o170000 == stat_module.S_IFREG  # S_ISREG, without a call


def _run(root: str, names: list[str], infos: list[os.stat_result]) -> FileRun:
    return FileRun(root, names, [info.st_size for info in infos], [info.st_mtime_ns for info in infos],
                   [info.st_dev for info in infos], [info.st_ino for info in infos])


# Files per FileRun at most: a folder of millions of files is not held twice.
RUN = 4096
# Entries the first pass keeps for the second (about 100 bytes each): a tree of up to this many
# entries is read once; the folders of a larger one beyond them are read again.
KEPT_ENTRIES = 250_000


def _folders_to_walk(root: str) -> tuple[dict[str, set[str]], dict[str, list[tuple[str, bool]]]]:
    """Each folder to walk (relative to ``root``, ``""`` for ``root``) → the names of its
    sub-folders to walk, and the entries read of the first folders (see :data:`KEPT_ENTRIES`). A
    folder reached twice (a symlink loop, a second link to it) is walked where the depth-first
    scan meets it first."""
    children: dict[str, set[str]] = {}
    kept: dict[str, list[tuple[str, bool]]] = {}
    room = KEPT_ENTRIES
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
        children[relative_dir] = set()
        if relative_dir:
            parent, _, name = relative_dir.rpartition("/")
            children[parent].add(name)
        prefix = relative_dir + "/" if relative_dir else ""
        try:
            entries = _entries(directory)
        except OSError as error:
            if not relative_dir:
                raise _root_error(directory, error) from None
            continue  # listed as a bad entry where the walk meets it (see _unlistable)
        if len(entries) <= room:
            kept[relative_dir] = entries
            room -= len(entries)
        for name, is_folder in entries:
            if is_folder:
                stack.append(prefix + name)
    return children, kept


def _sorted_entries(root: str, relative_dir: str, children: dict[str, set[str]], extensions: tuple[str, ...],
                    kept: dict[str, list[tuple[str, bool]]]) -> Iterator[tuple[str, bool]]:
    """The image files and walked sub-folders of one folder as (relative path, is a folder), in
    the order of their paths' bytes (see :func:`walk`); its entries are taken from ``kept`` when
    the first pass kept them."""
    directory = os.path.join(root, relative_dir) if relative_dir else root
    walked = children[relative_dir]
    keyed = []
    entries = kept.pop(relative_dir, None)
    try:
        if entries is None:
            entries = _entries(directory)
    except OSError as error:
        if not relative_dir:
            raise _root_error(directory, error) from None
        raise
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # os.fsencode's, inlined
    for name, is_folder in entries:
        if is_folder:
            if name in walked:
                keyed.append((name.encode(encoding, errors) + b"/", name, True))
        elif name.lower().endswith(extensions):
            keyed.append((name.encode(encoding, errors), name, False))  # regular or not: told apart by _listed
    keyed.sort()
    prefix = relative_dir + "/" if relative_dir else ""
    return ((prefix + name, is_folder) for _, name, is_folder in keyed)


def _entries(directory: str) -> list[tuple[str, bool]]:
    """The folder's visible entries as (name, is a folder); :class:`OSError` when it cannot be listed."""
    with os.scandir(directory) as iterator:
        return [(entry.name, _is_folder(entry)) for entry in iterator if entry.name[0] != "."]


def _is_folder(entry: os.DirEntry) -> bool:
    """Whether the entry is a folder, following links; a link that leads nowhere (a loop of
    links raises ELOOP here) is not one: it is then a file, a bad image if named as one."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _root_error(directory: str, error: OSError) -> ChanstatsError:
    return ChanstatsError(f"{printable_path(directory)}: cannot list folder: {error.strerror or error}")


def _unlistable(root: str, name: str, error: OSError) -> Listed:
    """The bad entry that stands for a folder that cannot be listed, named ``folder/``."""
    path = os.path.join(root, name)
    try:
        stat = os.lstat(path)
        identity = (stat.st_dev, stat.st_ino)
    except OSError:
        identity = (-1, hash(path) & 0x7FFFFFFFFFFFFFFF)
    problem = f"cannot list folder: {error.strerror or error}; its images are not measured"
    return ImageSource(root, name + "/", 0, problem=problem), identity


def _listed(root: str, name: str, path: str) -> Listed | None:
    try:
        stat = os.stat(path)
    except OSError:
        # A dangling link or a link loop: a bad image named by its link (removed: skipped).
        try:
            stat = os.lstat(path)
        except OSError:
            return None
        return ImageSource(root, name, 0, problem=not_regular(path)), (stat.st_dev, stat.st_ino)
    if stat_module.S_ISREG(stat.st_mode):
        return ImageSource(root, name, stat.st_size), (stat.st_dev, stat.st_ino)
    return ImageSource(root, name, 0, problem=not_regular(path)), (stat.st_dev, stat.st_ino)
