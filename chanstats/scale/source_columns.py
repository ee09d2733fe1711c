"""A partial state's image sources as column files, so that ``merge`` can name every image (for
``--per-image`` and the atypical-image summary) without re-listing the data and without holding
the names in memory.

The files mirror a :class:`~chanstats.sources.base.Listing`'s columns for the state's slice: the
names' bytes one after the other with their end offsets, sizes, archive offsets, flags and root
numbers; the few distinct roots and the rare listing problems go in the state's header.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import ChanstatsError
from ..sources.base import _FS_ENCODING, _FS_ERRORS, ImageSource, Listing, row_source
from .columns import ColumnFile
from .integrity import Checksum

SOURCE_COLUMNS = {"name_end": "<i8", "size": "<i8", "offset": "<i8", "flags": "u1", "root_id": "<u4"}
NAMES_FILE = "names.bin"
# Listing rows turned into files per step: bounds the memory of writing a large slice's sources.
BLOCK = 1 << 18


def can_store(sources: Sequence[ImageSource]) -> bool:
    """Whether ``sources`` can be stored as columns (a file listing, not a Python dataset's items)."""
    return isinstance(sources, Listing)


def write_sources(sources: Listing, start: int, stop: int, directory: str) -> dict[str, Any]:
    """Write ``sources[start:stop]`` into ``directory``; returns what the header records."""
    columns = {name: ColumnFile(os.path.join(directory, f"source_{name}.col"), dtype)
               for name, dtype in SOURCE_COLUMNS.items()}
    roots: list[str] = []
    root_number: dict[str, int] = {}
    problems: dict[str, str] = {}
    written = 0
    names_checksum = Checksum()
    with open(os.path.join(directory, NAMES_FILE), "wb") as names:
        for block_start in range(start, stop, BLOCK):
            view = sources[block_start : min(stop, block_start + BLOCK)]
            block_roots, root_ids, name_bytes, ends, sizes, offsets, flags, block_problems, _ = \
                view._columns.rows(view._start, view._stop)
            for root in block_roots:
                if root not in root_number:
                    root_number[root] = len(roots)
                    roots.append(root)
            renumber = np.array([root_number[r] for r in block_roots], dtype=np.uint32)
            names.write(name_bytes)
            names_checksum.update(name_bytes)
            columns["name_end"].append(np.frombuffer(ends, dtype=np.int64) + written)
            written += len(name_bytes)
            columns["size"].append(np.frombuffer(sizes, dtype=np.int64))
            columns["offset"].append(np.frombuffer(offsets, dtype=np.int64))
            columns["flags"].append(np.frombuffer(flags, dtype=np.uint8))
            columns["root_id"].append(renumber[np.frombuffer(root_ids, dtype=np.uint32)] if len(root_ids) else
                                      np.zeros(0, np.uint32))
            problems.update({str(block_start - start + i): p for i, p in block_problems.items()})
        names.flush()
        os.fsync(names.fileno())
    for column in columns.values():
        column.sync()
        column.close()
    checksums = {name: column.checksum for name, column in columns.items()}
    checksums["names"] = names_checksum.value
    return {"count": stop - start, "names_bytes": written, "roots": roots, "problems": problems,
            "checksums": checksums}


class StoredSources(Sequence[ImageSource]):
    """The sources written by :func:`write_sources`, indexed by global listing index (the slice
    starts at ``start``), read from memory maps when indexed; each file is verified against the
    checksum ``meta`` recorded."""

    def __init__(self, directory: str, meta: dict[str, Any], start: int) -> None:
        self.start, self.count = start, int(meta["count"])
        self.roots = [str(root) for root in meta["roots"]]
        self.problems = {int(i): str(p) for i, p in meta.get("problems", {}).items()}
        checksums = {str(name): int(value) for name, value in meta["checksums"].items()}
        self.columns = {name: ColumnFile(os.path.join(directory, f"source_{name}.col"), dtype, self.count,
                                         writable=False, fresh=False, checksum=checksums[name]).view()
                        for name, dtype in SOURCE_COLUMNS.items()}
        names = ColumnFile(os.path.join(directory, NAMES_FILE), "u1", int(meta["names_bytes"]), writable=False,
                           fresh=False, checksum=checksums["names"])
        self.names = names.view()
        ends = self.columns["name_end"]
        if self.count and (int(ends[-1]) != len(self.names) or bool(np.any(ends[1:] < ends[:-1])) or int(ends[0]) < 0):
            raise ChanstatsError(f"{names.path}: damaged column file (names end at {int(ends[-1])} of {len(self.names)} bytes)")
        if self.count and int(self.columns["root_id"].max()) >= len(self.roots):
            raise ChanstatsError(f"{os.path.join(directory, 'source_root_id.col')}: damaged column file")

    def __len__(self) -> int:
        return self.start + self.count  # indexed by global index: the slice's end

    def __getitem__(self, index):  # type: ignore[override]
        i = int(index) - self.start
        if not 0 <= i < self.count:
            raise IndexError(f"image {index} is not in this partial state's slice")
        ends = self.columns["name_end"]
        flags = int(self.columns["flags"][i])
        name = bytes(self.names[int(ends[i - 1]) if i else 0 : int(ends[i])]).decode(_FS_ENCODING, _FS_ERRORS)
        return row_source(self.roots[int(self.columns["root_id"][i])], name, int(self.columns["size"][i]),
                          int(self.columns["offset"][i]), flags, self.problems.get(i))

    def __iter__(self) -> Iterator[ImageSource]:
        return (self[i] for i in range(self.start, self.start + self.count))


class TiledSources(Sequence[ImageSource]):
    """Sources by global listing index, each looked up in the piece whose slice holds it (the
    parts of a merge tile the listing)."""

    def __init__(self, starts: Sequence[int], pieces: Sequence[Sequence[ImageSource]], total: int) -> None:
        self.starts, self.pieces, self.total = np.asarray(starts, dtype=np.int64), list(pieces), total

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index):  # type: ignore[override]
        piece = int(np.searchsorted(self.starts, int(index), side="right")) - 1
        return self.pieces[piece][int(index)]
