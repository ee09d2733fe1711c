"""What every kind of image source shares: the items a kind lists (:class:`ImageSource` and
:class:`ContainedItem`), what reading one gives (:class:`Encoded` bytes or a :class:`Decoded`
array), the protocol a kind implements (:class:`SourceKind`), the packed :class:`Listing` of files
and archive members, the default extensions, and the identity used to read a file only once.

Each kind of source (:mod:`~chanstats.sources.files`, :mod:`~chanstats.sources.tar`,
:mod:`~chanstats.sources.parquet`, :mod:`~chanstats.sources.arrays`,
:mod:`~chanstats.sources.datasets`) imports only this module and registers one :class:`SourceKind`
in :mod:`~chanstats.sources.kinds`; docs/architecture.md says how to add one.
"""

from __future__ import annotations

import itertools
import os
import stat as stat_module
import sys
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Iterator, Sequence

from ..errors import ChanstatsError


# The extensions torchvision's ImageFolder accepts, compared case-insensitively.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# The containers read as videos (see chanstats.sources.video); ``--ext video`` names them all.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".webm", ".avi", ".mov")


@dataclass(frozen=True, slots=True)
class ImageSource:
    """One item to measure; as such, an image file.

    ``name`` is the path relative to the input it was found under, used for ordering and the
    listing fingerprint (so a dataset moved elsewhere keeps its fingerprint). ``root`` is what it
    is relative to, one string shared by every image found under it: a run keeps a source per
    image, so the full path is not stored but derived: :attr:`path` (what to open) is
    ``os.path.join(root, name)``, and :attr:`display` (how messages show it) is the same.
    ``size`` is its size in bytes (what the fingerprint hashes with the name). ``problem`` is a
    reason found while listing that makes the item a bad image (a FIFO, a dangling link, a
    member too large to read): it is never read.

    Items of other kinds are subclasses (:class:`ContainedItem`) with fields of their own; every
    field means the same for every kind.
    """

    root: str
    name: str
    size: int
    problem: str | None = None

    @property
    def path(self) -> str:
        """The file to open."""
        return os.path.join(self.root, self.name)

    @property
    def display(self) -> str:
        """How messages, configs and the per-image CSV name the item."""
        shown = os.path.join(self.root, self.name)
        return shown if shown.isprintable() else printable_path(shown)

    @classmethod
    def from_path(cls, path: str, name: str, size: int, roots: dict[str, str] | None = None) -> "ImageSource":
        """The source of the file at ``path`` whose relative name ``name`` ends it; ``roots``
        collects the roots so that sources under one folder share one string."""
        root = path[: len(path) - len(name)]
        if not path.endswith(name) or os.path.join(root, name) != path:
            raise ValueError(f"{path!r} is not a folder joined with its name {name!r}")
        if roots is not None:
            root = roots.setdefault(root, root)
        return cls(root, name, size)


@dataclass(frozen=True, slots=True)
class RemoteImageFile(ImageSource):
    """An image file on a remote file system (object storage, HTTP: see
    :mod:`~chanstats.sources.storage`): ``root`` is a URL prefix, and ``version`` the object's
    version tag when listed (its ETag or last-modified, hashed), which the fingerprint includes and
    reading checks; -1 when the store gives none."""

    version: int = -1


@dataclass(frozen=True, slots=True)
class ContainedItem(ImageSource):
    """An item inside one container (a tar shard, a table, a NumPy file, a Python dataset):
    ``root`` is the container, ``name`` the item's stable name in it, shown as ``root::name``
    (the container alone for an item without a name: the damaged rest of a shard). As such (read
    back from a partial state) it is only shown, never read again; each kind subclasses it with
    what its reader needs."""

    @property
    def path(self) -> str:
        return self.root

    @property
    def display(self) -> str:
        shown = f"{self.root}::{self.name}" if self.name else self.root
        return shown if shown.isprintable() else printable_path(shown)


