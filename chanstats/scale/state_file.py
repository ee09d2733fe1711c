"""The file format of a :class:`~chanstats.scale.state.PartialState`: deterministic JSON, one image
per line, nothing rounded (floats as ``repr``, float64 moments as hex floats, integer totals as
decimal strings), read back with an error that names the file.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..decoding.formats import PixelFormat
from ..errors import ChanstatsError
from ..report.files import write_atomic
from ..sources.base import ImageSource
from ..stats.moments import FloatMoments, IntegerMoments
from .state import KIND, PARTIAL_VERSION, BadRecord, FormatTotals, PartialState
from .table import ImageRecord, ImageTable, pack_rows



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
    formats = [
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
    format_ids = {fmt: i for i, fmt in enumerate(state.formats)}
    lines = [json.dumps(header(state), allow_nan=False)[:-1] + ","]
    lines.append(f'"formats": {json.dumps(formats, allow_nan=False)},')
    lines.append(f'"bad": {json.dumps([[b.index, b.display, b.path, b.reason] for b in state.bad])},')
    images = [json.dumps(_image_json(r, format_ids[r.format]), allow_nan=False) for r in state.images]
    lines.append('"images": [' + ("\n" + ",\n".join(images) + "\n" if images else "") + "]}")
    return "\n".join(lines) + "\n"

def write(state: PartialState, path: str) -> None:
    """Write ``state`` to ``path`` atomically."""
    write_atomic(path, dumps(state))

def loads(text: str, name: str) -> PartialState:
    """Parse a partial state; ``name`` (the file) is named in every error."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ChanstatsError(f"{name}: not a chanstats partial state ({error})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ChanstatsError(f"{name}: not a chanstats partial state (write one with compute --partial)")
    if data.get("partial_version") != PARTIAL_VERSION:
        raise ChanstatsError(
            f"{name}: partial state version {data.get('partial_version')!r}; this chanstats reads version {PARTIAL_VERSION}"
        )
    try:
        return _from_json(data)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise ChanstatsError(f"{name}: damaged partial state ({type(error).__name__}: {error})") from None

def _from_json(data: dict[str, Any]) -> PartialState:
    formats: dict[PixelFormat, FormatTotals] = {}
    by_id: list[PixelFormat] = []
    for entry in data["formats"]:
        scale = entry["scale"]
        fmt = PixelFormat(tuple(entry["channels"]), scale if isinstance(scale, (int, float)) else int(scale),
                          entry.get("dtype", ""), bool(entry.get("masked", False)))
        integer = None if entry["integer"] is None else IntegerMoments.from_json(entry["integer"])
        formats[fmt] = FormatTotals(fmt, int(entry["first_index"]), entry["example"], integer, _histogram_from_json(entry))
        by_id.append(fmt)
    images = ImageTable()
    roots: dict[str, str] = {}
    for item in data["images"]:
        index, fmt_id, alpha, path, name, display, size, width, height, rows, floats = item
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
        formats=formats,
        images=images,
        bad=[BadRecord(int(i), display, path, reason) for i, display, path, reason in data["bad"]],
        listing=None if data.get("listing") is None else [(name, int(size)) for name, size in data["listing"]],
        population=None if data.get("population") is None else int(data["population"]),
    )


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


def read_partial(path: str) -> PartialState:
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as error:
        raise ChanstatsError(f"{path}: cannot read: {error.strerror or error}") from None
    return loads(text, path)


def _source_from_json(path: str, name: str, display: str, size: int, roots: dict[str, str]) -> ImageSource:
    """A source as written by :func:`_image_json` (its bytes are not read again: no offset)."""
    if display == f"{path}::{name}":
        return ImageSource(roots.setdefault(path, path), name, size, in_archive=True)
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
