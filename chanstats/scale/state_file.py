"""The file formats of a :class:`~chanstats.scale.state.PartialState`, read back with an error that
names the file.

* **JSON** (version 4): deterministic JSON, one image per line, nothing rounded (floats as
  ``repr``, float64 moments as hex floats, integer totals as decimal strings). Readable and
  greppable; its size and the time to write it grow with the images, so it suits small states.
* **Columns** (version 5): a small JSON header (everything but the images: options, slice,
  exact totals, bad images, and how many records each column file held when it was written, with
  their CRC-32) and the column files of :class:`~chanstats.scale.table.ImageTable` in a directory
  beside it, ``FILE.columns``, with the slice's sources (:mod:`.source_columns`). Checkpoints
  always use it: saving is an fsync and a header rewrite whatever the run's length.

Both read back into the same state and both merge, in any mix. Both end with a digest of their
bytes (:mod:`.integrity`), and what they say is checked for sense before it is used (counts,
slice, shard, indices: :func:`check_header` and :func:`check_images`): a damaged or edited state
is refused naming the file, never merged or resumed. Versions 2 and 3, written by chanstats
before these checks, are refused with a line saying to rerun what wrote them.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np

from ..decoding.formats import PixelFormat
from ..errors import ChanstatsError, cannot_write
from ..report.files import write_atomic
from ..sources.base import ContainedItem, ImageSource
from ..stats.moments import FloatMoments, IntegerMoments
from .columns import fsync_directory, remove_directory
from .integrity import has_seal, seal, unseal
from .source_columns import StoredSources, can_store, write_sources
from .state import KIND, PARTIAL_VERSION, BadRecord, FormatTotals, PartialState, shard_bounds
from .table import COLUMNS, ImageRecord, ImageTable, _overlapping_blocks, pack_rows

COLUMNS_VERSION = 5
# Written by chanstats before states carried digests and checksums: refused, to be rewritten.
OLDER_VERSIONS = (2, 3)
COLUMNS_SUFFIX = ".columns"
FORMATS = ("auto", "json", "columns")
# --partial-format auto: JSON up to this many images in the slice, columns above.
JSON_LIMIT = 10_000


class MissingColumnsError(ChanstatsError):
    """A column-format state whose folder of column files is not where its header says (moved
    apart from it, or on a file system this process does not see)."""


def header(state: PartialState) -> dict[str, Any]:
    """The state's fields other than its images, as the file's first line holds them."""
    return {
        "kind": KIND,
        "partial_version": PARTIAL_VERSION,
        "chanstats": state.version,
        "shard": list(state.shard),
        "slice": [state.start, state.stop],
        "done": state.done,
        "listing_size": state.listing_size,
        "fingerprint": state.fingerprint,
        "options": state.options,
        **({"listing": [[name, size] for name, size in state.listing]} if state.listing is not None else {}),
        **({"population": state.population} if state.population is not None else {}),
    }

def dumps(state: PartialState) -> str:
    """Deterministic JSON, one image per line (so a million-image partial stays greppable)."""
    formats = _formats_json(state)
    format_ids = {fmt: i for i, fmt in enumerate(state.formats)}
    lines = [json.dumps(header(state), allow_nan=False)[:-1] + ","]
    lines.append(f'"formats": {json.dumps(formats, allow_nan=False)},')
    lines.append(f'"bad": {json.dumps([[b.index, b.display, b.path, b.reason] for b in state.bad])},')
    images = [json.dumps(_image_json(r, format_ids[r.format]), allow_nan=False) for r in state.images]
    lines.append('"images": [' + ("\n" + ",\n".join(images) + "\n" if images else "") + "]")
    return seal("\n".join(lines), "\n")

def _formats_json(state: PartialState) -> list[dict[str, Any]]:
    return [
        {
            "channels": list(t.format.channels),
            "scale": t.format.scale,
            "first_index": t.first_index,
            "example": t.example,
            "integer": None if t.integer is None else t.integer.to_json(),
            **_format_extras(t),
        }
        for t in state.formats.values()
    ]


def _formats_from_json(entries: list[dict[str, Any]]) -> dict[PixelFormat, FormatTotals]:
    formats: dict[PixelFormat, FormatTotals] = {}
    for entry in entries:
        scale = entry["scale"]
        fmt = PixelFormat(tuple(entry["channels"]), scale if isinstance(scale, (int, float)) else int(scale),
                          entry.get("dtype", ""), bool(entry.get("masked", False)))
        integer = None if entry["integer"] is None else IntegerMoments.from_json(entry["integer"])
        formats[fmt] = FormatTotals(fmt, int(entry["first_index"]), entry["example"], integer, _histogram_from_json(entry))
    return formats


def choose_format(requested: str, sources: Sequence[ImageSource], images: int) -> str:
    """``json`` or ``columns`` for a partial state of ``images`` images: ``auto`` writes JSON up to
    :data:`JSON_LIMIT` images and columns above; sources that are not files (a Python dataset's
    items) are only written as JSON."""
    if requested not in FORMATS:
        raise ChanstatsError(f"--partial-format {requested!r}: choose {', '.join(FORMATS)}")
    if requested == "auto":
        return "columns" if images > JSON_LIMIT and can_store(sources) else "json"
    if requested == "columns" and not can_store(sources):
        raise ChanstatsError("--partial-format columns stores image files' names; a dataset's samples are written "
                             "as JSON (--partial-format json)")
    return requested


def write(state: PartialState, path: str, fmt: str = "json", sources: Sequence[ImageSource] | None = None) -> None:
    """Write ``state`` to ``path``: atomically as JSON, or as a header and ``path.columns`` (the
    run's sources, a :class:`~chanstats.sources.base.Listing`, are stored for the state's slice)."""
    if fmt == "json":
        remove_directory(path + COLUMNS_SUFFIX)  # a stale column directory of an earlier run
        write_atomic(path, dumps(state))
        return
    directory = path + COLUMNS_SUFFIX
    staging = f"{directory}.tmp-{os.getpid()}"
    remove_directory(staging)
    try:
        state.images.copy_columns_to(staging)
        meta = write_sources(sources, state.start, state.stop, staging)  # type: ignore[arg-type]
        fsync_directory(staging)
        remove_directory(directory)
        os.replace(staging, directory)
        fsync_directory(os.path.dirname(os.path.abspath(directory)))
    except OSError as error:
        remove_directory(staging)
        raise cannot_write(directory, error) from None
    except BaseException:
        remove_directory(staging)
        raise
    try:
        write_atomic(path, columns_header(state, os.path.basename(directory), meta))
    except BaseException:
        remove_directory(directory)  # columns without their header are no partial state
        raise


def columns_header(state: PartialState, directory: str, sources: dict[str, Any] | None) -> str:
    """The header of a state whose images are the column files in ``directory`` (relative to the
    header's folder, or absolute); ``sources``: what :func:`write_sources` recorded, if any."""
    table = state.images
    positions = {fmt: i for i, fmt in enumerate(state.formats)}
    data = {
        **header(state),
        "partial_version": COLUMNS_VERSION,
        "formats": _formats_json(state),
        "bad": [[b.index, b.display, b.path, b.reason] for b in state.bad],
        "columns": {
            "directory": directory,
            "formats": [positions[fmt] for fmt in table.formats],
            "lengths": table.lengths(),
            "checksums": table.checksums(),
            "sources": sources,
        },
    }
    return seal(json.dumps(data, allow_nan=False)[:-1])


class OlderStateError(ChanstatsError):
    """A partial state or checkpoint in a format an older chanstats wrote (no integrity checks)."""


def parse_header(text: str, name: str, older: str = "rerun the shard that wrote it") -> dict[str, Any]:
    """A partial state's JSON (either format) once its digest matches, checked for kind and
    version; ``older``: what to do about a state an older chanstats wrote."""
    if not has_seal(text):
        try:
            data = json.loads(text)
        except ValueError as error:
            if KIND in text[:200]:
                unseal(text, name)  # raises: a state cut short
            raise ChanstatsError(f"{name}: not a chanstats partial state ({error})") from None
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise ChanstatsError(f"{name}: not a chanstats partial state (write one with compute --partial)")
        if data.get("partial_version") in OLDER_VERSIONS:
            raise OlderStateError(f"{name}: written by an older chanstats: {older}")
    data = json.loads(unseal(text, name))
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ChanstatsError(f"{name}: not a chanstats partial state (write one with compute --partial)")
    if data.get("partial_version") not in (PARTIAL_VERSION, COLUMNS_VERSION):
        raise ChanstatsError(
            f"{name}: partial state version {data.get('partial_version')!r}; this chanstats reads versions "
            f"{PARTIAL_VERSION} (JSON) and {COLUMNS_VERSION} (columns)"
        )
    return data


def _damaged(name: str, why: str) -> ChanstatsError:
    return ChanstatsError(f"{name}: damaged partial state ({why})")


def check_header(state: PartialState, name: str) -> None:
    """Refuse a state whose counts, slice or totals cannot be those of a run (a digest only
    proves the file is as written, not that what was written makes sense)."""
    k, n = state.shard
    if state.listing_size < 0 or n < 1 or not 1 <= k <= n:
        raise _damaged(name, f"shard {k}/{n} of {state.listing_size} images")
    if (state.start, state.stop) != shard_bounds(state.listing_size, k, n):
        raise _damaged(name, f"slice {state.start}..{state.stop - 1} is not shard {k}/{n} of {state.listing_size} images")
    if not state.start <= state.done <= state.stop:
        raise _damaged(name, f"{state.done} images done, outside its slice {state.start}..{state.stop - 1}")
    if state.population is not None and state.population < state.listing_size:
        raise _damaged(name, f"a sample of {state.listing_size} from {state.population} images")
    bad = [record.index for record in state.bad]
    if any(not state.start <= i < state.done for i in bad) or len(set(bad)) != len(bad):
        raise _damaged(name, f"bad images outside its slice {state.start}..{state.done - 1} or listed twice")
    for totals in state.formats.values():
        channels = len(totals.format.channels)
        if not channels or not state.start <= totals.first_index < max(state.done, state.start + 1):
            raise _damaged(name, f"pixel format first seen at image {totals.first_index}")
        m = totals.integer
        if m is None:
            continue
        counts = m.channel_counts()
        if (m.pixels < 0 or any(v < 0 for v in m.sumsq) or len(counts) != channels
                or any(not 0 <= c <= m.pixels for c in counts)
                or not len(m.sums) == len(m.sumsq) == len(m.mins) == len(m.maxs) == channels):
            raise _damaged(name, "impossible pixel totals (negative or inconsistent counts)")


def check_images(state: PartialState, name: str) -> None:
    """Refuse a state whose images do not account for its slice exactly: every image measured
    so far is either in its table (strictly increasing indices) or among its bad images."""
    table, measured = state.images, state.done - state.start
    if len(table) + len(state.bad) != measured:
        raise _damaged(name, f"{len(table)} images and {len(state.bad)} bad ones for {measured} in "
                             f"{state.start}..{state.done - 1}")
    if not len(table):
        return
    index = table.index
    if not state.start <= int(index[0]) <= int(index[-1]) < state.done:
        raise _damaged(name, f"image indices outside its slice {state.start}..{state.done - 1}")
    if not all(bool(np.all(block[1:] > block[:-1])) for block in _overlapping_blocks(index)):
        raise _damaged(name, "image indices out of order or repeated")
    if state.bad:
        bad = np.array([record.index for record in state.bad], dtype=np.int64)
        positions = np.minimum(np.searchsorted(index, bad), len(index) - 1)
        if bool(np.any(index[positions] == bad)):
            raise _damaged(name, "an image both measured and bad")


def open_columns(data: dict[str, Any], name: str, directory: str, origin: Sequence[ImageSource] | None = None,
                 *, writable: bool = False) -> PartialState:
    """The state a column header describes, its images the column files in ``directory``;
    sources from ``origin`` (a run's own listing) or else those stored with it."""
    if data.get("partial_version") != COLUMNS_VERSION:
        raise ChanstatsError(f"{name}: written in the JSON format, not as columns")
    try:
        state = _state_without_images(data)
        columns = data["columns"]
        by_position = list(state.formats)
        if any(not 0 <= i < len(by_position) for i in columns["formats"]):
            raise IndexError("pixel format out of range")
        table_formats = [by_position[i] for i in columns["formats"]]
        lengths = {column: int(columns["lengths"][column]) for column in COLUMNS}
        checksums = {column: int(columns["checksums"][column]) for column in COLUMNS}
        if any(v < 0 for v in lengths.values()):
            raise ValueError("a negative column length")
        stored = columns.get("sources")
        if stored is not None and int(stored["count"]) != state.stop - state.start:
            raise ValueError(f"{stored['count']} sources stored for {state.stop - state.start} images")
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise ChanstatsError(f"{name}: damaged partial state ({type(error).__name__}: {error})") from None
    check_header(state, name)
    if not os.path.isdir(directory):
        raise MissingColumnsError(f"{name}: its column files are missing ({directory} is not a folder)")
    try:
        if origin is None and stored is not None:
            origin = StoredSources(directory, stored, state.start)
    except (KeyError, TypeError, ValueError) as error:
        raise ChanstatsError(f"{name}: damaged partial state ({type(error).__name__}: {error})") from None
    state.images = ImageTable.open(directory, lengths, table_formats, origin, writable=writable, checksums=checksums)
    check_images(state, name)
    return state


def _state_without_images(data: dict[str, Any]) -> PartialState:
    k, n = data["shard"]
    start, stop = data["slice"]
    return PartialState(
        version=data["chanstats"],
        options=data["options"],
        fingerprint=data["fingerprint"],
        listing_size=int(data["listing_size"]),
        shard=(int(k), int(n)),
        start=int(start),
        stop=int(stop),
        done=int(data["done"]),
        formats=_formats_from_json(data["formats"]),
        bad=[BadRecord(int(i), display, path, reason) for i, display, path, reason in data["bad"]],
        listing=None if data.get("listing") is None else [(name, int(size)) for name, size in data["listing"]],
        population=None if data.get("population") is None else int(data["population"]),
    )


def loads(text: str, name: str, directory: str | None = None) -> PartialState:
    """Parse a partial state; ``name`` (the file) is named in every error. A column header's files
    are in ``directory`` (default: the directory the header names, from the current folder)."""
    data = parse_header(text, name)
    if data["partial_version"] == COLUMNS_VERSION:
        try:
            where = directory or str(data["columns"]["directory"])
        except (KeyError, TypeError) as error:
            raise ChanstatsError(f"{name}: damaged partial state ({type(error).__name__}: {error})") from None
        return open_columns(data, name, where)
    return _json_state(data, name)


def _json_state(data: dict[str, Any], name: str) -> PartialState:
    try:
        state = _from_json(data)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise ChanstatsError(f"{name}: damaged partial state ({type(error).__name__}: {error})") from None
    check_header(state, name)
    check_images(state, name)
    return state


def _from_json(data: dict[str, Any]) -> PartialState:
    state = _state_without_images(data)
    by_id = list(state.formats)
    images = ImageTable()
    roots: dict[str, str] = {}
    for item in data["images"]:
        index, fmt_id, alpha, path, name, display, size, width, height, rows, floats = item
        if not 0 <= fmt_id < len(by_id):
            raise IndexError(f"pixel format {fmt_id} of {len(by_id)}")
        images.append(
            ImageRecord(
                index=int(index),
                source=_source_from_json(path, name, display, int(size), roots),
                format=by_id[fmt_id],
                dropped_alpha=bool(alpha),
                width=int(width),
                height=int(height),
                packed_rows=pack_rows(rows),
                float_moments=None if floats is None else [_float_moments_from_json(f) for f in floats],
            )
        )
    state.images = images
    return state


def _format_extras(totals: FormatTotals) -> dict[str, Any]:
    """What only raster formats and percentile runs add to a format's entry."""
    extras: dict[str, Any] = {}
    if totals.format.dtype:
        extras["dtype"] = totals.format.dtype
    if totals.format.masked:
        extras["masked"] = True
    histogram = totals.histogram
    if histogram is not None:
        kind = "sketch" if type(histogram).__name__ == "QuantileSketch" else "histogram"
        extras[kind] = histogram.to_json()
    return extras


def _histogram_from_json(entry: dict[str, Any]):
    if entry.get("histogram") is not None:
        from ..stats.histogram import ChannelHistogram

        return ChannelHistogram.from_json(entry["histogram"])
    if entry.get("sketch") is not None:
        from ..stats.sketch import QuantileSketch

        return QuantileSketch.from_json(entry["sketch"])
    return None


def read_text(path: str, name: str) -> str:
    """A state file's text; one whose bytes are not UTF-8 is damaged if it starts like a state."""
    try:
        with open(path, "rb") as stream:
            raw = stream.read()
    except OSError as error:
        raise ChanstatsError(f"{name}: cannot read: {error.strerror or error}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        if KIND.encode() in raw[:200]:
            raise ChanstatsError(f"{name}: damaged partial state (not UTF-8 text)") from None
        raise ChanstatsError(f"{name}: not a chanstats partial state (not text)") from None


def read_partial(path: str) -> PartialState:
    """The partial state in ``path``, in either format (a column header's files are found beside it)."""
    text = read_text(path, path)
    data = parse_header(text, path)
    if data["partial_version"] != COLUMNS_VERSION:
        return _json_state(data, path)
    try:
        directory = os.path.join(os.path.dirname(os.path.abspath(path)), str(data["columns"]["directory"]))
    except (KeyError, TypeError) as error:
        raise ChanstatsError(f"{path}: damaged partial state ({type(error).__name__}: {error})") from None
    return open_columns(data, path, directory)


def _source_from_json(path: str, name: str, display: str, size: int, roots: dict[str, str]) -> ImageSource:
    """A source as written by :func:`_image_json` (its bytes are not read again: no offset)."""
    if display == f"{path}::{name}":
        return ContainedItem(roots.setdefault(path, path), name, size)
    if display != path:
        raise ValueError(f"image {display!r} is shown neither as its path {path!r} nor as a shard member")
    return ImageSource.from_path(path, name, size, roots)


def _image_json(record: ImageRecord, format_id: int) -> list[Any]:
    s = record.source
    floats = None if record.float_moments is None else [_float_moments_json(m) for m in record.float_moments]
    return [record.index, format_id, int(record.dropped_alpha), s.path, s.name, s.display, s.size,
            record.width, record.height, [[n, list(mean), list(m2)] for n, mean, m2 in record.rows], floats]


def _counts_json(m: FloatMoments) -> dict[str, Any]:
    return {} if m.counts is None else {"counts": [int(v) for v in m.counts]}


def _hex(values: np.ndarray) -> list[str]:
    return [float(v).hex() for v in values]


def _float_moments_json(m: FloatMoments) -> dict[str, Any]:
    # Hex floats: exact, and they carry the ±inf of an empty accumulator's min/max.
    return {"pixels": m.pixels, "mean": _hex(m.mean), "m2": _hex(m.m2), "mins": _hex(m.mins), "maxs": _hex(m.maxs),
            **_counts_json(m)}


def _float_moments_from_json(data: dict[str, Any]) -> FloatMoments:
    def arr(key: str) -> np.ndarray:
        return np.array([float.fromhex(v) for v in data[key]], dtype=np.float64)

    counts = None if data.get("counts") is None else np.array(data["counts"], dtype=np.int64)
    return FloatMoments(int(data["pixels"]), arr("mean"), arr("m2"), arr("mins"), arr("maxs"), counts)
