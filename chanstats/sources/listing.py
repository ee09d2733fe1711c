"""Finding images: directories, single files, ``@list`` files and tar shards, in a deterministic order.

The order is the contract that makes every later step reproducible: the inputs in the order given,
and inside a directory the files sorted by the bytes of their path relative to that directory.
Hidden files and folders (a name starting with ``.``) are skipped, symlinked folders are followed
once (loops are cut), and a file reached twice (listed twice, or through a link) is kept only the
first time.

A file or folder that a registered kind claims (see :mod:`chanstats.sources.kinds`) is listed by
that kind: a ``.tar``/``.tar.gz``/``.tgz`` input is a shard (see :mod:`chanstats.sources.tar`), its
image members in archive order, WebDataset's order, named ``shard.tar::member``; tables and NumPy
files give their rows and arrays. Any other file is an image file. An input that does not
exist but holds a brace group, such as ``shards/train-{000000..000146}.tar`` or ``{a,b}.tar``, is
expanded (zero padding kept) into inputs taken in that order; every expanded path must exist.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import sys
from typing import Callable, Iterable, Iterator, Sequence

from ..errors import ChanstatsError, NoImagesError
from .base import (IMAGE_EXTENSIONS, ArchiveMember, FileRun, ImageSource, Listed, Listing, RemoteImageFile, SourceKind,
                   not_regular, printable_path)
from .folders import walk
from . import storage
from .kinds import file_kind, folder_kind
from .arrays import is_array_path
from .parquet import is_table_path, list_table
from .stored import ListingWriter
from .tar import is_tar_path, list_tar

def list_images(inputs: Iterable[str], extensions: tuple[str, ...] = IMAGE_EXTENSIONS, *,
                workdir: str | None = None, read: list[str] | None = None,
                saver: Callable[[ListingWriter, str], Listing] | None = None) -> Sequence[ImageSource]:
    """All images under ``inputs`` (directories, image files, ``@list.txt`` files, tables, NumPy
    files), in order. Files and tar members are held as columns (a :class:`Listing`), written to
    files under ``workdir`` (``None``: a temporary directory) as they are found once there are
    more than a few tens of thousands, and read back through memory maps; rows of tables and
    arrays, which carry more, as a list. A file reached twice is kept the first time; the
    listing's :func:`fingerprint` is computed along the way.

    ``read`` receives the paths the listing depends on (see :mod:`chanstats.sources.shared`);
    ``saver(writer, fingerprint)`` finishes a listing of columns instead of ``writer.finish()``
    (to keep it).

    Raises :class:`NoImagesError` naming where it looked when nothing is found, and
    :class:`ChanstatsError` for an input that does not exist.
    """
    inputs = list(inputs)
    writer = ListingWriter(workdir)
    try:
        rows, digest = _collect(_expand(inputs, extensions, read), writer)
        if rows is not None:
            found: Sequence[ImageSource] = rows
        elif not len(writer):
            found = []
        else:
            fingerprint_text = "sha256:" + digest.hexdigest()
            found = writer.finish() if saver is None else saver(writer, fingerprint_text)
            found._columns.fingerprint = fingerprint_text
    except BaseException:
        writer.discard()
        raise
    if not found:
        raise NoImagesError(_nothing_found(inputs, extensions))
    return found


def _nothing_found(inputs: list[str], extensions: tuple[str, ...]) -> str:
    """Why a listing is empty. ``--ext`` helps only where files were chosen by their extension
    (folders, ``@list`` files, tar shards); tables and arrays are read whatever --ext says."""
    where = ", ".join(inputs) if inputs else "(no inputs)"
    if inputs and all(_read_whatever_ext(item) for item in inputs):
        return f"no images in {where}: " + "; ".join(_holds_nothing(item) for item in inputs)
    return f"no images found in {where} (looked for {' '.join(extensions)}; change with --ext)"


def _read_whatever_ext(item: str) -> bool:
    return _empty_kind(item) is not None


def _empty_kind(item: str) -> SourceKind | None:
    """The kind of an input whose items are not chosen by extension (it says what it holds)."""
    if item.startswith("@") or not os.path.exists(item):
        return None
    kind = folder_kind(item) if os.path.isdir(item) else file_kind(item)
    return kind if kind is not None and kind.empty is not None else None


def _holds_nothing(item: str) -> str:
    return _empty_kind(item).empty(item)  # type: ignore[union-attr,misc]


# Sources are de-duplicated and written a batch at a time (see FirstSightings).
BATCH = 4096


def _collect(listed: Iterator[Listed | FileRun], writer: ListingWriter):
    """Write the first sighting of every source in ``listed`` to ``writer``, fingerprinting them
    in the same pass; once a row of a table or an array comes, the rows go to a list instead (see
    :func:`list_images`). Returns that list (or ``None``) and the fingerprint's digest."""
    seen = FirstSightings()
    digest = hashlib.sha256()
    rows: list[ImageSource] | None = None
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # os.fsencode's, inlined
    for batch in _batches(listed, BATCH):
        if isinstance(batch, FileRun):  # a folder's files, as columns: no object per file
            kept = seen.first_sightings_of_files(batch.devices, batch.inodes)
            if not all(kept):
                batch = batch.only(kept)
            encoded = [name.encode(encoding, errors) for name in batch.names]
            digest.update(b"".join([part for pair in zip(encoded, [b"\0%d\n" % size for size in batch.sizes])
                                    for part in pair]))
            if rows is None:
                writer.extend_files(batch, encoded)
            else:
                rows.extend(batch.sources())
            continue
        kept = seen.first_sightings([identity for _, identity in batch])
        hashed = []
        for (source, _), keep in zip(batch, kept):
            if not keep:
                continue
            hashed.append(source.name.encode(encoding, errors))
            hashed.append(b"\0%d\n" % source.size)
            if "://" in source.root and storage.is_url(source.root):
                hashed.append(storage.fingerprint_tag(source))
            if rows is None and type(source) not in (ImageSource, ArchiveMember, RemoteImageFile):
                # Rows of tables, arrays and datasets carry fields of their own that the columns
                # do not hold: such a listing stays a list of sources.
                rows = list(writer.finish())
            if rows is None:
                writer.append(source)
            else:
                rows.append(source)
        digest.update(b"".join(hashed))
    return rows, digest


