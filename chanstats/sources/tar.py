"""Tar shards (WebDataset style) as image sources: list members in the main process, read them in
the workers, never extract anything to disk.

Listing reads only the tar headers of an uncompressed shard (a ``pread`` per member, no data),
keeping regular members whose name has an image extension, in archive order, which is the order
WebDataset streams them in. Hidden members (any path component starting with ``.``), directories
and non-image members are left out, as in a folder. A member with an image extension that is not a
regular file (a symlink, hard link, device, FIFO) or is larger than :data:`MAX_MEMBER_BYTES` is
kept as a *bad image* naming ``shard.tar::member``, so the ``--on-error`` policy applies to it like
to a corrupt file.

Nothing is lost silently. Every header's checksum is verified and the archive must end the way
GNU tar requires (two zero blocks); a ``.tar.gz`` is inflated to its end while listing (by ISA-L,
about twice as fast as zlib), so the CRC-32 and length (ISIZE) of every gzip member are checked. Damage keeps the members read before
it and adds one bad entry named after the shard itself (``shard.tar: damaged after member
m/a.jpg (...); the rest of the shard was not read``), which ``--on-error`` treats like any bad
image: listed under ``skipped`` and counted against ``--max-bad``, or exit 2 under ``fail``.

Reading: an uncompressed shard gives random access: the worker ``pread``s ``size`` bytes at the
member's ``offset_data``. A gzip shard has no random access: a worker keeps one decompressor per
process and reads forward to each member it is given, and the engine gives all the members of a
``.tar.gz`` to one worker, in order, as one piece of work (see
:func:`chanstats.scale.engine.work_units`). So the workers inflate each compressed shard once in
all, whatever their number, with no pixel bytes through pipes and constant memory; compressed
shards are measured in parallel with each other, not within one. Listing inflates each shard once
more (see :class:`_InflatedStream`): the total is two decompression passes. Images are already
compressed, so gzip saves little on a shard: prefer plain ``.tar`` for speed (WebDataset does).
"""

from __future__ import annotations

import gzip
import os
import re
import sys
import tarfile
import zlib
from typing import BinaryIO, Iterator, NamedTuple

from ..errors import BadImageError, ChanstatsError
from . import storage
from .base import ArchiveMember, Encoded, Listed, SourceKind, has_image_extension

try:  # listing inflates with ISA-L: about twice as fast as stock zlib, the same CRC-32 and ISIZE checks
    from isal.isal_zlib import decompressobj as _gzip_inflater
    from isal.isal_zlib import error as _IsalError

    _INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _IsalError)
except ImportError:  # pragma: no cover - isal is a dependency where it has a wheel
    _gzip_inflater, _INFLATE_ERRORS = zlib.decompressobj, (zlib.error,)

# A single image member larger than this is refused rather than read into a worker's memory;
# Pillow's decompression-bomb limit guards the decoded size separately.
MAX_MEMBER_BYTES = 1 << 30

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_GZIP_MAGIC = b"\x1f\x8b"
_BLOCK = 512


def is_tar_path(path: str) -> bool:
    """Whether a file named explicitly is read as a tar shard (by its extension)."""
    return path.lower().endswith(TAR_SUFFIXES)


class Header(NamedTuple):
    """What listing needs from one tar header: the member's name, type flag, size, where its
    data starts in the (decompressed) archive stream, a link's target, and where the member's
    data ends (``offset`` for members that carry no data, such as links and folders)."""

    name: str
    type: bytes
    size: int
    offset: int
    linkname: str
    end: int


class Scan(NamedTuple):
    """The readable headers of an archive, and why the rest was not read (``None``: intact)."""

    headers: list[Header]
    damage: str | None