@dataclass(frozen=True, slots=True)
class ArchiveMember(ContainedItem):
    """A member of a tar shard: ``offset`` is where its bytes start in the (decompressed) archive
    stream, ``compressed`` whether the shard is gzip-compressed (a compressed shard is read from
    its start, so it is one unit of work). Defined here because :class:`Listing` packs members as
    it packs files; :mod:`~chanstats.sources.tar` lists and reads them."""

    offset: int = -1
    compressed: bool = False


@dataclass(frozen=True)
class Encoded:
    """What reading an item gives when it is stored encoded: its bytes, with a hint of the format
    where the kind knows it (``"tiff"``: a file named as one). ``file``: the regular file the
    bytes are, when the item is a whole file, for decoders that read only the parts they need
    (``read`` then runs only if they decline)."""

    read: Callable[[], bytes]
    hint: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class Decoded:
    """What reading an item gives when it is stored as pixels: an ``(H, W, C)`` array, channels
    last, of its stored dtype (integers of up to 32 bits or floats), with the channels' names when
    the source has them; ``original`` is the object the source gave (a PIL image or a tensor a
    dataset returned), which a ``--transform`` is given instead of the array. ``follows_mode``: the
    pixels are what a program gave (a dataset's sample), which ``--mode L`` converts to grey as a
    decoded file is converted; arrays stored in files are measured as stored."""

    pixels: Any
    channel_names: tuple[str, ...] | None = None
    original: Any = None
    follows_mode: bool = False


@dataclass(frozen=True)
class SourceKind:
    """One kind of source, as :mod:`chanstats.sources.kinds` registers it.

    - ``name``: how docs and messages call the kind;
    - ``item_type``: the class of the items it lists (reading dispatches on it);
    - ``read(item)``: :class:`Encoded` or :class:`Decoded`; raises
      :class:`~chanstats.errors.BadImageError` naming the item for one that cannot be read;
    - ``claims(path)`` and ``list(path, extensions)``: whether a file given as input is of this
      kind, and its items with their identities (``Listed``: a file's ``(dev, inode)``, then what
      tells items in it apart); ``claims_folder``/``list_folder`` the same for a folder that is
      one source (a saved table);
    - ``unit(item)``: the piece of work the item must not be separated from (a compressed shard, a
      small row group), or ``None``;
    - ``also``: other item classes the kind reads (a ``RemoteImageFile`` is an image file);
    - ``empty(path)``: what an input of this kind that gave no items holds, for the message (a
      kind whose items are not chosen by ``--ext``; ``None``: the message suggests ``--ext``);
    - ``per_epoch``: reading the item again may give other pixels (a dataset's own random
      transforms), so it is read once per epoch with every generator seeded;
    - ``forked``: workers must inherit this process's state (fork), not start clean.

    Kinds whose items are made another way (a Python dataset, given as an object) leave
    ``claims``/``list`` out.
    """

    name: str
    item_type: type
    read: Callable[[Any], "Encoded | Decoded"]
    claims: Callable[[str], bool] | None = None
    list: Callable[[str, tuple[str, ...]], "Iterator[Listed]"] | None = None
    claims_folder: Callable[[str], bool] | None = None
    list_folder: Callable[[str], "Iterator[Listed]"] | None = None
    unit: Callable[[Any], Hashable | None] = lambda item: None
    also: tuple[type, ...] = ()
    empty: Callable[[str], str] | None = None
    per_epoch: bool = False
    forked: bool = False


