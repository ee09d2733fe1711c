"""Finding images: directories, single files and ``@list`` files, in a deterministic order.

The order is the contract that makes every later step reproducible: the inputs in the order given,
and inside a directory the files sorted by the bytes of their path relative to that directory.
Hidden files and folders (a name starting with ``.``) are skipped, symlinked folders are followed
once (loops are cut), and a file reached twice (listed twice, or through a link) is kept only the
first time.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

from .errors import ChanstatsError, NoImagesError

# The extensions torchvision's ImageFolder accepts, compared case-insensitively.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageSource:
    """One image to read.

    ``path`` is what to open; ``name`` is the path relative to the input it was found under, used
    for ordering and the listing fingerprint (so a dataset moved elsewhere keeps its fingerprint);
    ``display`` is how messages show it (the input joined with ``name``).
    """

    path: str
    name: str
    display: str
    size: int


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
    seen: set[tuple[int, int]] = set()
    found: list[ImageSource] = []
    for source in _expand(inputs, extensions):
        stat = os.stat(source.path)
        identity = (stat.st_dev, stat.st_ino)
        if identity in seen:
            continue
        seen.add(identity)
        found.append(ImageSource(source.path, source.name, source.display, stat.st_size))
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


def _expand(inputs: list[str], extensions: tuple[str, ...]) -> Iterator[ImageSource]:
    for item in inputs:
        if item.startswith("@"):
            yield from _from_list_file(item[1:], extensions)
        elif os.path.isdir(item):
            yield from _walk(item, extensions)
        elif os.path.isfile(item):
            # A file named explicitly is taken whatever its extension: the user asked for it.
            yield ImageSource(item, os.path.basename(item), item, 0)
        elif os.path.lexists(item):
            raise ChanstatsError(f"{item}: not a regular file or directory")
        else:
            raise ChanstatsError(f"{item}: no such file or directory")


def _from_list_file(list_path: str, extensions: tuple[str, ...]) -> Iterator[ImageSource]:
    """Paths in a list file, one per line; relative ones are relative to the list file's folder.

    Blank lines and lines starting with ``#`` are ignored. Listed directories are walked.
    """
    try:
        with open(list_path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as error:
        raise ChanstatsError(f"@{list_path}: cannot read list file: {error.strerror or error}") from None
    base = os.path.dirname(list_path)
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = os.path.join(base, entry)
        if os.path.isdir(path):
            yield from _walk(path, extensions)
        elif os.path.isfile(path):
            yield ImageSource(path, entry, path, 0)
        else:
            raise ChanstatsError(f"{list_path}:{number}: {entry}: no such file")


def _walk(root: str, extensions: tuple[str, ...]) -> Iterator[ImageSource]:
    """Image files under ``root``, sorted by the bytes of their path relative to ``root``."""
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
        try:
            entries = list(os.scandir(directory))
        except OSError as error:
            raise ChanstatsError(f"{directory}: cannot list folder: {error.strerror or error}") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = f"{relative_dir}/{entry.name}" if relative_dir else entry.name
            if entry.is_dir():
                stack.append(relative)
            elif entry.is_file() and has_image_extension(entry.name, extensions):
                names.append(relative)
    names.sort(key=os.fsencode)
    for name in names:
        path = os.path.join(root, name)
        yield ImageSource(path, name, path, 0)
