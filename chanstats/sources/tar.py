"""Tar shards (WebDataset style) as image sources: list members in the main process, read them in
the workers, never extract anything to disk.

Listing reads only the tar headers of an uncompressed shard (a seek per member, no data), keeping
regular members whose name has an image extension, in archive order, which is the order
WebDataset streams them in. Hidden members (any path component starting with ``.``), directories
and non-image members are left out, as in a folder. A member with an image extension that is not a
regular file (a symlink, hard link, device, FIFO) or is larger than :data:`MAX_MEMBER_BYTES` is
kept as a *bad image* naming ``shard.tar::member``, so the ``--on-error`` policy applies to it like
to a corrupt file.

Reading: an uncompressed shard gives random access: the worker ``pread``s ``size`` bytes at the
member's ``offset_data``. A gzip shard has no random access, and the choice here is to let each
worker stream it: a worker keeps one decompressor per process and reads forward to each member it
is given. Work reaches workers in listing order, so each worker decompresses each ``.tar.gz`` at
most about once (total cost: workers × decompression, no pixel bytes through pipes, constant
memory). The alternative, decompressing in the main process and shipping member bytes to the
workers, makes the main process the bottleneck and needs engine changes. Images are already
compressed, so gzip saves little on a shard: prefer plain ``.tar`` for speed (WebDataset does).
"""

from __future__ import annotations

import gzip
import os
import sys
import tarfile
from typing import BinaryIO, NamedTuple

from ..errors import BadImageError, ChanstatsError
from .base import ImageSource, has_image_extension

# A single image member larger than this is refused rather than read into a worker's memory;
# Pillow's decompression-bomb limit guards the decoded size separately.
MAX_MEMBER_BYTES = 1 << 30

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_GZIP_MAGIC = b"\x1f\x8b"


def is_tar_path(path: str) -> bool:
    """Whether a file named explicitly is read as a tar shard (by its extension)."""
    return path.lower().endswith(TAR_SUFFIXES)


class Header(NamedTuple):
    """What listing needs from one tar header: the member's name, type flag, size, where its
    data starts in the (decompressed) archive stream, and a link's target."""

    name: str
    type: bytes
    size: int
    offset: int
    linkname: str


def list_tar(path: str, extensions: tuple[str, ...], max_member_bytes: int | None = None) -> list[ImageSource]:
    """The image members of the tar shard at ``path``, in archive order.

    ``max_member_bytes`` defaults to :data:`MAX_MEMBER_BYTES`. Raises :class:`ChanstatsError`
    naming the shard when it is not a readable plain or gzip tar.
    """
    if max_member_bytes is None:
        max_member_bytes = MAX_MEMBER_BYTES
    compressed = _is_gzip(path)
    members: list[ImageSource] = []
    for header in scan_headers(path, compressed):
        name = header.name
        if header.type == tarfile.DIRTYPE or not has_image_extension(name, extensions) or _is_hidden(name):
            continue
        problem = _problem(header, max_member_bytes)
        members.append(ImageSource(path, name, header.size, header.offset, compressed, problem, in_archive=True))
    return members


def scan_headers(path: str, compressed: bool) -> list[Header]:
    """Every member header of a tar archive, in archive order.

    A fast reader of plain ustar/GNU/v7 headers (name, type, size only: about ten times faster
    than :mod:`tarfile`, which decodes every field of every header) handles the archives
    WebDataset and ``tar`` write; an archive with anything else (pax or GNU long-name headers,
    sparse files, base-256 sizes, a bad checksum) is read again with :mod:`tarfile`, so the result
    is always tarfile's.
    """
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as stream:
            headers = _fast_headers(stream)
        if headers is not None:
            return headers
        return _tarfile_headers(path, compressed)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, OSError, ValueError) as error:
        kind = "gzip tar" if compressed else "tar"
        reason = getattr(error, "strerror", None) or error
        raise ChanstatsError(f"{path}: not a readable {kind} archive ({reason})") from None


_FAST_TYPES = frozenset(b"01234567\0")
_REGULAR_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_POSIX_MAGIC = b"ustar\x0000"
_ZERO_BLOCK = bytes(512)
_ENCODING = sys.getfilesystemencoding()