class Listing(Sequence[ImageSource]):
    """Image sources held as columns, read as :class:`ImageSource` objects when indexed.

    A run keeps its listing for its whole length, so instead of an object per image (about 290
    bytes with its name string) the sources are packed: every name's bytes (``os.fsencode``) in one
    buffer with their end offsets, sizes and archive offsets as 64-bit integers, one byte of flags
    and an index into the distinct roots; problems, which are rare, sit in a dictionary. That is
    about 30 bytes plus the name's length per image.

    Slicing with step 1 gives a view sharing the columns (shards, chunks, the rest after a
    checkpoint cost nothing); pickling a view sends only its own rows, so a chunk of work crosses to
    a worker as a few flat buffers rather than one object per image. Names must round-trip through
    ``os.fsencode``/``os.fsdecode``, as every name that listing decodes from a file system or an
    archive does.
    """

    __slots__ = ("_columns", "_start", "_stop")

    def __init__(self, sources: Iterable[ImageSource] = ()) -> None:
        self._columns = _Columns()
        self._start = self._stop = 0
        for source in sources:
            self.append(source)

    def append(self, source: ImageSource) -> None:
        """Add ``source`` at the end (only to a whole listing, not to a view of one)."""
        if self._stop != len(self._columns.sizes):
            raise ValueError("cannot append to a view of a listing")
        self._columns.append(source)
        self._stop += 1

    def __len__(self) -> int:
        return self._stop - self._start

    def __getitem__(self, index):  # type: ignore[override]
        if index.__class__ is int and 0 <= index < self._stop - self._start:  # the common case first
            return self._columns.source(self._start + index)
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            view = Listing.__new__(Listing)
            view._columns, view._start, view._stop = self._columns, self._start + start, self._start + max(start, stop)
            return view
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("listing index out of range")
        return self._columns.source(self._start + index)

    def __iter__(self) -> Iterator[ImageSource]:
        source = self._columns.source
        return (source(i) for i in range(self._start, self._stop))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Listing of {len(self)} images>"

    def whole_fingerprint(self) -> str | None:
        """The fingerprint listing computed while writing these rows, when this is all of them."""
        columns = self._columns
        if self._start == 0 and self._stop == len(columns.sizes):
            return columns.fingerprint
        return None

    def name_bytes_and_sizes(self) -> Iterator[tuple[bytes, int]]:
        """Each image's name as ``os.fsencode`` gives it, and its size, without making sources."""
        columns = self._columns
        names, ends, sizes = columns.names, columns.name_ends, columns.sizes
        begin = ends[self._start - 1] if self._start else 0
        for i in range(self._start, self._stop):
            end = ends[i]
            yield bytes(names[begin:end]), sizes[i]
            begin = end

    def any_name_ends_with(self, suffixes: tuple[bytes, ...]) -> bool:
        """Whether a name ends with one of ``suffixes`` (lower-case bytes), ignoring case: a scan
        of the names' buffer for each suffix, without making a name per row."""
        import re

        import numpy as np

        columns = self._columns
        if not len(self):
            return False
        begin = columns.name_ends[self._start - 1] if self._start else 0
        ends = np.frombuffer(columns.name_ends, np.int64)[self._start : self._stop] - begin
        text = bytes(columns.names[begin : begin + int(ends[-1])]).lower()
        for suffix in suffixes:
            found = np.fromiter((match.end() for match in re.finditer(re.escape(suffix), text)), np.int64)
            at = np.minimum(np.searchsorted(ends, found), len(ends) - 1)  # the ends are sorted
            if (ends[at] == found).any():  # an occurrence that ends a name
                return True
        return False

    def local_files(self) -> Iterator[tuple[str, bytes, int, int | None, bool]] | None:
        """Each row's root, name (as ``os.fsencode`` gives it), size, modification time in
        nanoseconds as the listing found it (``None`` where unknown: see :class:`FileRun`) and
        whether it is a bad entry (a problem found while listing), without making sources;
        ``None`` unless every row is a local file (not a member, an object or another container's
        item)."""
        import numpy as np

        columns = self._columns
        if len(self) and np.frombuffer(columns.flags, np.uint8)[self._start : self._stop].any():
            return None
        return self._local_files()

    def _local_files(self) -> Iterator[tuple[str, bytes, int, int | None, bool]]:
        columns = self._columns
        roots, root_ids, names, ends, problems = columns.roots, columns.root_ids, columns.names, columns.name_ends, columns.problems
        sizes, mtimes = columns.sizes, columns.mtimes
        begin = ends[self._start - 1] if self._start else 0
        for i in range(self._start, self._stop):
            end = ends[i]
            mtime = None if mtimes is None or mtimes[i] == NO_MTIME else mtimes[i]
            yield roots[root_ids[i]], bytes(names[begin:end]), sizes[i], mtime, i in problems
            begin = end

    def archive_keys(self) -> list[int] | None:
        """For each image, the number of the gzip-compressed shard it is a member of (its root),
        or -1: what keeps a compressed shard in one piece of work (see :mod:`chanstats.scale.engine`).
        ``None`` when no image is such a member (no list of a number per image is made then)."""
        import numpy as np

        columns = self._columns
        flags, root_ids = columns.flags, columns.root_ids
        if not len(self) or not (np.frombuffer(flags, np.uint8)[self._start : self._stop] & _COMPRESSED).any():
            return None
        return [root_ids[i] if flags[i] & _COMPRESSED else -1 for i in range(self._start, self._stop)]

    def __reduce__(self):
        return (_unpickle_listing, self._columns.rows(self._start, self._stop))


