"""Image tables as sources: Parquet files, Arrow files and Hugging Face ``datasets`` folders.

Each row of the image column is one image, named ``file.parquet::row 123`` (the row's index in
its file). The column holds what the ``datasets`` ``Image`` feature writes, a ``{bytes, path}``
struct, or plain binary; a row with no bytes but a path is read from that path, as ``datasets``
does. The encoded bytes go through the same decoders as files, so a folder and its Parquet copy
give the same numbers, bit for bit.

Accepted inputs: ``.parquet`` files (and ``.arrow`` files, stream or file format); a folder written
by ``Dataset.save_to_disk`` (``state.json`` names its Arrow files); a Hugging Face hub snapshot
folder (a ``README.md`` or ``.gitattributes`` next to ``.parquet`` files, taken in sorted order).

Workers read rows, not files: each process opens a table once, reads the image column a slice of
one row group at a time and keeps the current slice, since the engine hands out consecutive rows.
pyarrow is imported only when a table is listed or read.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterator

from ..errors import BadImageError, ChanstatsError
from . import storage
from .base import ContainedItem, Encoded, Listed, SourceKind

TABLE_SUFFIXES = (".parquet", ".arrow")

# Rows decoded at a time from a row group: a slice of the column stays in memory per worker, so a
# file written as one huge row group does not have to fit in memory.
ROWS_PER_READ = 64
# Tables each process keeps open (a run over many files visits them in order).
OPEN_TABLES = 4

# The image column chosen with ``--column``; ``None``: found from the table's schema.
_chosen_column: ContextVar[str | None] = ContextVar("chanstats_table_column", default=None)


@dataclass(frozen=True, slots=True)
class TableRow(ContainedItem):
    """One row of an image table: ``root`` the file, ``name`` ``"row N"``, ``row`` N (the row's
    index in the file) and ``column`` the image column; shown as ``file.parquet::row N``.

    ``group``: the Parquet row group holding the row when that group is one unit of work (see
    :data:`ROW_GROUP_UNIT_LIMIT`), else -1."""

    row: int = 0
    column: str = ""
    group: int = -1


# A Parquet row group is read from its start (its pages are compressed together), so a piece of
# work that starts inside one reads every row before it again. Row groups up to this many rows
# therefore go whole to one worker (chanstats.scale.engine.work_units); larger ones are split like
# any listing, so that a table of a few huge groups still spreads over the workers.
ROW_GROUP_UNIT_LIMIT = 4096


@contextlib.contextmanager
def choose_column(column: str | None) -> Iterator[None]:
    """List tables with ``column`` as their image column (``None``: find it in each schema)."""
    token = _chosen_column.set(column)
    try:
        yield
    finally:
        _chosen_column.reset(token)


def is_table_path(path: str) -> bool:
    """Whether ``path`` names a Parquet or Arrow file (by its extension)."""
    return path.lower().endswith(TABLE_SUFFIXES)


def is_table_folder(path: str) -> bool:
    """Whether the folder ``path`` is a ``datasets`` folder (``save_to_disk``) or a hub snapshot
    holding Parquet files, rather than a folder of images."""
    if _has(path, "dataset_dict.json") or (_has(path, "state.json") and _has(path, "dataset_info.json")):
        return True
    if not (_has(path, "README.md") or _has(path, ".gitattributes")):
        return False
    return next(_parquet_files(path), None) is not None


def list_table_folder(path: str) -> Iterator[Listed]:
    """The rows of every table in a ``datasets`` or hub snapshot folder, file after file."""
    if _has(path, "dataset_dict.json"):
        raise ChanstatsError(f"{path}: a DatasetDict with splits {', '.join(_splits(path))}; "
                             f"give one split's folder, e.g. {os.path.join(path, _splits(path)[0])}")
    if _has(path, "state.json"):
        files = [os.path.join(path, name) for name in _saved_files(path)]
    else:
        files = [os.path.join(path, name) for name in sorted(_parquet_files(path), key=os.fsencode)]
    for file in files:
        yield from list_table(file)


def list_table(path: str) -> Iterator[Listed]:
    """One :class:`TableRow` per row of the table at ``path``, with its identity (file and row)."""
    if storage.is_url(path):
        identity: tuple[int, ...] = storage.identity(path)
        entry = storage.stat(path)
        size = entry.size if entry is not None and entry.size >= 0 else 0
    else:
        try:
            stat = os.stat(path)
        except OSError as error:
            raise ChanstatsError(f"{path}: cannot read: {error.strerror or error}") from None
        identity, size = (stat.st_dev, stat.st_ino), stat.st_size
    try:
        schema, group_sizes = _schema_and_groups(path)
    except UnreadableTable as error:
        # A damaged table is one bad entry, named by the file, as a damaged tar shard is: skipped
        # under --on-error skip and counted by --max-bad, never the end of the run by itself.
        yield TableRow(path, "", size, problem=str(error)), (*identity, -1)
        return
    column = image_column(schema, _chosen_column.get(), path)
    first = 0
    for group, size in enumerate(group_sizes):
        unit = group if size <= ROW_GROUP_UNIT_LIMIT and len(group_sizes) > 1 else -1
        for row in range(first, first + size):
            yield (TableRow(path, f"row {row}", 0, None, row, column, unit), (*identity, row))
        first += size


def read_row(source: TableRow) -> bytes:
    """The encoded image of one row: its bytes, or the file its ``path`` names when it has none.

    Raises :class:`BadImageError` naming ``file.parquet::row N`` for an empty row, a path that
    cannot be read, or a table that changed since listing.
    """
    import pyarrow as pa

    try:
        data, path = _readers.get(source.root, source.column).cell(source.row, source.display)
    except (OSError, pa.ArrowException, KeyError) as error:
        _readers.forget(source.root, source.column)
        raise BadImageError(source.display, f"cannot read its part of the table (damaged, or changed since listing?): "
                                            f"{_one_line(error)}") from None
    if data is not None:
        return data
    if not path:
        raise BadImageError(source.display, f"no image: the {source.column!r} cell is empty (null)")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise BadImageError(source.display, f"the row holds no bytes, and its path {path} cannot be read: "
                                            f"{error.strerror or error}") from None


def image_column(schema: Any, chosen: str | None, path: str) -> str:
    """The image column of a table: ``chosen`` (checked), else the ``datasets`` ``Image`` feature
    its metadata names, else its one column of image type (a ``{bytes, path}`` struct or binary)."""
    names = list(schema.names)
    if chosen is not None:
        if chosen not in names:
            raise ChanstatsError(f"{path}: no column {chosen!r} (columns: {', '.join(names)})")
        if not _holds_images(schema.field(chosen).type):
            raise ChanstatsError(f"{path}: column {chosen!r} holds {schema.field(chosen).type}, "
                                 "not images (binary, or a {bytes, path} struct)")
        return chosen
    candidates = _image_features(schema) or [name for name in names if _holds_images(schema.field(name).type)]
    if len(candidates) == 1:
        return candidates[0]
    if "image" in candidates:
        return "image"
    if not candidates:
        raise ChanstatsError(f"{path}: no image column (columns: {', '.join(names) or 'none'}); "
                             "images are binary, or a {bytes, path} struct as the datasets Image feature writes")
    raise ChanstatsError(f"{path}: several image columns ({', '.join(candidates)}); choose one with --column")


def _holds_images(kind: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_struct(kind):
        index = kind.get_field_index("bytes")
        return index >= 0 and _is_binary(kind.field(index).type)
    return _is_binary(kind)


def _is_binary(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind)


def _image_features(schema: Any) -> list[str]:
    """The columns the ``datasets`` metadata declares as ``Image`` features, in schema order."""
    try:
        features = json.loads((schema.metadata or {})[b"huggingface"])["info"]["features"]
    except (KeyError, ValueError, TypeError):
        return []
    if not isinstance(features, dict):
        return []
    return [name for name in schema.names
            if isinstance(features.get(name), dict) and features[name].get("_type") == "Image"
            and _holds_images(schema.field(name).type)]


def _schema_and_groups(path: str) -> tuple[Any, list[int]]:
    """A table's schema and the number of rows of each of its row groups (an Arrow file: one)."""
    try:
        import pyarrow as pa
    except ImportError:
        raise ChanstatsError(f"{path}: reading Parquet and Arrow tables needs pyarrow: "
                             "pip install 'chanstats[parquet]'") from None

    try:
        if path.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            with pq.ParquetFile(_opened(path)) as parquet:
                metadata = parquet.metadata
                return parquet.schema_arrow, [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
        table = _read_arrow(path)
        return table.schema, [table.num_rows]
    except (OSError, pa.ArrowException) as error:
        kind = "Parquet" if path.lower().endswith(".parquet") else "Arrow"
        raise UnreadableTable(f"not a readable {kind} file (damaged or truncated?): {_one_line(error)}") from None


class UnreadableTable(Exception):
    """A table file whose schema and row groups cannot be read (the reason, without the path)."""


def _opened(path: str) -> Any:
    """What pyarrow reads a Parquet file from: the path, or for a URL a file over range requests
    (the footer, then each row group's image column chunk)."""
    return storage.open_file(path, block=1 << 20) if storage.is_url(path) else path


def _read_arrow(path: str) -> Any:
    """An Arrow IPC file or stream (what ``save_to_disk`` writes), memory-mapped: the table's
    buffers point into the mapping, so nothing is read until a row is."""
    import pyarrow as pa

    source = storage.open_file(path) if storage.is_url(path) else pa.memory_map(path)
    try:
        return pa.ipc.open_file(source).read_all()
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_stream(source).read_all()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _has(folder: str, name: str) -> bool:
    return os.path.isfile(os.path.join(folder, name))


def _splits(path: str) -> list[str]:
    try:
        with open(os.path.join(path, "dataset_dict.json"), encoding="utf-8") as handle:
            splits = json.load(handle)["splits"]
        return [str(split) for split in splits] or ["train"]
    except (OSError, ValueError, KeyError, TypeError):
        return ["train"]


def _saved_files(path: str) -> list[str]:
    """The Arrow files of a ``save_to_disk`` folder, in the order its ``state.json`` gives."""
    try:
        with open(os.path.join(path, "state.json"), encoding="utf-8") as handle:
            return [str(entry["filename"]) for entry in json.load(handle)["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ChanstatsError(f"{os.path.join(path, 'state.json')}: cannot read the list of data files ({error})") from None


def _parquet_files(root: str) -> Iterator[str]:
    """Relative paths of the ``.parquet`` files under ``root`` (hidden entries skipped), unsorted."""
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        relative = os.path.relpath(folder, root)
        for name in files:
            if name.lower().endswith(".parquet") and not name.startswith("."):
                yield name if relative == "." else os.path.join(relative, name)


class _ParquetReader:
    """One Parquet file's image column, read ``ROWS_PER_READ`` rows at a time within a row group;
    the current slice is kept, so consecutive rows cost one read."""

    def __init__(self, path: str, column: str) -> None:
        import pyarrow.parquet as pq

        # No pre-buffering: it reads through Arrow's I/O threads, and workers stay single-threaded.
        self.parquet = pq.ParquetFile(_opened(path), pre_buffer=False)
        self.column = column
        counts = [self.parquet.metadata.row_group(g).num_rows for g in range(self.parquet.num_row_groups)]
        self.starts = [0]
        for count in counts:
            self.starts.append(self.starts[-1] + count)
        self.group = -1
        self.batches: Iterator[Any] | None = None
        self.low = self.high = 0
        self.cells: Any = None

    def cell(self, row: int, shown: str) -> tuple[bytes | None, str | None]:
        group = bisect.bisect_right(self.starts, row) - 1
        if not 0 <= group < len(self.starts) - 1:
            raise BadImageError(shown, "no such row (the table changed since listing?)")
        if group != self.group or row < self.low or self.batches is None:
            self.group, self.low, self.high, self.cells = group, self.starts[group], self.starts[group], None
            self.batches = self.parquet.iter_batches(
                batch_size=ROWS_PER_READ, row_groups=[group], columns=[self.column], use_threads=False
            )
        while row >= self.high:
            batch = next(self.batches, None)
            if batch is None:
                self.batches = None
                raise BadImageError(shown, "no such row (the table changed since listing?)")
            self.low, self.high, self.cells = self.high, self.high + batch.num_rows, _Cells(batch.column(0))
        return self.cells.get(row - self.low)


class _ArrowReader:
    """An Arrow file's image column, memory-mapped: a row is a slice of the mapping."""

    def __init__(self, path: str, column: str) -> None:
        table = _read_arrow(path)
        chunks = table.column(column).chunks
        self.cells = [_Cells(chunk) for chunk in chunks]
        self.starts = [0]
        for chunk in chunks:
            self.starts.append(self.starts[-1] + len(chunk))

    def cell(self, row: int, shown: str) -> tuple[bytes | None, str | None]:
        chunk = bisect.bisect_right(self.starts, row) - 1
        if not 0 <= chunk < len(self.cells):
            raise BadImageError(shown, "no such row (the table changed since listing?)")
        return self.cells[chunk].get(row - self.starts[chunk])


class _Cells:
    """Image cells of one Arrow array: binary, or ``{bytes, path}`` structs."""

    def __init__(self, array: Any) -> None:
        import pyarrow as pa

        self.array = array
        if pa.types.is_struct(array.type):
            self.data = array.field("bytes")
            self.paths = array.field("path") if array.type.get_field_index("path") >= 0 else None
        else:
            self.data, self.paths = array, None

    def get(self, index: int) -> tuple[bytes | None, str | None]:
        if not self.array[index].is_valid:
            return None, None
        data = self.data[index].as_py()
        if data is not None:
            return data, None
        return None, None if self.paths is None else self.paths[index].as_py()


class _Readers:
    """The tables open in this process, reopened after a fork (a worker must not share its
    parent's file positions), the most recently used last."""

    def __init__(self) -> None:
        self.owner = -1
        self.open: dict[tuple[str, str], _ParquetReader | _ArrowReader] = {}

    def get(self, path: str, column: str) -> _ParquetReader | _ArrowReader:
        if self.owner != os.getpid():
            self.owner, self.open = os.getpid(), {}
        key = (path, column)
        reader = self.open.pop(key, None)
        if reader is None:
            reader = _ParquetReader(path, column) if path.lower().endswith(".parquet") else _ArrowReader(path, column)
            while len(self.open) >= OPEN_TABLES:
                self.open.pop(next(iter(self.open)))
        self.open[key] = reader
        return reader

    def forget(self, path: str, column: str) -> None:
        """Drop a table after an error, so that the next row opens it afresh."""
        self.open.pop((path, column), None)


_readers = _Readers()


def _holds_no_rows(path: str) -> str:
    return f"{path} is a table of no rows" if os.path.isfile(path) else f"{path} holds tables of no rows"


def _unit(row: TableRow):
    """A small row group is read from its start: its rows are one piece of work."""
    return (row.root, row.group) if row.group >= 0 else None


KIND = SourceKind("image table", TableRow, lambda row: Encoded(lambda: read_row(row)), claims=is_table_path,
                  list=lambda path, extensions: list_table(path), claims_folder=is_table_folder,
                  list_folder=list_table_folder, unit=_unit, empty=_holds_no_rows)