def _fast_headers(stream: BinaryIO) -> list[Header] | None:
    """Headers read the way :mod:`tarfile` reads them, or ``None`` to let tarfile do it."""
    headers: list[Header] = []
    position = 0
    while True:
        stream.seek(position)
        block = stream.read(512)
        if len(block) < 512 or block == _ZERO_BLOCK:
            # End of archive (or a truncated one): leave tarfile to judge anything unusual.
            return headers if headers and (not block or block == _ZERO_BLOCK) else None
        if block[156] not in _FAST_TYPES or block[124] & 0x80:
            return None  # pax/GNU extension headers or a base-256 size
        try:
            checksum = int(block[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
            size = int(block[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            return None
        if checksum != sum(block) - sum(block[148:156]) + 256:
            return None
        kind = block[156:157]
        name = block[:100].split(b"\0", 1)[0]
        if block[257:265] == _POSIX_MAGIC:
            prefix = block[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        if kind == tarfile.AREGTYPE and name.endswith(b"/"):
            kind = tarfile.DIRTYPE  # old v7 archives mark folders by a trailing slash
        text = name.decode(_ENCODING, "surrogateescape")
        if kind == tarfile.DIRTYPE:
            text = text.rstrip("/")
        linkname = block[157:257].split(b"\0", 1)[0].decode(_ENCODING, "surrogateescape")
        headers.append(Header(text, kind, size, position + 512, linkname))
        position += 512
        if kind in _REGULAR_TYPES:
            position += -(-size // 512) * 512


def _tarfile_headers(path: str, compressed: bool) -> list[Header]:
    headers = []
    with tarfile.open(path, "r:gz" if compressed else "r:") as archive:
        for member in archive:
            headers.append(Header(member.name, member.type, member.size, member.offset_data, member.linkname))
        archive.members = []  # tarfile keeps every header it read; the list above is enough
    return headers


def read_member(source: ImageSource) -> bytes:
    """A member's bytes, read straight from its shard (no extraction).

    Raises :class:`BadImageError` naming ``shard.tar::member`` when the shard cannot be read or
    the member is cut short (the shard changed or was truncated since listing).
    """
    try:
        if source.compressed:
            data = _gzip_reader.read(source.path, source.offset, source.size)
        else:
            with open(source.path, "rb") as handle:
                data = os.pread(handle.fileno(), source.size, source.offset)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise BadImageError(source.display, f"cannot read from the shard: {getattr(error, 'strerror', None) or error}") from None
    if len(data) != source.size:
        raise BadImageError(
            source.display, f"member cut short: {len(data)} of {source.size} bytes (shard truncated or changed since listing)"
        )
    return data


def _is_gzip(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == _GZIP_MAGIC
    except OSError as error:
        raise ChanstatsError(f"{path}: cannot read: {error.strerror or error}") from None


def _is_hidden(name: str) -> bool:
    return any(part.startswith(".") and part not in (".", "..") for part in name.split("/"))


def _problem(header: Header, max_member_bytes: int) -> str | None:
    kind = header.type
    if kind == tarfile.SYMTYPE:
        return f"tar member is a symbolic link (to {header.linkname}), not a regular file"
    if kind == tarfile.LNKTYPE:
        return f"tar member is a hard link (to {header.linkname}), not a regular file"
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        return "tar member is a device, not a regular file"
    if kind == tarfile.FIFOTYPE:
        return "tar member is a FIFO, not a regular file"
    if kind not in _REGULAR_TYPES:
        return f"tar member of type {kind!r} is not a regular file"
    if header.size > max_member_bytes:
        return f"tar member of {header.size:,} bytes is larger than the {max_member_bytes:,}-byte limit"
    return None


class _GzipReader:
    """One forward-reading decompressor per process for ``.tar.gz`` members.

    Keyed by process id: a forked worker must not share its parent's file position.
    """

    def __init__(self) -> None:
        self._owner = -1
        self._path: str | None = None
        self._stream: BinaryIO | None = None

    def read(self, path: str, offset: int, size: int) -> bytes:
        if self._owner != os.getpid() or self._path != path or self._stream is None or self._stream.tell() > offset:
            self._open(path)
        assert self._stream is not None
        self._stream.seek(offset)  # forward: decompress and discard up to the member
        return self._stream.read(size)

    def _open(self, path: str) -> None:
        if self._owner == os.getpid() and self._stream is not None:
            self._stream.close()
        self._owner, self._path, self._stream = os.getpid(), path, None
        self._stream = gzip.open(path, "rb")


_gzip_reader = _GzipReader()