# A row's flags: a member of a compressed shard; a member of a shard; an item of another container,
# only shown (read back from a partial state).
_COMPRESSED, _IN_ARCHIVE, _CONTAINED, _REMOTE = 1, 2, 4, 8


def row_flags(source: ImageSource) -> int:
    """The flags byte a packed row stores for ``source``: a file (0), an archive member, or an item
    of another container that is only shown."""
    if type(source) is ArchiveMember:
        return _IN_ARCHIVE | (_COMPRESSED if source.compressed else 0)
    if type(source) is ContainedItem:
        return _CONTAINED
    if type(source) is RemoteImageFile:
        return _REMOTE
    if type(source) is not ImageSource:
        raise TypeError(f"a listing packs files and archive members, not {type(source).__name__}")
    return 0


def row_locator(source: ImageSource) -> int:
    """The 64-bit number a packed row keeps beside the name: a member's offset in its shard, a
    remote file's version tag, else -1."""
    if type(source) is ArchiveMember:
        return source.offset
    if type(source) is RemoteImageFile:
        return source.version
    return -1


def row_source(root: str, name: str, size: int, offset: int, flags: int, problem: str | None) -> ImageSource:
    """The item a packed row stores (the inverse of :func:`row_flags`)."""
    if flags & _IN_ARCHIVE:
        return ArchiveMember(root, name, size, problem, offset, flags & _COMPRESSED == _COMPRESSED)
    if flags & _CONTAINED:
        return ContainedItem(root, name, size, problem)
    if flags & _REMOTE:
        return RemoteImageFile(root, name, size, problem, offset)
    return ImageSource(root, name, size, problem)

_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


class _Columns:
    """The storage behind a :class:`Listing` and its views."""

    __slots__ = ("roots", "root_number", "root_ids", "names", "name_ends", "sizes", "offsets", "flags", "mtimes",
                 "problems", "row_base", "mapped", "fingerprint")

    def __init__(self) -> None:
        # In memory: growable arrays. Mapped (see chanstats.sources.stored): read-only memoryviews
        # of files (an mmap for the names), indexed and sliced the same way.
        self.mapped = False
        self.row_base = 0  # the global number of row 0 (a writer's buffer after a flush)
        self.fingerprint: str | None = None  # of all the rows, when listing computed it while writing them
        self.roots: list[str] = []
        self.root_number: dict[str, int] = {}
        self.root_ids = array("I")
        self.names = bytearray()
        self.name_ends = array("q")
        self.sizes = array("q")
        self.offsets = array("q")
        self.flags = array("B")
        # A file's modification time as the walk found it (NO_MTIME where no walk stat-ed it);
        # ``None`` for a listing read back from an earlier run, whose times may be out of date.
        self.mtimes: Any = array("q")
        self.problems: dict[int, str] = {}

    def _root_id(self, root: str) -> int:
        number = self.root_number.get(root)
        if number is None:
            number = self.root_number[root] = len(self.roots)
            self.roots.append(root)
        return number

    def append(self, source: ImageSource) -> None:
        number = self._root_id(source.root)
        if self.mapped:
            raise ValueError("cannot append to a listing stored on disk")
        self.fingerprint = None
        if source.problem is not None:
            self.problems[self.row_base + len(self.sizes)] = source.problem
        self.root_ids.append(number)
        self.names += source.name.encode(_FS_ENCODING, _FS_ERRORS)  # what os.fsencode does
        self.name_ends.append(len(self.names))
        self.sizes.append(source.size)
        self.offsets.append(row_locator(source))
        self.flags.append(row_flags(source))
        self.mtimes.append(NO_MTIME)

    def extend_files(self, run: "FileRun", encoded_names: list[bytes]) -> None:
        """Append the files of ``run`` (their names as ``os.fsencode`` gives them) in one step."""
        if self.mapped:
            raise ValueError("cannot append to a listing stored on disk")
        self.fingerprint = None
        count = len(encoded_names)
        self.root_ids.extend(itertools.repeat(self._root_id(run.root), count))
        # Each name's end offset: a running sum of their lengths from the buffer's current end.
        self.name_ends.extend(itertools.islice(itertools.accumulate(map(len, encoded_names), initial=len(self.names)), 1, None))
        self.names += b"".join(encoded_names)
        self.sizes.extend(run.sizes)
        self.offsets.extend(itertools.repeat(-1, count))
        self.flags.frombytes(bytes(count))
        self.mtimes.extend(run.mtimes)

    def source(self, i: int) -> ImageSource:
        ends = self.name_ends
        return row_source(
            self.roots[self.root_ids[i]],
            self.names[ends[i - 1] if i else 0 : ends[i]].decode(_FS_ENCODING, _FS_ERRORS),
            self.sizes[i],
            self.offsets[i],
            self.flags[i],
            self.problems.get(i) if self.problems else None,
        )

    def rows(self, start: int, stop: int) -> tuple:
        """Rows ``[start, stop)`` as flat values, with only the roots they use (for pickling)."""
        begin = self.name_ends[start - 1] if start else 0
        end = self.name_ends[stop - 1] if stop > start else begin
        used: dict[int, int] = {}
        root_ids = array("I", (used.setdefault(r, len(used)) for r in self.root_ids[start:stop]))
        roots = [self.roots[r] for r in used]
        ends = array("q", (e - begin for e in self.name_ends[start:stop]))
        problems = {i - start: p for i, p in self.problems.items() if start <= i < stop}
        mtimes = None if self.mtimes is None else _array("q", self.mtimes[start:stop])
        return (roots, root_ids, bytes(self.names[begin:end]), ends, _array("q", self.sizes[start:stop]),
                _array("q", self.offsets[start:stop]), _array("B", self.flags[start:stop]), problems, mtimes)


def _array(typecode: str, column) -> array:
    """A slice of a column as an array that pickles (a mapped column's slice is a memoryview)."""
    if isinstance(column, array):
        return column
    copy = array(typecode)
    copy.frombytes(memoryview(column).cast("B"))
    return copy


def _unpickle_listing(roots, root_ids, names, name_ends, sizes, offsets, flags, problems, mtimes) -> Listing:
    listing = Listing()
    columns = listing._columns
    columns.roots, columns.root_number = roots, {root: i for i, root in enumerate(roots)}
    columns.root_ids, columns.names, columns.name_ends = root_ids, bytearray(names), name_ends
    columns.sizes, columns.offsets, columns.flags, columns.problems = sizes, offsets, flags, problems
    columns.mtimes = mtimes
    listing._stop = len(sizes)
    return listing


class DisplayNames(Sequence[str]):
    """``sources[i].display`` for each source, made when read: a run's paths are not stored twice."""

    __slots__ = ("sources",)

    def __init__(self, sources: Sequence[ImageSource]) -> None:
        self.sources = sources

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [source.display for source in self.sources[index]]
        return self.sources[index].display