def list_tar(path: str, extensions: tuple[str, ...], max_member_bytes: int | None = None) -> list[ArchiveMember]:
    """The image members of the tar shard at ``path``, in archive order.

    A damaged shard gives the members before the damage, then one bad source displayed as the
    shard itself whose ``problem`` says where the damage is. ``max_member_bytes`` defaults to
    :data:`MAX_MEMBER_BYTES`. A file that is no tar at all (empty, or no valid first header) is
    that one bad source. Raises :class:`ChanstatsError` naming the shard when it cannot be opened.
    """
    if max_member_bytes is None:
        max_member_bytes = MAX_MEMBER_BYTES
    compressed = _is_gzip(path)
    scan = scan_archive(path, compressed)
    members: list[ArchiveMember] = []
    for header in scan.headers:
        name = header.name
        if header.type == tarfile.DIRTYPE or not has_image_extension(name, extensions) or _is_hidden(name):
            continue
        problem = _problem(header, max_member_bytes)
        members.append(ArchiveMember(path, name, header.size, problem, header.offset, compressed))
    if scan.damage is not None:
        members.append(ArchiveMember(path, "", 0, scan.damage, -1, compressed))
    return members


def scan_headers(path: str, compressed: bool) -> list[Header]:
    """Every member header of an intact tar archive, in archive order; :class:`ChanstatsError`
    naming the shard and the damage otherwise."""
    scan = scan_archive(path, compressed)
    if scan.damage is not None:
        raise ChanstatsError(f"{path}: {scan.damage}")
    return scan.headers


def scan_archive(path: str, compressed: bool) -> Scan:
    """The headers of the archive at ``path`` that can be trusted, and what damage stopped the scan.

    Plain ustar/GNU/v7 headers, GNU long names (``L``/``K``) and pax headers (``x``/``g``) are
    read here, with the same results as :mod:`tarfile`; unlike tarfile, an invalid header after
    the first is damage, not the end of the archive.
    """
    try:
        with _open(path) as handle:
            blocks = _InflatedStream(handle) if compressed else _PlainStream(handle)
            headers, damage, stop = _scan(blocks)
            gzip_damage = blocks.finish()
    except OSError as error:
        raise ChanstatsError(f"{path}: cannot read: {error.strerror or error}") from None
    if gzip_damage is not None:
        # The gzip layer's verdict comes first: tar damage found in data that fails its data check
        # is a consequence, and members in an unverified gzip member cannot be trusted.
        damage, stop = gzip_damage, min(stop, blocks.trusted_end)
    elif damage is not None and not headers:
        # Not one valid header: no tar at all (or an empty file). Still one bad entry rather than an
        # error that stops the run, so that --on-error skip lists it like any other unreadable file.
        kind = "gzip tar" if compressed else "tar"
        return Scan([], f"not a readable {kind} archive ({damage})")
    if damage is None:
        return Scan(headers, None)
    kept = [header for header in headers if header.end <= stop]
    if kept:
        return Scan(kept, f"damaged after member {kept[-1].name} ({damage}); the rest of the shard was not read")
    return Scan(kept, f"damaged ({damage}); no member of the shard was read")


_POSIX_MAGIC = b"ustar\x0000"
_ZERO_BLOCK = bytes(_BLOCK)
_ENCODING = sys.getfilesystemencoding()
_REGULAR_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
# Types that tarfile knows and that carry no data in the archive (their size field is ignored).
_NO_DATA_TYPES = frozenset([tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE])
_EXTENSION_TYPES = frozenset([tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE])