def _batches(items: Iterator[Listed | FileRun], size: int) -> Iterator[list[Listed] | FileRun]:
    """``items`` in order, the pairs gathered in lists of up to ``size``; runs as they come."""
    batch: list[Listed] = []
    for item in items:
        if isinstance(item, FileRun):
            if batch:
                yield batch
                batch = []
            yield item
            continue
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class FirstSightings:
    """Which identities are seen for the first time, a batch at a time, without a Python object per
    image: identities are grouped by all but their last part (a file's device; a tar shard's or
    table's device and inode) and each group keeps the last parts seen as sorted runs of 64-bit
    integers (8 bytes per image, 16 while two runs merge), merged when one grows to half the size
    of the one before so that there are few of them. Exactly the semantics of a set of the
    identity tuples: the first of equal identities is kept, in order.
    """

    def __init__(self) -> None:
        self.runs: dict[tuple[int, ...], list] = {}

    def first_sightings(self, identities: Sequence[tuple[int, ...]]) -> list[bool]:
        """For each identity in order, whether it was seen neither before nor earlier in the batch."""
        import numpy as np

        keep = np.zeros(len(identities), dtype=bool)
        groups: dict[tuple[int, ...], list[int]] = {}
        for position, identity in enumerate(identities):
            groups.setdefault(identity[:-1], []).append(position)
        for group, positions in groups.items():
            last = np.fromiter((identities[p][-1] & _UINT64 for p in positions), np.uint64, len(positions))
            keep[np.asarray(positions)] = self._first_in_group(group, last)
        return keep.tolist()

    def first_sightings_of_files(self, devices: list[int], inodes: list[int]) -> list[bool]:
        """:meth:`first_sightings` of the identities ``(device, inode)``, without a tuple per file
        when all are on one device (as a folder's files nearly always are)."""
        import numpy as np

        if not devices or devices.count(devices[0]) != len(devices):
            return self.first_sightings(list(zip(devices, inodes)))
        return self._first_in_group((devices[0],), np.array(inodes, dtype=np.uint64)).tolist()

    def _first_in_group(self, group: tuple[int, ...], last):
        """Whether each of ``last`` (the identities' last parts, of one ``group``) is seen for the
        first time, as a boolean array; they are remembered."""
        import numpy as np

        values, first = np.unique(last, return_index=True)  # the first of equal values in the batch
        fresh = np.ones(len(values), dtype=bool)
        runs = self.runs.setdefault(group, [])
        for run in runs:
            at = np.minimum(np.searchsorted(run, values), len(run) - 1)
            fresh &= run[at] != values
        keep = np.zeros(len(last), dtype=bool)
        keep[first[fresh]] = True
        if fresh.any():
            self._add_run(runs, values[fresh])
        return keep

    @staticmethod
    def _add_run(runs: list, values) -> None:
        import numpy as np

        runs.append(values)
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            merged = np.concatenate((runs[-2], runs[-1]))
            merged.sort()
            runs[-2:] = [merged]


