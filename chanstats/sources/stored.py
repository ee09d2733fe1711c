"""A listing written to disk as it is found, and read back through memory maps.

A listing of a hundred million images is several gigabytes of names: :class:`ListingWriter`
keeps the first :data:`IN_MEMORY_ROWS` sources in memory (small runs create no file), then spills
every column to a file of its own in a directory and appends to the files as sources come, a
block of :data:`FLUSH_ROWS` rows at a time. :meth:`ListingWriter.finish` maps the files
read-only: the returned :class:`~chanstats.sources.base.Listing` holds next to nothing in the
Python heap, and the operating system pages names in and out as they are read.

Without a chosen directory the files go to a fresh temporary directory that is removed as soon as
the files are mapped (a mapping outlives its file's name), so nothing is left behind by a run
that ends, fails or is killed once listing is over. A kept listing (:func:`save`, for
:mod:`chanstats.sources.shared`) writes a small header next to the columns instead.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import tempfile
from array import array
from typing import Any

from ..errors import ChanstatsError
from .base import FileRun, ImageSource, Listing, _Columns

# Below this many images a listing stays in memory: no files, and nothing to map.
IN_MEMORY_ROWS = 50_000
FLUSH_ROWS = 65_536

# Column name → array typecode, in file order (names are raw bytes, "B").
COLUMNS = (("names", "B"), ("name_ends", "q"), ("sizes", "q"), ("offsets", "q"), ("flags", "B"), ("root_ids", "I"),
           ("mtimes", "q"))
HEADER = "listing.json"
FORMAT = 2


class ListingWriter:
    """Appends :class:`ImageSource` rows; :meth:`finish` returns them as a :class:`Listing`.

    ``workdir``: where the column files go once the listing outgrows memory (``None``: a temporary
    directory). ``in_memory_rows``: how many rows stay in memory before spilling to disk.
    """

    def __init__(self, workdir: str | None = None, in_memory_rows: int | None = None) -> None:
        self.workdir = workdir
        self.in_memory_rows = IN_MEMORY_ROWS if in_memory_rows is None else in_memory_rows
        self.buffer = _Columns()  # rows not yet written (all of them while in memory)
        self.directory: str | None = None
        self.files: dict[str, Any] = {}
        self.rows_written = 0
        self.name_bytes_written = 0

    def __len__(self) -> int:
        return self.rows_written + len(self.buffer.sizes)

    def append(self, source: ImageSource) -> None:
        """Add ``source`` as the next row."""
        self.buffer.append(source)
        self._flush_when_full()

    def extend_files(self, run: FileRun, encoded_names: list[bytes]) -> None:
        """Add the files of ``run`` (names as ``os.fsencode`` gives them) as the next rows."""
        self.buffer.extend_files(run, encoded_names)
        self._flush_when_full()

    def _flush_when_full(self) -> None:
        buffered = len(self.buffer.sizes)
        if buffered >= FLUSH_ROWS or (self.directory is None and buffered > self.in_memory_rows):
            self._flush()

    def finish(self) -> Listing:
        """The rows written, as a listing (mapped from the files when they were spilled)."""
        if self.directory is None:
            return _listing_of(self.buffer)
        try:
            self._flush()
            for handle in self.files.values():
                try:
                    handle.flush()  # the last buffered rows: a full disk says so here, not as short columns
                except OSError as error:
                    raise ChanstatsError(f"cannot write the listing in {self.directory}: {error.strerror or error}") from None
            self._close_files()
            listing = map_columns(self.directory, self.buffer.roots, self.buffer.problems, len(self))
        except BaseException:
            self.discard()  # kept or not: a listing that could not be finished is of no use
            raise
        if not self.keep:
            self.discard()  # the mappings outlive the files' names
        return listing

    keep = False  # ``save`` sets it: the files stay where they are

    def discard(self) -> None:
        """Remove the files (after an error, or once mapped); safe to call twice."""
        self._close_files()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def spill_now(self) -> None:
        """Write to files from now on whatever the number of rows (a listing that will be kept)."""
        if self.directory is None:
            self._open_files()

    def _open_files(self) -> None:
        parent = self.workdir
        if parent is not None:
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as error:
                raise ChanstatsError(f"--workdir {parent}: cannot create it: {error.strerror or error}") from None
        try:
            self.directory = tempfile.mkdtemp(prefix="chanstats-listing-", dir=parent)
            self.files = {name: open(os.path.join(self.directory, name), "wb") for name, _ in COLUMNS}
        except OSError as error:
            where = parent if parent is not None else tempfile.gettempdir()
            self.discard()
            raise ChanstatsError(f"{where}: cannot write the listing there: {error.strerror or error}") from None

    def _flush(self) -> None:
        if self.directory is None:
            self._open_files()
        buffer = self.buffer
        ends = buffer.name_ends
        if self.name_bytes_written:
            ends = array("q", (end + self.name_bytes_written for end in ends))
        try:
            for name, _ in COLUMNS:
                self.files[name].write(ends if name == "name_ends" else getattr(buffer, name))
        except OSError as error:
            self.discard()
            raise ChanstatsError(f"cannot write the listing in {self.directory}: {error.strerror or error}") from None
        self.name_bytes_written += len(buffer.names)
        self.rows_written += len(buffer.sizes)
        # Keep the roots and problems (problems numbered by global row), drop the rows.
        for name, typecode in COLUMNS:
            setattr(buffer, name, bytearray() if name == "names" else array(typecode))
        buffer.row_base = self.rows_written

    def _close_files(self) -> None:
        for handle in self.files.values():
            try:
                handle.close()
            except OSError:
                pass
        self.files = {}


def _listing_of(columns: _Columns) -> Listing:
    listing = Listing.__new__(Listing)
    listing._columns, listing._start, listing._stop = columns, 0, len(columns.sizes)
    return listing


def map_columns(directory: str, roots: list[str], problems: dict[int, str], rows: int) -> Listing:
    """A listing over the column files in ``directory`` (``rows`` of them), mapped read-only."""
    columns = _Columns()
    columns.roots, columns.root_number = list(roots), {root: i for i, root in enumerate(roots)}
    columns.problems = dict(problems)
    for name, typecode in COLUMNS:
        view = _mapped(os.path.join(directory, name), typecode)
        expected = rows if name != "names" else None
        if expected is not None and len(view) != expected:
            raise ChanstatsError(f"{directory}: the listing's {name} column has {len(view)} rows, not {rows}")
        setattr(columns, name, view)
    columns.mapped = True
    return _listing_of(columns)


def _mapped(path: str, typecode: str):
    """The file at ``path`` as a read-only memoryview of ``typecode`` items (an empty array for an
    empty file, which cannot be mapped)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return array(typecode)
        mapping = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ)
    if typecode == "B":
        return mapping  # slicing an mmap gives bytes, as the names column needs
    return memoryview(mapping).cast(typecode)