def _scan(stream) -> tuple[list[Header], str | None, float]:
    """Walk the headers: ``(headers, damage or None, end of the trusted part)``.

    The loop is the listing's hot path (one iteration per member): plain headers cost one read,
    one checksum and a few slices.
    """
    headers: list[Header] = []
    position = 0
    extended: dict[str, str] = {}  # long names and pax values waiting for their member's header
    pax_global: dict[str, str] = {}
    while True:
        block = stream.read(position, _BLOCK)
        if len(block) < _BLOCK:
            return headers, _short_read(stream, position, headers), min(position, stream.end)
        if block == _ZERO_BLOCK:
            following = stream.read(position + _BLOCK, _BLOCK)
            if following == _ZERO_BLOCK:
                return headers, None, position  # two zero blocks: the end; anything after is padding
            if len(following) < _BLOCK:
                return headers, f"ends at byte {stream.end} after a single zero block; a complete archive ends with two", position
            return headers, f"a zero block at byte {position} is followed by more data", position
        kind = block[156:157]
        problem = _header_problem(block)
        if problem is None:
            size = _size(block)
            problem = "bad size field" if size is None else None
        if problem is not None:
            return headers, f"{problem} in the header at byte {position}", position
        data = position + _BLOCK
        if kind in _EXTENSION_TYPES:
            payload = stream.read(data, size)
            if len(payload) < size:
                return headers, _short_read(stream, data, headers), min(position, stream.end)
            problem = _read_extension(kind, payload, extended, pax_global)
            if problem is not None:
                return headers, f"{problem} in the header at byte {position}", position
            position = data + _padded(size)
            continue
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
        if extended or pax_global:
            text, linkname, size = _apply_extended(text, linkname, size, extended, pax_global)
            extended = {}
        if kind == tarfile.GNUTYPE_SPARSE:
            data = _skip_sparse_extensions(stream, block, data)
        if kind in _NO_DATA_TYPES:
            end = stored = data
        else:
            end, stored = data + size, data + _padded(size)
        headers.append(Header(text, kind, size, data, linkname, end))
        position = stored


