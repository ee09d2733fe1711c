"""A cache of per-item measurements, so that a rerun decodes only new and changed items.

Each item's exact :class:`~chanstats.measure.Measurement` (what a worker computes for it: integer
sums, histogram, per-sample rows, size) is kept in one SQLite file, keyed by

- the item's *content identity*: a file's absolute path, size and modification time in
  nanoseconds (as the listing's one ``stat`` found them, see
  :class:`~chanstats.sources.base.FileRun`; stat-ed here where the listing did not); a
  container's (tar shard, Parquet or NumPy file) path, size and mtime plus the item's place in
  it (member offset and name, row, key); an object's URL and version (ETag);
  or, with ``verify="hash"``, a BLAKE2b digest of the item's bytes instead (mtimes that cannot be
  trusted: a fresh checkout, a copy);
- the *context*: chanstats' version, the recorded options that decide the numbers (not the
  BatchNorm settings nor the error policy), and Pillow's and its JPEG library's versions, which
  decide the decoded pixels. The compiled kernel is left out on purpose: it gives the same numbers.

With a ``--transform`` or random video clips, per-sample seeds come from the listing index, so
the index enters the key too (an insertion invalidates the items after it); the transform must be
data (a YAML/JSON spec, an albumentations pipeline), whose text and the torch, torchvision and
albumentations versions enter the context: a Python transform (``module:attr``, an object) cannot
be identified by content and the cache does not apply. Python datasets have no content identity
either. Bad images are never cached.

The common measurement (one sample of integer pixels, no nodata, no histogram) is stored as
fixed-width numbers and reused a chunk at a time without a per-image object
(:mod:`~chanstats.scale.cached_chunk`); any other is stored pickled and compressed.

Safety: workers only read (one connection per process); the main process writes each chunk's new
entries in one transaction (SQLite in WAL mode: atomic, concurrent runs wait for each other,
kill -9 loses at most the chunk being written). Every entry carries a CRC-32 of its bytes,
checked when read; a file that is not a usable cache is ignored for the run with one note (one
of an older cache schema is emptied instead). A file's size and mtime are read again after
measuring it, and its entry is stored only when they are still the key's (it did not change
since the listing); entries of a file modified in the last two seconds are not stored (its
mtime could repeat).

Size: the entries' bytes are bounded by ``max_size``; past it, the least recently used entries
go first (an entry is marked used when a run reuses it, at most once an hour).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sqlite3
import sys
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from .._version import __version__
from ..sources.base import ContainedItem, Decoded, ImageSource, Listing, RemoteImageFile
from .cached_chunk import TAG as COMPACT
from .cached_chunk import CompactHits, assemble, encode_compact

SCHEMA = 2  # 1: entries keyed by a BLOB primary key (twice the index searches of an id)
FILE_NAME = "measurements.sqlite"
PICKLED = b"P"  # an entry's first byte: a pickled measurement (a compact one starts with COMPACT)
DEFAULT_MAX_SIZE = 2 * 1024**3  # bytes of entries
VERIFY = ("stat", "hash")
TOUCH_AFTER = 3600  # seconds: a reused entry's last-use stamp is renewed at most this often
RECENT = 2.0  # seconds: a file modified this recently may change again within its mtime's step
BUSY_TIMEOUT = 30.0  # seconds a run waits for another that is writing the same cache
PRESENCE_SAMPLE = 1000  # keys looked up to estimate how many images a run must measure
LOOKUP_BATCH = 2000  # keys per SQL query (SQLite allows 32,766 parameters)
IN_PROCESS_STEP = 2048  # images per chunk when the main process measures (mostly reuses) them itself
MOSTLY_REUSED = 0.1  # at most this share of images to measure: in-process chunks may be large
# Whether this process measures a run itself rather than start workers (see few_to_measure):
# estimated from the bytes to decode (PNG and JPEG decode at roughly 50 MB/s on one core), a
# cost per measured image, and one per reused image (a stat, a key, a lookup: about 10 µs).
POOL_START_SECONDS = 0.02  # forked workers start fast: a pool of 2 already beat this process on 5,000 reused images
DECODE_BYTES_PER_SECOND = 50e6
SECONDS_PER_IMAGE = 100e-6
SECONDS_PER_REUSE = 10e-6

# Options of the record that do not change any item's measurement (only the run's totals, the
# BatchNorm simulation or which items are listed): left out of the key so they can change freely.
_NOT_MEASURING = frozenset({
    "inputs", "extensions", "on_error", "max_bad", "convention", "momentum", "batch_size", "shuffle",
    "drop_last", "batches", "sample", "listing", "column",
})


def default_directory() -> str:
    """``${XDG_CACHE_HOME:-~/.cache}/chanstats/measurements``: where ``--cache default`` keeps
    the cache (``CHANSTATS_CACHE_HOME`` overrides it, which the test suite uses)."""
    override = os.environ.get("CHANSTATS_CACHE_HOME")
    if override:
        return override
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "chanstats", "measurements")


def parse_size(text: str | int) -> int:
    """Bytes from ``"500M"``, ``"2G"``, ``"1.5GiB"`` or a plain number (binary units).

    >>> parse_size("2G"), parse_size("512k"), parse_size(1000)
    (2147483648, 524288, 1000)
    """
    if isinstance(text, int):
        return text
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    factor = 1
    for suffix, multiple in (("k", 1024), ("m", 1024**2), ("g", 1024**3), ("t", 1024**4)):
        if value.endswith(suffix):
            value, factor = value[:-1], multiple
            break
    try:
        size = int(float(value) * factor)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (such as 500M or 2G)") from None
    if size <= 0:
        raise ValueError(f"{text!r}: the cache size must be positive")
    return size


@dataclass(frozen=True)
class CacheSettings:
    """Where the cache is and how items are identified: ``verify`` ``"stat"`` (path, size and
    mtime) or ``"hash"`` (the bytes' BLAKE2b); ``max_size`` bounds its entries' bytes."""

    directory: str
    verify: str = "stat"
    max_size: int = DEFAULT_MAX_SIZE

    def __post_init__(self) -> None:
        if self.verify not in VERIFY:
            raise ValueError(f"cache verify must be one of {', '.join(VERIFY)}, not {self.verify!r}")

    @property
    def path(self) -> str:
        return os.path.join(self.directory, FILE_NAME)


_ACTIVE: list[CacheSettings | None] = [None]


@contextmanager
def cache_in_effect(settings: CacheSettings | None) -> Iterator[None]:
    """Runs inside use ``settings`` (``None``: no cache)."""
    _ACTIVE.append(settings)
    try:
        yield
    finally:
        _ACTIVE.pop()


def active_settings() -> CacheSettings | None:
    """The cache the current run should use, if any."""
    return _ACTIVE[-1]


def _note(text: str) -> None:
    print(f"chanstats: cache: {text}", file=sys.stderr)


def context_key(record: dict[str, Any], transform: Any, verify: str) -> bytes | None:
    """What decides an item's numbers besides its content, hashed; ``None`` when the transform is
    code the cache cannot identify by content."""
    parts: dict[str, Any] = {
        "schema": SCHEMA, "chanstats": __version__, "verify": verify,
        "options": {k: v for k, v in sorted(record.items()) if k not in _NOT_MEASURING},
        "pillow": _pillow_versions(),
    }
    if transform is not None:
        if transform.reference is not None or transform.pickled is not None:
            return None
        parts["transform"] = [transform.steps_json, transform.prefix_json, transform.albumentations_json]
        parts["libraries"] = _versions("torch", "torchvision", "albumentations")
    text = json.dumps(parts, sort_keys=True, default=repr).encode()
    return hashlib.blake2b(text, digest_size=16).digest()


def _pillow_versions() -> list[str | None]:
    import PIL
    from PIL import features

    return [PIL.__version__, features.version("jpg"), features.version("zlib")]


def _versions(*names: str) -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _connect(path: str, readonly: bool) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    if readonly:
        connection.execute("PRAGMA query_only=1")
    return connection


def _open_store(path: str) -> sqlite3.Connection:
    """The cache file at ``path``, created when missing and emptied when an older chanstats wrote
    it (its entries are keyed otherwise: none could be reused); raises ``sqlite3.DatabaseError``
    (or ``OSError``) when it is not a usable cache, such as one of a newer chanstats."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    connection = _connect(path, readonly=False)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # WAL: commits stay atomic, fsync at checkpoints
        connection.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: the key index stays in memory
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        connection.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
        (schema,) = connection.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        older = schema.isdigit() and int(schema) < SCHEMA
        if older:
            connection.execute("DROP TABLE IF EXISTS entries")
            connection.execute("DROP TABLE IF EXISTS formats")
            connection.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (str(SCHEMA),))
        if older or schema == str(SCHEMA):
            # A rowid table, looked up through a unique index on ``id`` (the key's first 8 bytes
            # as an integer): rows are appended and only the small index takes random inserts,
            # and an integer index is searched faster than one of 20-byte keys. The whole key is
            # kept and compared, so two keys sharing an id are a miss, never a wrong entry. No
            # index on ``used``: eviction is rare and may sort.
            connection.execute("CREATE TABLE IF NOT EXISTS entries (id INTEGER NOT NULL, key BLOB NOT NULL, "
                               "value BLOB NOT NULL, checksum INTEGER NOT NULL, size INTEGER NOT NULL, "
                               "used INTEGER NOT NULL)")
            connection.execute("CREATE UNIQUE INDEX IF NOT EXISTS entry_ids ON entries (id)")
            connection.execute("CREATE TABLE IF NOT EXISTS formats (tag BLOB PRIMARY KEY, value BLOB NOT NULL)")
        connection.execute("COMMIT")
    except BaseException:
        connection.close()
        raise
    if schema != str(SCHEMA) and not older:
        connection.close()
        raise sqlite3.DatabaseError(f"written with cache schema {schema} by a newer chanstats, "
                                    f"this one uses {SCHEMA}")
    if older:
        _note(f"{path} was written by an older chanstats (cache schema {schema}): emptied, "
              "its entries are keyed otherwise")
    return connection