def save(writer: ListingWriter, directory: str, key: dict[str, Any], fingerprint: str, extra: dict[str, Any]) -> Listing:
    """Finish ``writer`` into ``directory`` (renamed into place atomically, with a header naming
    ``key``) and return the listing mapped from there. When another process saved the same
    listing first, its copy is used and this one removed."""
    writer.keep = True
    writer.spill_now()
    listing = writer.finish()
    header = {"format": FORMAT, "key": key, "rows": len(listing), "fingerprint": fingerprint,
              "roots": writer.buffer.roots, "problems": {str(k): v for k, v in writer.buffer.problems.items()}, **extra}
    staging = writer.directory
    assert staging is not None
    try:
        with open(os.path.join(staging, HEADER), "w", encoding="utf-8") as handle:
            json.dump(header, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(staging, directory)  # the mappings follow the files
    except OSError:
        # Another process renamed its copy into place first: this copy stays usable through its
        # mappings, and its files go.
        shutil.rmtree(staging, ignore_errors=True)
    return listing


def load(directory: str) -> tuple[dict[str, Any], Listing] | None:
    """The header and listing saved in ``directory``, or ``None`` when there is none (yet)."""
    try:
        with open(os.path.join(directory, HEADER), encoding="utf-8") as handle:
            header = json.load(handle)
    except (OSError, ValueError):
        return None
    if header.get("format") != FORMAT:
        return None
    problems = {int(k): v for k, v in header["problems"].items()}
    try:
        listing = map_columns(directory, header["roots"], problems, header["rows"])
    except (OSError, ChanstatsError):
        # Removed or replaced under us (another process found it stale), or damaged: list afresh.
        return None
    # Images rewritten in place since it was saved keep their rows but not their times: a
    # measurement cache stats the files itself rather than trust these.
    listing._columns.mtimes = None
    return header, listing