# Identities' parts are at least -1 (and below 2**64 - 1): modulo 2**64 keeps them distinct.
_UINT64 = (1 << 64) - 1


def fingerprint(sources: Iterable[ImageSource]) -> str:
    """A hash of the listing: every image's relative name and size, in order."""
    if isinstance(sources, Listing):
        known = sources.whole_fingerprint()
        if known is not None:  # computed while listing
            return known
    digest = hashlib.sha256()
    if isinstance(sources, Listing):  # the same bytes, without making a source per image
        for name, size in sources.name_bytes_and_sizes():
            digest.update(name)
            digest.update(b"\0%d\n" % size)
        return "sha256:" + digest.hexdigest()
    for source in sources:
        digest.update(os.fsencode(source.name))
        digest.update(b"\0%d\n" % source.size)
        if storage.is_url(source.root):
            digest.update(storage.fingerprint_tag(source))
    return "sha256:" + digest.hexdigest()


def _expand(inputs: list[str], extensions: tuple[str, ...], read: list[str] | None = None) -> Iterator[Listed | FileRun]:
    """The sources of ``inputs`` with their identities; ``read``, when given, receives every path
    whose change would change the listing (folders walked, files, list files, shards)."""
    for item in inputs:
        if item.startswith("@"):
            if read is not None:
                read.append(item[1:])
            yield from _from_list_file(item[1:], extensions, read)
        elif storage.is_url(item):
            yield from _remote(item, extensions, read)
        elif not os.path.lexists(item) and has_brace_pattern(item):
            expanded = expand_braces(item)
            missing = [path for path in expanded if not os.path.lexists(path)]
            if missing:
                more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
                raise ChanstatsError(f"{printable_path(missing[0])}{more}: no such file (from the pattern {printable_path(item)})")
            yield from _expand(expanded, extensions, read)
        elif os.path.isdir(item) and (kind := folder_kind(item)) is not None:
            yield from kind.list_folder(item)  # type: ignore[misc]
        elif os.path.isdir(item):
            yield from walk(item, extensions, read)
        elif os.path.lexists(item):
            if read is not None:
                read.append(item)
            yield from _file(item, os.path.basename(item), extensions)
        else:
            raise ChanstatsError(f"{printable_path(item)}: no such file or directory")


def _file(path: str, name: str, extensions: tuple[str, ...], roots: dict[str, str] | None = None) -> Iterator[Listed]:
    """A file named explicitly: a tar shard's image members, or the file itself whatever its
    extension (the user asked for it). Anything but a regular file (a dangling link, a FIFO, a
    socket, a device) is a bad image, never opened. ``roots``: see :meth:`ImageSource.from_path`."""
    problem = not_regular(path)
    if problem is not None:
        stat = os.lstat(path)
        source = ImageSource.from_path(path, name, 0, roots)
        yield ImageSource(source.root, source.name, 0, problem=problem), (stat.st_dev, stat.st_ino)
        return
    kind = file_kind(path)
    if kind is not None:  # a container of items: a shard, a table, a NumPy file
        yield from kind.list(path, extensions)  # type: ignore[misc]
        return
    stat = os.stat(path)
    yield ImageSource.from_path(path, name, stat.st_size, roots), (stat.st_dev, stat.st_ino)


def _remote(url: str, extensions: tuple[str, ...], read: list[str] | None, name: str | None = None,
            entry: "storage.Entry | None" = None) -> Iterator[Listed]:
    """A URL given as an input or in a list file: a prefix is walked like a folder, an object read
    like a file, a brace pattern (``s3://b/train-{000..146}.tar``) expanded when no such object
    exists; ``name``: the relative name a list file gave it."""
    if entry is None:
        entry = storage.stat(url)
    if entry is None and has_brace_pattern(url):
        paths = expand_braces(url)
        expanded = list(zip(paths, storage.stat_many(paths)))
        missing = [path for path, found in expanded if found is None]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise ChanstatsError(f"{storage.redact(missing[0])}{more}: no such object (from the pattern {storage.redact(url)})")
        if any(found.folder for _, found in expanded):  # prefixes: streamed one after the other
            for path, found in expanded:
                yield from _remote(path, extensions, read, entry=found)
            return
        # Objects (shards): each is read through while listing, so several at a time, in order.
        for listed in storage.map_ahead(lambda pair: list(_remote(pair[0], extensions, read, entry=pair[1])), expanded):
            yield from listed
        return
    if entry is None:
        raise ChanstatsError(f"{storage.redact(url)}: no such object or prefix")
    if entry.folder:
        yield from storage.walk(url, extensions)
        return
    if read is not None:
        read.append(url)
    storage.remember(entry)
    if is_table_path(url):
        yield from list_table(url)
    elif is_array_path(url):
        raise ChanstatsError(f"{storage.redact(url)}: NumPy files are read from local disk only; copy it first")
    elif is_tar_path(url):
        for member in list_tar(url, extensions):
            yield member, storage.identity(url, member.offset)
    else:
        name = name if name is not None and url.endswith(name) else url.rsplit("/", 1)[-1]
        root = url[: len(url) - len(name)]
        yield RemoteImageFile(root, name, entry.size, None, storage.version_tag(entry.version)), storage.identity(url)