def entry_id(key: bytes) -> int:
    """The integer a key is looked up by: its first 8 bytes."""
    return int.from_bytes(key[:8], "little", signed=True)


def checksum(value: bytes) -> int:
    """An entry's checksum, which finds a damaged value (a flipped bit, a stray write)."""
    return zlib.crc32(value)


@dataclass
class Drained:
    """What a chunk's measuring left for the main process: new entries, entries to mark used,
    how many items were reused and measured, and why reading failed (if it did)."""

    fresh: list[tuple[bytes, bytes, int]] = field(default_factory=list)
    formats: dict[bytes, bytes] = field(default_factory=dict)
    touched: list[bytes] = field(default_factory=list)
    reused: int = 0
    measured: int = 0
    unkeyed: int = 0  # measured items with nothing stable to key them by (see CachedMeasurer._key)
    broken: str | None = None


class CachedMeasurer:
    """A measurer that takes what the cache holds and measures the rest; picklable (workers open
    their own read-only connection). The engine hands it whole chunks (:meth:`measure_chunk`): a
    chunk's entries are looked up in one query and reused ones are packed without a per-image
    object; new measurements and reuses are collected for the main process (:class:`Drained`)."""

    def __init__(self, measurer: Callable[[int, ImageSource], Any], path: str, context: bytes, verify: str,
                 by_index: bool, started: float) -> None:
        self.measurer = measurer
        self.transform = getattr(measurer, "transform", None)
        self.path = path
        self.context = context
        self.verify = verify
        self.by_index = by_index
        self.started = started
        self._reset()

    def _reset(self) -> None:
        self._connection: sqlite3.Connection | None = None
        self._pid = -1
        self._last_stat: tuple[str | None, tuple[int, int] | None] = (None, None)
        self._roots: dict[str, str] = {}
        self._formats: dict[bytes, Any] = {}
        self._tags: dict[Any, bytes] = {}
        self._drained = Drained()
        self._buffer: memoryview | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # Images per chunk when this process measures: set by MeasurementCache.few_to_measure when
    # nearly all are reused (the engine's small default otherwise: new entries are stored often).
    in_process_step: int | None = None

    def lacking(self, sources: Sequence[ImageSource], offset: int) -> tuple[int, int]:
        """About how many of ``sources`` (listing indices from ``offset``) the cache lacks, and
        their bytes: estimated from an evenly spread sample of them (looking every item up here
        would cost as much again as the run's own lookups). Decides whether a worker pool is worth
        starting (see :meth:`MeasurementCache.few_to_measure`)."""
        step = max(1, len(sources) // PRESENCE_SAMPLE)
        positions = range(0, len(sources), step)
        sample = [sources[position] for position in positions]
        keys = [None if source.problem else self._key(offset + position, source)[0]
                for position, source in zip(positions, sample)]
        present = self._present([key for key in keys if key is not None])
        self.close()  # workers forked next open their own connection, never a copy of this one
        if present is None:
            return len(sources), sum(source.size for source in sample) * step
        missing = [source.size for source, key in zip(sample, keys) if key is None or key not in present]
        return round(len(missing) * step), round(sum(missing) * step)

    def _present(self, keys: list[bytes]) -> set[bytes] | None:
        """Those of ``keys`` the cache holds (``None`` when it cannot be read)."""
        try:
            return {key for (key,) in self._select("key", keys)}
        except sqlite3.Error:
            return None  # measure_chunk's lookups meet the problem again and report it

    def _select(self, columns: str, keys: list[bytes]) -> Iterator[tuple]:
        """``columns`` of the entries whose id is one of ``keys``' (one query per
        :data:`LOOKUP_BATCH` keys); callers compare the whole key. Raises ``sqlite3.Error``."""
        connection = self._reader()
        for begin in range(0, len(keys), LOOKUP_BATCH):
            batch = keys[begin : begin + LOOKUP_BATCH]
            query = f"SELECT {columns} FROM entries WHERE id IN ({','.join('?' * len(batch))})"
            yield from connection.execute(query, [entry_id(key) for key in batch])

    def __call__(self, index: int, source: ImageSource) -> Any:
        return self.measurer(index, source)  # one item at a time: not worth a lookup

    def close(self) -> None:
        """Close this process's connection (the main process's, after an in-process run)."""
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection, self._pid = None, -1

    def drain(self) -> Drained:
        """Everything collected since the last call."""
        drained, self._drained = self._drained, Drained()
        return drained

    def measure_chunk(self, start: int, chunk: Sequence[ImageSource], measure_run: Callable) -> Any:
        """The :class:`~chanstats.scale.chunk.ChunkResult` of images ``start, start + 1, ...``:
        reused from the cache where it holds them, measured by ``measure_run(measurer, sources,
        start, packed=False)`` (the engine's loop) otherwise."""
        from ..errors import BadImageError
        from .chunk import pack_chunk

        drained = self._drained
        # A listing's view makes its items anew each time it is indexed: reused files are never
        # made (see _keys), the others when measured.
        keys = self._keys(start, chunk)
        found = self._lookup([key for key, _ in keys if key is not None])
        hits = CompactHits()
        positions: list[int] = []
        sources: list[ImageSource] = []
        outcomes: list[Any] = []
        missing: list[int] = []
        stale = self.started - TOUCH_AFTER
        for offset, (key, _) in enumerate(keys):
            entry = None if key is None else found.get(key)
            reused = None if entry is None else self._reused(entry)
            if reused is None:
                missing.append(offset)
                continue
            drained.reused += 1
            if entry[3] < stale:
                drained.touched.append(key)
            if reused.__class__ is bytes:  # a compact entry, packed with the others of its group
                hits.add(start + offset, reused)
            else:
                positions.append(start + offset)
                sources.append(chunk[offset])
                outcomes.append(reused)
        for first, stop in _runs(missing):
            for (index, outcome), (key, stamp) in zip(measure_run(self.measurer, chunk[first:stop], start + first, False),
                                                      keys[first:stop]):
                positions.append(index)
                sources.append(chunk[index - start])
                outcomes.append(outcome)
                if isinstance(outcome, BadImageError):
                    continue
                drained.measured += 1
                if key is None and not drained.broken:
                    drained.unkeyed += 1
                if key is not None and (stamp is None or stamp == self._stamp(chunk[index - start], fresh=True)):
                    drained.fresh.append(self._entry(key, outcome))
        if len(outcomes) > 1 and positions != sorted(positions):
            ordered = sorted(range(len(positions)), key=positions.__getitem__)
            positions = [positions[i] for i in ordered]
            sources = [sources[i] for i in ordered]
            outcomes = [outcomes[i] for i in ordered]
        measured = pack_chunk(start, sources, outcomes, positions) if outcomes else None
        if not hits.groups:
            result = measured
        else:
            result = assemble(start, start + len(chunk), hits, self._formats, measured,
                              lambda index: chunk[index - start].display)
        result.cache = self.drain()
        return result

    def _keys(self, start: int, chunk: Sequence[ImageSource]) -> list[tuple[bytes | None, tuple | None]]:
        """(key, stamp) of each item of the chunk (see :meth:`_key`); a chunk of local files is
        keyed from the listing's columns, without making its items."""
        broken = self._drained.broken
        rows = chunk.local_files() if isinstance(chunk, Listing) and self.verify == "stat" and not broken else None
        if rows is None:
            return [(None, None) if source.problem or broken else self._key(index, source)
                    for index, source in enumerate(list(chunk), start)]
        keys: list[tuple[bytes | None, tuple | None]] = []
        context, by_index = self.context, self.by_index
        roots: dict[str, tuple[bytes, bytes]] = {}  # root → its absolute path and its prefix, encoded
        recent = time.time() - RECENT
        blake2b, stat = hashlib.blake2b, os.stat
        for index, (source_root, name, size, mtime, bad) in enumerate(rows, start):
            if bad:
                keys.append((None, None))
                continue
            encoded = roots.get(source_root)
            if encoded is None:
                encoded = roots[source_root] = (os.fsencode(os.path.abspath(source_root)),
                                                os.fsencode(os.path.join(source_root, "")))
            if mtime is not None:  # as this run's walk found it: what the run measures
                stamp = (size, mtime)
            else:  # a listing saved by an earlier run: the file may have changed since
                try:
                    info = stat(encoded[1] + name)
                except OSError:
                    keys.append((None, None))
                    continue
                stamp = (info.st_size, info.st_mtime_ns)
            if stamp[1] / 1e9 > recent:  # modified in the last moments: see _key
                keys.append((None, None))
                continue
            identity = _FILE_IDENTITY % (encoded[0], name, *stamp)
            if by_index:
                identity += b"@%d" % index
            keys.append((blake2b(identity, digest_size=20, key=context).digest(), stamp))
        return keys

    def _reader(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # a forked worker: never the parent's connection
            self._connection = _connect(self.path, readonly=True)
            self._pid = os.getpid()
        assert self._connection is not None
        return self._connection

    def _lookup(self, keys: list[bytes]) -> dict[bytes, tuple[bytes, bytes, int, int]]:
        """The stored (key, value, checksum, last use) of those of ``keys`` the cache holds (found
        by id, kept only where the whole key matches)."""
        if not keys:
            return {}
        try:
            return {row[0]: row for row in self._select("key, value, checksum, used", keys)}
        except sqlite3.Error as error:
            self._drained.broken = f"{type(error).__name__}: {error}"
            return {}

    def _reused(self, entry: tuple[bytes, bytes, int, int]) -> Any:
        """A stored entry checked: its value as it is (a compact entry, whose pixel format is now
        known) or a measurement; ``None`` (and the cache marked broken) when it does not check out."""
        _, value, crc, _ = entry
        try:
            if checksum(value) != crc:
                raise ValueError("an entry does not match its checksum")
            if value[:1] == COMPACT:
                tag = value[1:17]
                if tag not in self._formats:
                    row = self._reader().execute("SELECT value FROM formats WHERE tag = ?", (tag,)).fetchone()
                    if row is None:
                        raise ValueError("an entry names a pixel format the cache does not hold")
                    self._formats[tag] = pickle.loads(row[0])
                return value
            if value[:1] == PICKLED:
                return pickle.loads(zlib.decompress(value[1:]))
            raise ValueError("an entry of an unknown kind")
        except (sqlite3.Error, ValueError, pickle.UnpicklingError, zlib.error, EOFError, AttributeError,
                ImportError, TypeError, IndexError) as error:
            self._drained.broken = f"{type(error).__name__}: {error}"
            return None

    def _entry(self, key: bytes, measurement: Any) -> tuple[bytes, bytes, int]:
        """(key, stored value, checksum) of a new measurement; a new pixel format goes along."""
        pixel_format = measurement.format
        # Formats equal as kinds of pixels may differ in what the output shows (dtype "" or
        # "uint16", a scale of 255 or 255.0): the memo tells every field apart.
        exact = (pixel_format.channels, pixel_format.scale, type(pixel_format.scale), pixel_format.dtype,
                 pixel_format.masked)
        tag = self._tags.get(exact)
        if tag is None:
            pickled = pickle.dumps(pixel_format, protocol=pickle.HIGHEST_PROTOCOL)
            tag = self._tags[exact] = hashlib.blake2b(pickled, digest_size=16).digest()
            self._drained.formats[tag] = pickled
        value = encode_compact(measurement, tag)
        if value is None:
            value = PICKLED + zlib.compress(pickle.dumps(measurement, protocol=pickle.HIGHEST_PROTOCOL), 1)
        return key, value, checksum(value)

    def _key(self, index: int, source: ImageSource) -> tuple[bytes | None, tuple | None]:
        """The item's key and, for an item in a local file, the file's (size, mtime) to check
        again after measuring (a file changed meanwhile is not stored); ``(None, None)`` when
        nothing stable identifies it (it is measured, not stored)."""
        local = "://" not in source.path
        stamp = self._stamp(source) if local else None
        if self.verify == "hash":
            identity = self._content_digest(source)
            if identity is None or (local and stamp is None):
                return None, None
        elif not local:
            if not isinstance(source, RemoteImageFile) or source.version == -1:
                return None, None  # a remote container has no version to key it by: hash keys it
            identity = repr(("remote", source.root, source.name, source.size, source.version)).encode()
        else:
            # A file modified in the last moments may change again within its mtime's step.
            if stamp is None or time.time() - stamp[1] / 1e9 < RECENT:
                return None, None
            root = self._roots.get(source.root)
            if root is None:
                root = self._roots[source.root] = os.path.abspath(source.root)
            if isinstance(source, ContainedItem):
                identity = repr((type(source).__name__, root, stamp, _item_fields(source))).encode()
            else:
                identity = _FILE_IDENTITY % (os.fsencode(root), os.fsencode(source.name), *stamp)
        if self.by_index:
            identity += b"@%d" % index
        return hashlib.blake2b(identity, digest_size=20, key=self.context).digest(), stamp

    def _stamp(self, source: ImageSource, fresh: bool = False) -> tuple[int, int] | None:
        """(size, mtime in ns) of the local file holding ``source``; the items of one container
        share one ``stat`` (unless ``fresh``)."""
        path = source.path
        if not fresh and isinstance(source, ContainedItem) and self._last_stat[0] == path:
            return self._last_stat[1]
        try:
            stat = os.stat(path)
            stamp: tuple[int, int] | None = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            stamp = None
        if isinstance(source, ContainedItem):
            self._last_stat = (path, stamp)
        return stamp

    def _content_digest(self, source: ImageSource) -> bytes | None:
        digest = hashlib.blake2b(digest_size=20)
        try:
            if type(source) is ImageSource:  # a local file: its bytes, read into one reused buffer
                if self._buffer is None:
                    self._buffer = memoryview(bytearray(1 << 20))
                with open(source.path, "rb", buffering=0) as handle:
                    while count := handle.readinto(self._buffer):
                        digest.update(self._buffer[:count])
                return b"hash:" + digest.digest()
            from ..sources.kinds import read_item

            content = read_item(source)
        except Exception:  # unreadable: measuring names the file and the reason
            return None
        if isinstance(content, Decoded):
            pixels = content.pixels
            digest.update(repr((getattr(pixels, "shape", None), str(getattr(pixels, "dtype", "")),
                                content.channel_names, content.follows_mode)).encode())
            try:
                digest.update(memoryview(pixels).cast("B") if hasattr(pixels, "__array_interface__") and
                              pixels.flags.c_contiguous else pixels.tobytes())
            except (AttributeError, TypeError, ValueError):
                return None
        else:
            try:
                digest.update(content.read())
            except Exception:
                return None
            digest.update(repr(content.hint).encode())
        return b"hash:" + digest.digest()


# A local file's identity: its folder's absolute path, its name in it, size and mtime (ns).
_FILE_IDENTITY = b"%s\0%s\0%d\0%d"


def _runs(offsets: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive runs ``[first, stop)`` of sorted ``offsets``."""
    first = previous = None
    for offset in offsets:
        if first is None:
            first = previous = offset
        elif offset == previous + 1:
            previous = offset
        else:
            yield first, previous + 1
            first = previous = offset
    if first is not None:
        yield first, previous + 1


def _item_fields(source: ContainedItem) -> tuple:
    """A contained item's own fields (its place in the container), ``problem`` left out."""
    slots = []
    for klass in type(source).__mro__:
        slots.extend(getattr(klass, "__slots__", ()))
    return tuple((name, getattr(source, name)) for name in sorted(set(slots)) if name not in ("root", "problem"))


class MeasurementCache:
    """The main process's side of a run's cache: opens (or creates) the file, makes the
    :class:`CachedMeasurer` the workers use, stores each chunk's new entries and, at the end,
    evicts past the size bound and says what was reused."""

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self.connection: sqlite3.Connection | None = None
        self.started = time.time()
        self.reused = 0
        self.measured = 0
        self.stored = 0
        self.unkeyed = 0
        self.problem: str | None = None
        self.measurer: CachedMeasurer | None = None

    def measurer_for(self, measurer: Any, record: dict[str, Any], sources: Sequence[ImageSource]) -> Any:
        """``measurer`` wrapped to use the cache, or ``measurer`` itself (with a note saying why)
        when the cache cannot apply to this run."""
        from ..sources.datasets import DatasetItem

        if len(sources) and isinstance(sources[0], DatasetItem):
            _note("not used: items of a Python dataset have no content identity to key them by")
            return measurer
        transform = getattr(measurer, "transform", None)
        context = context_key(record, transform, self.settings.verify)
        if context is None:
            _note(f"not used: {transform.describe()} is Python code, whose results cannot be keyed by content "
                  "(a YAML/JSON transform spec can be)")
            return measurer
        try:
            self.connection = _open_store(self.settings.path)
        except (sqlite3.Error, OSError) as error:
            _note(f"{self.settings.path} is not a usable cache ({error}): ignored for this run; "
                  "remove it or pass --no-cache")
            return measurer
        # Seeds come from the listing index: a random transform, or a random clip of each video.
        by_index = transform is not None or bool(getattr(getattr(measurer, "video", None), "random", False))
        self.measurer = CachedMeasurer(measurer, self.settings.path, context, self.settings.verify, by_index,
                                       self.started)
        return self.measurer

    def few_to_measure(self, sources: Sequence[ImageSource], offset: int, workers: int) -> bool:
        """Whether measuring ``sources`` (listing indices from ``offset``) in this process costs
        less than starting ``workers`` worker processes and sharing the work among them: the
        estimated seconds of reusing what the cache holds and measuring what it lacks."""
        if self.measurer is None or self.settings.verify != "stat" or not len(sources):
            return False  # hashing reads every item: that is work for the workers
        if not isinstance(sources, Listing) or sources.local_files() is None:
            return False  # containers' items: workers open each container afresh, as without a cache
        missing, missing_bytes = self.measurer.lacking(sources, offset)
        if missing <= len(sources) * MOSTLY_REUSED:
            self.measurer.in_process_step = IN_PROCESS_STEP
        seconds = (missing_bytes / DECODE_BYTES_PER_SECOND + missing * SECONDS_PER_IMAGE
                   + (len(sources) - missing) * SECONDS_PER_REUSE)
        return workers <= 1 or seconds * (1 - 1 / workers) < POOL_START_SECONDS

    def absorb(self, drained: Drained | None) -> None:
        """Store a chunk's new entries and renew the stamps of the entries it reused."""
        if drained is None:
            return
        self.reused += drained.reused
        self.measured += drained.measured
        self.unkeyed += drained.unkeyed
        if drained.broken is not None and self.problem is None:
            self.problem = drained.broken
            _note(f"{self.settings.path} could not be read ({drained.broken}): its entries are not used "
                  "for the rest of this run; remove it or pass --no-cache")
        if self.connection is None or self.problem is not None or not (drained.fresh or drained.touched or drained.formats):
            return
        now = int(time.time())
        try:
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.executemany("INSERT OR IGNORE INTO formats (tag, value) VALUES (?, ?)",
                                        list(drained.formats.items()))
            self.connection.executemany(
                "INSERT OR REPLACE INTO entries (id, key, value, checksum, size, used) VALUES (?, ?, ?, ?, ?, ?)",
                [(entry_id(key), key, value, crc, len(value) + len(key) + 40, now)
                 for key, value, crc in drained.fresh])
            self.connection.executemany("UPDATE entries SET used = ? WHERE id = ?",
                                        [(now, entry_id(key)) for key in drained.touched])
            self.connection.execute("COMMIT")
            self.stored += len(drained.fresh)
        except sqlite3.Error as error:
            self._rollback()
            self.problem = str(error)
            _note(f"{self.settings.path} could not be written ({error}): new measurements are not stored")

    def close(self) -> None:
        """Evict the least recently used entries past the size bound, and close the file."""
        if self.measurer is not None:
            self.measurer.close()
        if self.connection is None:
            return
        unkeyed = ""
        if self.unkeyed:
            unkeyed = (f"; {self.unkeyed} not storable (modified in the last {RECENT:g} s, or a remote object or "
                       "container without a version: --cache-verify hash keys those by content)")
        _note(f"reused {self.reused} of {self.reused + self.measured} measurements, stored {self.stored} "
              f"({self.settings.directory}){unkeyed}")
        try:
            if self.stored and self.problem is None:
                self._evict()
        except sqlite3.Error as error:
            self._rollback()
            _note(f"{self.settings.path}: eviction failed ({error})")
        finally:
            self.connection.close()
            self.connection = None

    def _evict(self) -> None:
        assert self.connection is not None
        (total,) = self.connection.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()
        if total <= self.settings.max_size:
            return
        target = int(self.settings.max_size * 0.9)  # some room, so that the next run does not evict again
        self.connection.execute("BEGIN IMMEDIATE")
        freed = 0
        doomed = []
        for number, size in self.connection.execute("SELECT id, size FROM entries ORDER BY used, id"):
            if total - freed <= target:
                break
            doomed.append((number,))
            freed += size
        self.connection.executemany("DELETE FROM entries WHERE id = ?", doomed)
        self.connection.execute("COMMIT")

    def _rollback(self) -> None:
        try:
            if self.connection is not None and self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass
