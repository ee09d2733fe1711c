"""Finding images: directories, single files, ``@list`` files and tar shards, in a deterministic order.

The order is the contract that makes every later step reproducible: the inputs in the order given,
and inside a directory the files sorted by the bytes of their path relative to that directory.
Hidden files and folders (a name starting with ``.``) are skipped, symlinked folders are followed
once (loops are cut), and a file reached twice (listed twice, or through a link) is kept only the
first time.

A ``.tar``/``.tar.gz``/``.tgz`` input is a shard (see :mod:`chanstats.tarshards`): its image
members in archive order, WebDataset's order, named ``shard.tar::member``. An input that does not
exist but holds a brace group, such as ``shards/train-{000000..000146}.tar`` or ``{a,b}.tar``, is
expanded (zero padding kept) into inputs taken in that order; every expanded path must exist.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat as stat_module
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from .errors import BadImageError, ChanstatsError, NoImagesError

# The extensions torchvision's ImageFolder accepts, compared case-insensitively.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True, slots=True)
class ImageSource:
    """One image to read.

    ``name`` is the path relative to the input it was found under, used for ordering and the
    listing fingerprint (so a dataset moved elsewhere keeps its fingerprint). ``root`` is what it
    is relative to, one string shared by every image found under it: a run keeps a source per
    image, so the full path is not stored but derived: :attr:`path` (what to open) is
    ``os.path.join(root, name)``, and :attr:`display` (how messages show it) is the same.

    A member of a tar shard (``in_archive``) has ``root`` = the shard, ``name`` = the member's name
    in the archive, :attr:`display` ``shard.tar::member``, ``offset`` = where its bytes start in the
    (decompressed) archive stream and ``compressed`` = whether the shard is gzip-compressed; a
    worker reads the bytes itself (:func:`read_source`). ``problem`` is a reason found while listing
    that makes the source a bad image (a link or device member, a member too large to read).
    """

    root: str
    name: str
    size: int
    offset: int = -1
    compressed: bool = False
    problem: str | None = None
    in_archive: bool = False

    @property
    def path(self) -> str:
        return self.root if self.in_archive else os.path.join(self.root, self.name)

    @property
    def display(self) -> str:
        if not self.in_archive:
            shown = os.path.join(self.root, self.name)
        elif self.name:
            shown = f"{self.root}::{self.name}"
        else:
            shown = self.root  # the damaged rest of a shard (see chanstats.tarshards)
        return shown if shown.isascii() else printable_path(shown)

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
    """``path`` as messages and output files show it: bytes of a file name that are not valid
    UTF-8 (held as surrogates, Python's ``surrogateescape``) become ``\\xNN`` escapes, so the
    name can be printed, written to JSON, YAML and CSV, and still be recognized.

    >>> printable_path(os.fsdecode(b"caf\\xe9.jpg"))
    'caf\\\\xe9.jpg'
    >>> printable_path("café.jpg")
    'café.jpg'
    """
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def normalize_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    """``["JPG", ".png"]`` → ``(".jpg", ".png")``.

    >>> normalize_extensions(["JPG", ".png"])
    ('.jpg', '.png')
    """
    result = []
    for ext in extensions:
        ext = ext.strip().lower()
        if not ext:
            continue
        result.append(ext if ext.startswith(".") else "." + ext)
    if not result:
        raise ChanstatsError("--ext needs at least one extension")
    return tuple(dict.fromkeys(result))


def has_image_extension(name: str, extensions: tuple[str, ...]) -> bool:
    return name.lower().endswith(extensions)


def list_images(inputs: Iterable[str], extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[ImageSource]:
    """All images under ``inputs`` (directories, image files, ``@list.txt`` files), in order.

    Raises :class:`NoImagesError` naming where it looked when nothing is found, and
    :class:`ChanstatsError` for an input that does not exist.
    """
    inputs = list(inputs)
    seen: set[int] = set()
    found: list[ImageSource] = []
    for source, identity in _expand(inputs, extensions):
        # One int per file rather than a tuple: this set holds every image while listing.
        packed = 0
        for part in identity:
            packed = (packed << 64) | (part + 1)  # + 1: a file's offset is -1
        if packed in seen:
            continue
        seen.add(packed)
        found.append(source)
    if not found:
        where = ", ".join(inputs) if inputs else "(no inputs)"
        raise NoImagesError(f"no images found in {where} (looked for {' '.join(extensions)}; change with --ext)")
    return found


def fingerprint(sources: Iterable[ImageSource]) -> str:
    """A hash of the listing: every image's relative name and size, in order."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(os.fsencode(source.name))
        digest.update(b"\0%d\n" % source.size)
    return "sha256:" + digest.hexdigest()


# A source and its identity: (dev, inode) of a file, (dev, inode, offset) of a tar member.
Listed = tuple[ImageSource, tuple[int, ...]]


def _expand(inputs: list[str], extensions: tuple[str, ...]) -> Iterator[Listed]:
    for item in inputs:
        if item.startswith("@"):
            yield from _from_list_file(item[1:], extensions)
        elif not os.path.lexists(item) and has_brace_pattern(item):
            expanded = expand_braces(item)
            missing = [path for path in expanded if not os.path.lexists(path)]
            if missing:
                more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
                raise ChanstatsError(f"{missing[0]}{more}: no such file (from the pattern {item})")
            yield from _expand(expanded, extensions)
        elif os.path.isdir(item):
            yield from _walk(item, extensions)
        elif os.path.lexists(item):
            yield from _file(item, os.path.basename(item), extensions)
        else:
            raise ChanstatsError(f"{item}: no such file or directory")


def _file(path: str, name: str, extensions: tuple[str, ...], roots: dict[str, str] | None = None) -> Iterator[Listed]:
    """A file named explicitly: a tar shard's image members, or the file itself whatever its
    extension (the user asked for it). Anything but a regular file (a dangling link, a FIFO, a
    socket, a device) is a bad image, never opened. ``roots``: see :meth:`ImageSource.from_path`."""
    from .tarshards import is_tar_path, list_tar

    problem = _not_regular(path)
    if problem is not None:
        stat = os.lstat(path)
        source = ImageSource.from_path(path, name, 0, roots)
        yield ImageSource(source.root, source.name, 0, problem=problem), (stat.st_dev, stat.st_ino)
        return
    stat = os.stat(path)
    identity = (stat.st_dev, stat.st_ino)
    if is_tar_path(path):
        # A shard given twice is read once; inside it, members are distinct records (by offset).
        for member in list_tar(path, extensions):
            yield member, (*identity, member.offset)
        return
    yield ImageSource.from_path(path, name, stat.st_size, roots), identity


def _not_regular(path: str) -> str | None:
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


def _from_list_file(list_path: str, extensions: tuple[str, ...]) -> Iterator[Listed]:
    """Paths in a list file, one per line; relative ones are relative to the list file's folder.

    Blank lines and lines starting with ``#`` are ignored. Listed directories are walked and listed
    tar shards read. The list must be UTF-8 text: a line that is not is an error naming the line.
    """
    try:
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
        path = os.path.join(base, entry)
        if os.path.isdir(path):
            yield from _walk(path, extensions)
        elif os.path.lexists(path):
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


def _walk(root: str, extensions: tuple[str, ...]) -> Iterator[Listed]:
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
            yield ImageSource(root, name, 0, problem=_not_regular(path)), (stat.st_dev, stat.st_ino)
            continue
        if stat_module.S_ISREG(stat.st_mode):
            yield ImageSource(root, name, stat.st_size), (stat.st_dev, stat.st_ino)
        else:
            yield ImageSource(root, name, 0, problem=_not_regular(path)), (stat.st_dev, stat.st_ino)


def has_brace_pattern(text: str) -> bool:
    """Whether ``text`` holds a ``{a,b}`` or ``{000..146}`` group (WebDataset shard notation)."""
    return _BRACE.search(text) is not None


def expand_braces(pattern: str) -> list[str]:
    """Expand shell-style brace groups, left to right, as WebDataset writes shard lists.

    ``{000..003}`` is a numeric range that keeps the zero padding of its bounds; ``{a,b}`` a list.
    Several groups multiply out, the first group varying slowest.

    >>> expand_braces("train-{000..002}.tar")
    ['train-000.tar', 'train-001.tar', 'train-002.tar']
    >>> expand_braces("{a,b}/x-{8..10}.tar")
    ['a/x-8.tar', 'a/x-9.tar', 'a/x-10.tar', 'b/x-8.tar', 'b/x-9.tar', 'b/x-10.tar']
    """
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    body = match.group(1)
    numeric = _RANGE.fullmatch(body)
    if numeric:
        low_text, high_text = numeric.group(1), numeric.group(2)
        low, high = int(low_text), int(high_text)
        if high < low:
            raise ChanstatsError(f"{pattern}: empty range {{{body}}}")
        if high - low >= 10_000_000:
            raise ChanstatsError(f"{pattern}: range {{{body}}} is too long")
        # bash's rule: a bound written with a leading zero pads every value to the wider bound.
        padded = any(len(text) > 1 and text.startswith("0") for text in (low_text, high_text))
        width = max(len(low_text), len(high_text)) if padded else 0
        choices = [f"{value:0{width}d}" for value in range(low, high + 1)]
    else:
        choices = body.split(",")
        if len(choices) < 2:
            raise ChanstatsError(f"{pattern}: {{{body}}} is neither a range {{000..009}} nor a list {{a,b}}")
    return [head + choice + rest for choice in choices for rest in expand_braces(tail)]


_BRACE = re.compile(r"\{([^{}]*(?:,|\.\.)[^{}]*)\}")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")


def read_source(source: ImageSource) -> bytes:
    """The encoded bytes of a file or tar member, read in one go.

    Decoders work from memory (Pillow decodes faster from bytes than from a file, and simplejpeg
    needs them). Raises :class:`~chanstats.errors.BadImageError` for a file that cannot be read,
    or a member that listing found unusable (a link, a device, too large) or that is gone.
    """
    if source.problem is not None:
        raise BadImageError(source.display, source.problem)
    if not source.in_archive:
        return _read_file(source)
    from .tarshards import read_member

    return read_member(source)


def _read_file(source: ImageSource) -> bytes:
    # O_NONBLOCK: a file that became a FIFO after listing must not hang the run; the fstat
    # refuses it before any read. (No effect on reading regular files.)
    try:
        descriptor = os.open(source.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise BadImageError(source.display, f"cannot read: {error.strerror or error}") from None
    with open(descriptor, "rb") as stream:
        if not stat_module.S_ISREG(os.fstat(descriptor).st_mode):
            raise BadImageError(source.display, "not a regular file")
        try:
            return stream.read()
        except OSError as error:
            raise BadImageError(source.display, f"cannot read: {error.strerror or error}") from None