def printable_path(path: str) -> str:
    """``path`` as messages and output files show it, on one line and printable: bytes of a file
    name that are not valid UTF-8 (held as surrogates, Python's ``surrogateescape``) become
    ``\\xNN`` escapes, and control characters (a newline, a tab, an escape sequence) become
    ``\\n``, ``\\t``, ``\\r`` or ``\\xNN`` (``\\u0085`` and the like above ASCII), so the name can be
    printed in a one-line message, written to JSON, YAML and CSV, and still be recognized. Other
    names are returned unchanged.

    >>> printable_path(os.fsdecode(b"caf\\xe9.jpg"))
    'caf\\\\xe9.jpg'
    >>> printable_path("café.jpg")
    'café.jpg'
    >>> print(printable_path("two\\nlines\\x1b[31m.png"))
    two\\nlines\\x1b[31m.png
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        path = os.fsencode(path).decode("utf-8", "backslashreplace")
    return path.translate(_CONTROL_ESCAPES)


# Control characters (C0, DEL and C1) → their escape; str.translate leaves the rest alone.
_CONTROL_ESCAPES = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)},
    **{code: f"\\u{code:04x}" for code in range(0x80, 0xA0)},
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
}


def not_regular(path: str) -> str | None:
    """Why ``path`` cannot be read as a file (``None`` for a regular file, or a link to one),
    found without opening it: opening a FIFO blocks, and opening a device can have effects."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        try:
            target = os.readlink(path)
        except OSError:
            return "vanished while listing"
        return f"dangling symbolic link (to {printable_path(target)}), not a regular file"
    except OSError as error:
        return f"cannot read: {error.strerror or error}"
    if stat_module.S_ISREG(mode):
        return None
    for test, kind in _SPECIAL_KINDS:
        if test(mode):
            return f"not a regular file (a {kind})"
    return "not a regular file"


_SPECIAL_KINDS = (
    (stat_module.S_ISFIFO, "FIFO"),
    (stat_module.S_ISSOCK, "socket"),
    (stat_module.S_ISCHR, "character device"),
    (stat_module.S_ISBLK, "block device"),
    (stat_module.S_ISDIR, "folder"),
)


def normalize_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    """``["JPG", ".png"]`` → ``(".jpg", ".png")``; ``video`` stands for every video extension.

    >>> normalize_extensions(["JPG", ".png"])
    ('.jpg', '.png')
    >>> normalize_extensions(["video"])
    ('.mp4', '.mkv', '.webm', '.avi', '.mov')
    """
    result: list[str] = []
    for ext in extensions:
        ext = ext.strip().lower()
        if not ext:
            continue
        if ext == "video":
            result.extend(VIDEO_EXTENSIONS)
            continue
        result.append(ext if ext.startswith(".") else "." + ext)
    if not result:
        raise ChanstatsError("--ext needs at least one extension")
    return tuple(dict.fromkeys(result))


def has_image_extension(name: str, extensions: tuple[str, ...]) -> bool:
    return name.lower().endswith(extensions)


# A source and its identity: (dev, inode) of a file, (dev, inode, offset) of a tar member.
Listed = tuple[ImageSource, tuple[int, ...]]

NO_MTIME = -(1 << 63)  # a listing row whose modification time no walk found


@dataclass(slots=True)
class FileRun:
    """Consecutive regular image files of one folder walk, as columns: what a :data:`Listed`
    pair per file says (``ImageSource(root, name, size)`` and the identity ``(device, inode)``)
    without an object per file, plus each file's modification time in nanoseconds, taken by the
    same ``stat``. The listing keeps the times, and the measurement cache keys files by them
    instead of ``stat``-ing every file a second time."""

    root: str
    names: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mtimes: list[int] = field(default_factory=list)
    devices: list[int] = field(default_factory=list)
    inodes: list[int] = field(default_factory=list)

    def only(self, keep: Sequence[bool]) -> "FileRun":
        """The files where ``keep`` is true."""
        chosen = [i for i, kept in enumerate(keep) if kept]
        return FileRun(self.root, *([column[i] for i in chosen] for column in
                                    (self.names, self.sizes, self.mtimes, self.devices, self.inodes)))

    def sources(self) -> Iterator[ImageSource]:
        return (ImageSource(self.root, name, size) for name, size in zip(self.names, self.sizes))
