"""What every kind of image source shares: :class:`ImageSource`, the default extensions, and the
identity used to read a file only once.

Each kind of source (:mod:`~chanstats.sources.folders`, :mod:`~chanstats.sources.tar`) imports only
this module; :mod:`~chanstats.sources.listing` dispatches between them.
"""

from __future__ import annotations

import os
import stat as stat_module
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import ChanstatsError


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
            shown = self.root  # the damaged rest of a shard (see chanstats.sources.tar)
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


# A source and its identity: (dev, inode) of a file, (dev, inode, offset) of a tar member.
Listed = tuple[ImageSource, tuple[int, ...]]