def _from_list_file(list_path: str, extensions: tuple[str, ...], read: list[str] | None = None) -> Iterator[Listed | FileRun]:
    """Paths in a list file, one per line; relative ones are relative to the list file's folder.

    Blank lines and lines starting with ``#`` are ignored. Listed directories are walked and listed
    tar shards read. The list must be UTF-8 text: a line that is not is an error naming the line.
    """
    try:
        if storage.is_url(list_path):
            lines = storage.read_whole(list_path).splitlines()
        else:
            with open(list_path, "rb") as handle:
                lines = handle.read().splitlines()
    except OSError as error:
        raise ChanstatsError(f"@{list_path}: cannot read list file: {error.strerror or error}") from None
    base = os.path.dirname(list_path)
    roots: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        entry = _list_line(list_path, number, raw).strip()
        if not entry or entry.startswith("#"):
            continue
        if storage.is_url(entry):
            yield from _remote(entry, extensions, read)
            continue
        path = os.path.join(base, entry)
        if storage.is_url(path):  # a relative entry of a list file that is itself a URL
            yield from _remote(path, extensions, read, entry)
        elif os.path.isdir(path):
            yield from walk(path, extensions, read)
        elif os.path.lexists(path):
            if read is not None:
                read.append(path)
            yield from _file(path, entry, extensions, roots)
        else:
            raise ChanstatsError(f"{list_path}:{number}: {entry}: no such file")


def _list_line(list_path: str, number: int, raw: bytes) -> str:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ChanstatsError(
            f"{list_path}:{number}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
            "a list file holds one path per line, in UTF-8"
        ) from None
    if "\0" in line:
        raise ChanstatsError(f"{list_path}:{number}: holds a NUL byte; a list file is text, one path per line")
    return line


def has_brace_pattern(text: str) -> bool:
    """Whether ``text`` holds a ``{a,b}`` or ``{000..146}`` group (WebDataset shard notation)."""
    if "{" not in text:
        return False
    try:
        return expand_braces(text) != [text]
    except ChanstatsError:  # unbalanced braces: a plain (missing) path, reported as such
        return False


def expand_braces(pattern: str) -> list[str]:
    """Expand shell-style brace groups as WebDataset writes shard lists (with ``braceexpand``,
    the library WebDataset itself uses).

    ``{000..003}`` is a numeric range that keeps the zero padding of its bounds; ``{a,b}`` a list;
    groups nest, and ``\\{`` is a literal brace. Several groups multiply out, the first group
    varying slowest.

    >>> expand_braces("train-{000..002}.tar")
    ['train-000.tar', 'train-001.tar', 'train-002.tar']
    >>> expand_braces("{a,b}/x-{8..10}.tar")
    ['a/x-8.tar', 'a/x-9.tar', 'a/x-10.tar', 'b/x-8.tar', 'b/x-9.tar', 'b/x-10.tar']
    """
    from braceexpand import UnbalancedBracesError, braceexpand  # only when a pattern is given

    # braceexpand builds each group's values in full before combining them: refuse a huge range
    # before it is built, and cap the combinations below.
    for match in _NUMERIC_RANGE.finditer(pattern):
        low, high, step = int(match.group(1)), int(match.group(2)), abs(int(match.group(3) or 1)) or 1
        if abs(high - low) // step + 1 > MAX_EXPANDED_PATHS:
            raise ChanstatsError(f"{pattern}: expands to more than {MAX_EXPANDED_PATHS:,} paths")
    try:
        expanded = list(itertools.islice(braceexpand(pattern), MAX_EXPANDED_PATHS + 1))
    except UnbalancedBracesError as error:
        raise ChanstatsError(f"{pattern}: {error}") from None
    if len(expanded) > MAX_EXPANDED_PATHS:
        raise ChanstatsError(f"{pattern}: expands to more than {MAX_EXPANDED_PATHS:,} paths")
    return expanded


# A guard against a typo such as {0..99999999999} listing paths until memory runs out.
MAX_EXPANDED_PATHS = 1_000_000
_NUMERIC_RANGE = re.compile(r"\{(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?\}")