def _header_problem(block: bytes) -> str | None:
    """Why a 512-byte block is not a valid tar header (``None`` when it is).

    The checksum is the sum of the header's bytes with its own field read as spaces; like GNU tar
    and tarfile, the sum of signed bytes is accepted too (some old tars wrote that).
    """
    try:
        checksum = int(block[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return "unreadable header checksum"
    unsigned = sum(block) - sum(block[148:156]) + 256
    if checksum == unsigned:
        return None
    signed = unsigned - 256 * sum(1 for byte in block if byte > 127) + 256 * sum(1 for byte in block[148:156] if byte > 127)
    return None if checksum == signed else "bad header checksum"


def _size(block: bytes) -> int | None:
    field = block[124:136]
    if field[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        if field[0] == 0xFF:
            return None  # negative
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return None


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _short_read(stream, position: int, headers: list[Header]) -> str:
    """Why the stream ended where a header (or an extension's data) was due."""
    end = stream.end
    if headers and end < headers[-1].end:
        return f"cut short inside member {headers[-1].name}: the data ends at byte {end}"
    return f"ends at byte {end} without the end-of-archive marker (two zero blocks)"


_PAX_RECORD = re.compile(rb"(\d+) ")


def _read_extension(kind: bytes, payload: bytes, extended: dict[str, str], pax_global: dict[str, str]) -> str | None:
    """Record a GNU long name/link or pax header for the member that follows; a problem or ``None``."""
    if kind == tarfile.GNUTYPE_LONGNAME:
        extended["path"] = payload.split(b"\0", 1)[0].decode(_ENCODING, "surrogateescape")
        return None
    if kind == tarfile.GNUTYPE_LONGLINK:
        extended["linkpath"] = payload.split(b"\0", 1)[0].decode(_ENCODING, "surrogateescape")
        return None
    records = pax_global if kind == tarfile.XGLTYPE else extended
    index = 0
    while index < len(payload) and payload[index] != 0:
        match = _PAX_RECORD.match(payload, index)
        if match is None or int(match.group(1)) <= len(match.group(0)):
            return "bad pax header"
        record_end = index + int(match.group(1))
        record = payload[match.end() : record_end]
        if record_end > len(payload) or not record.endswith(b"\n") or b"=" not in record:
            return "bad pax header"
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        index = record_end
    return None


def _apply_extended(name: str, linkname: str, size: int, extended: dict[str, str], pax_global: dict[str, str]) -> tuple[str, str, int]:
    values = {**pax_global, **extended}
    if "path" in values:
        name = values["path"]
    if "linkpath" in values:
        linkname = values["linkpath"]
    if "size" in values:
        try:
            size = int(values["size"])
        except ValueError:
            pass  # tarfile keeps the header's size too
    return name, linkname, size


def _skip_sparse_extensions(stream, block: bytes, data: int) -> int:
    """Where an old GNU sparse member's data starts: after its sparse extension blocks."""
    extended = block[482]
    while extended:
        extension = stream.read(data, _BLOCK)
        data += _BLOCK
        extended = extension[504] if len(extension) == _BLOCK else 0
    return data


class _PlainStream:
    """An uncompressed archive: random access, every byte as stored."""

    def __init__(self, handle: BinaryIO) -> None:
        if isinstance(handle, storage.RemoteFile):
            self._pread, self.end = handle.pread, handle.size
        else:
            fd = handle.fileno()
            self._pread, self.end = lambda count, position: os.pread(fd, count, position), os.fstat(fd).st_size
        self.trusted_end = self.end

    def read(self, position: int, count: int) -> bytes:
        return self._pread(count, position) if position < self.end else b""

    def finish(self) -> str | None:
        return None


class _InflatedStream:
    """The uncompressed stream of a gzip file, read forward once, every gzip member verified.

    Why listing inflates the whole stream: a gzip member's CRC-32 and length are stored after its
    data, so a byte can only be trusted once its whole gzip member has been inflated. Listing has
    to inflate up to the last header anyway (a gzip stream has no random access), so going on to
    the end costs only the archive's padding, and then every member a worker will read is known to
    be good (or known to be lost) before any pixel is measured. The listing cannot do without
    inflating: the tar headers are inside the compressed stream. The worker that measures the
    shard inflates the same bytes once more, deterministically; it cannot check the CRC of a gzip
    member it stops reading inside.

    The inflater (ISA-L's, else zlib's) with ``wbits=31`` checks each gzip member's header, CRC-32
    and ISIZE itself; members
    are inflated one after the other (a ``.tar.gz`` may hold several, e.g. written by ``bgzip`` or
    by concatenation), NUL padding between them is skipped as gzip does, and anything else after
    the last one is ignored (gzip's "trailing garbage"), since the tar layer checks its own end.
    Output comes in pieces of at most :data:`PIECE` bytes, so a gzip bomb cannot fill memory.
    """

    CHUNK = 1 << 20  # compressed bytes read at once
    PIECE = 1 << 20  # largest piece of output held

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._input = b""  # compressed bytes not yet given to zlib
        self._input_offset = 0  # their offset in the file
        self._inflater = None
        self._member_offset = 0  # where the gzip member being inflated starts in the file
        self._piece = b""
        self._piece_start = 0  # uncompressed offset of self._piece
        self._exhausted = False
        self.produced = 0  # uncompressed bytes inflated so far
        self.verified_end = 0  # uncompressed end of the last gzip member whose CRC-32 and ISIZE matched
        self.problem: str | None = None
        self.trusted_end = 0

    @property
    def end(self) -> int:
        """The stream's uncompressed length (meaningful once a read came back short)."""
        return self.produced

    def read(self, position: int, count: int) -> bytes:
        """``count`` bytes from uncompressed ``position`` (fewer at the end); positions only grow."""
        while position >= self._piece_start + len(self._piece):
            if not self._next_piece():
                return b""
        start = position - self._piece_start
        data = self._piece[start : start + count]
        while len(data) < count and self._next_piece():
            data += self._piece[: count - len(data)]
        return data

    def finish(self) -> str | None:
        """Inflate to the end; the damage found in the gzip layer, or ``None``."""
        while self._next_piece():
            pass
        if self.problem is None:
            self.trusted_end = self.produced
        return self.problem

    def _next_piece(self) -> bool:
        self._piece_start += len(self._piece)
        self._piece = b""
        while not self._piece and not self._exhausted:
            self._piece = self._inflate()
        return bool(self._piece)

    def _inflate(self) -> bytes:
        if self._inflater is None and not self._start_member():
            self._exhausted = True
            return b""
        if not self._input and not self._fill():
            # Cut short: what was inflated is what was compressed (deflate output depends only on
            # the bytes before it), so members that end before the cut are kept.
            self._fail(f"the gzip stream ends early at compressed byte {self._input_offset}", self.produced)
            return b""
        inflater = self._inflater
        try:
            output = inflater.decompress(self._input, self.PIECE)
        except _INFLATE_ERRORS as error:
            # Wrong data somewhere in this gzip member: none of its bytes can be trusted.
            reason = _inflate_reason(error)
            self._fail(f"gzip data error ({reason}) in the gzip member at compressed byte {self._member_offset}", self.verified_end)
            return b""
        left = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
        self._input_offset += len(self._input) - len(left)
        self._input = left
        self.produced += len(output)
        if inflater.eof:
            self.verified_end = self.produced
            self._inflater = None
        return output

    def _start_member(self) -> bool:
        """Begin the next gzip member; ``False`` at the end of the file."""
        while True:
            stripped = self._input.lstrip(b"\0")
            self._input_offset += len(self._input) - len(stripped)
            self._input = stripped
            if len(self._input) >= 2 or not self._fill():
                break
        if self._input[:2] != _GZIP_MAGIC:
            return False  # the end, or trailing bytes that are no gzip member
        self._member_offset = self._input_offset
        self._inflater = _gzip_inflater(31)
        return True

    def _fill(self) -> bool:
        more = self._handle.read(self.CHUNK)
        self._input += more
        return bool(more)

    def _fail(self, problem: str, trusted_end: int) -> None:
        self.problem = problem
        self.trusted_end = trusted_end
        self._exhausted = True


def read_member(source: ArchiveMember) -> bytes:
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
    except (OSError, EOFError, zlib.error) as error:
        _gzip_reader.forget()
        raise BadImageError(
            source.display, f"cannot read from the shard (changed since listing?): {getattr(error, 'strerror', None) or error}"
        ) from None
    if len(data) != source.size:
        raise BadImageError(
            source.display, f"member cut short: {len(data)} of {source.size} bytes (shard truncated or changed since listing)"
        )
    return data


def _inflate_reason(error: Exception) -> str:
    """What an inflater says is wrong, without its error number: zlib's ``Error -3 while
    decompressing data: incorrect data check`` and ISA-L's ``Error -6 Incorrect checksum found``
    both become the reason alone.

    >>> _inflate_reason(zlib.error("Error -3 while decompressing data: incorrect data check"))
    'incorrect data check'
    >>> _inflate_reason(ValueError("Error -6 Incorrect checksum found"))
    'incorrect checksum found'
    """
    text = str(error).split(": ", 1)[-1]
    match = re.fullmatch(r"Error -?\d+ (.*)", text)
    if match:
        text = match.group(1)
    return text[:1].lower() + text[1:]


def _open(path: str) -> BinaryIO:
    """The shard at ``path``, local or remote (a URL: read through range requests)."""
    return storage.open_file(path) if storage.is_url(path) else open(path, "rb")  # type: ignore[return-value]


def _is_gzip(path: str) -> bool:
    try:
        with _open(path) as handle:
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

    def forget(self) -> None:
        """Drop the stream after an error, so the next member starts from a fresh one."""
        self._path = None

    def _open(self, path: str) -> None:
        if self._owner == os.getpid() and self._stream is not None:
            self._stream.close()
        self._owner, self._path, self._stream = os.getpid(), path, None
        self._stream = gzip.open(_open(path) if storage.is_url(path) else path, "rb")


_gzip_reader = _GzipReader()


def list_members(path: str, extensions: tuple[str, ...]) -> Iterator[Listed]:
    """The image members of the shard at ``path`` with their identities: a shard given twice is
    read once; inside it, members are distinct records (by offset)."""
    stat = os.stat(path)
    for member in list_tar(path, extensions):
        yield member, (stat.st_dev, stat.st_ino, member.offset)


def _unit(member: ArchiveMember):
    """A gzip-compressed shard is read from its start: all its members are one piece of work."""
    return (member.root, -1) if member.compressed else None


def _read(member: ArchiveMember) -> Encoded:
    """A member's bytes: from a local shard (or a compressed remote one, inflated as it streams),
    or with one range request from an uncompressed remote shard."""
    if storage.is_url(member.root) and not member.compressed:
        return Encoded(lambda: storage.read(member))
    return Encoded(lambda: read_member(member))


KIND = SourceKind("tar shard", ArchiveMember, _read,
                  claims=is_tar_path, list=list_members, unit=_unit)

