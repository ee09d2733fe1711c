"""Merging the partial states of a sharded run into one state that covers the whole listing.

Parts must come from the same chanstats version, options and listing and tile the listing
exactly; since indices stay global, the merged state holds the images in listing order.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from ..errors import ChanstatsError
from ..sources.base import ImageSource
from .source_columns import TiledSources
from .table import ImageTable
from ..stats.moments import IntegerMoments
from .state import FormatTotals, PartialState, differing_options, shard_bounds


def merge_states(states: Sequence[PartialState], names: Sequence[str], directory: str | None = None,
                 origin: Sequence[ImageSource] | None = None) -> PartialState:
    """One state covering the whole listing from complete partials that tile it exactly.

    Refuses, naming the files: unfinished checkpoints, different chanstats versions, options or
    listings, and slices that overlap or leave images out. The order of ``states`` does not matter.
    The merged table's columns are the parts' concatenated in listing order, copied in bounded
    pieces into ``directory`` (default: a temporary folder); its images are named by ``origin``
    (the whole listing) or else by each part's own sources.
    """
    if not states:
        raise ChanstatsError("no partial states to merge")
    first, first_name = states[0], names[0]
    for state, name in zip(states, names):
        if not state.complete:
            raise ChanstatsError(
                f"{name}: unfinished (measured images {state.start}..{state.done - 1} of slice "
                f"{state.start}..{state.stop - 1}); finish it by rerunning its command"
            )
        if state.version != first.version:
            raise ChanstatsError(f"{first_name} and {name} were written by different chanstats versions ({first.version} vs {state.version})")
        if state.options != first.options:
            raise ChanstatsError(f"{first_name} and {name} were computed with different options: {_option_diff(first.options, state.options)}")
        if (state.fingerprint, state.listing_size, state.population) != (first.fingerprint, first.listing_size, first.population):
            raise ChanstatsError(
                f"{first_name} and {name} were computed on different file listings "
                f"({first.listing_size} images, {first.fingerprint[:19]}… vs {state.listing_size} images, {state.fingerprint[:19]}…)"
            )
    order = sorted(range(len(states)), key=lambda i: (states[i].start, states[i].stop))
    position, previous = 0, None
    for i in order:
        state, name = states[i], names[i]
        if state.start < position:
            raise ChanstatsError(
                f"{names[previous]} (shard {_shard(states[previous])}) and {name} (shard {_shard(state)}) overlap: "
                f"both hold images {state.start}..{min(position, state.stop) - 1}"
            )
        if state.start > position:
            raise ChanstatsError(_missing(position, state.start, first))
        position, previous = max(position, state.stop), i
    if position < first.listing_size:
        raise ChanstatsError(_missing(position, first.listing_size, first))

    merged = PartialState(
        first.version, first.options, first.fingerprint, first.listing_size, (1, 1), 0, first.listing_size,
        first.listing_size, listing=first.listing, population=first.population,
    )
    for i in order:
        state = states[i]
        for fmt, totals in state.formats.items():
            into = merged.formats.get(fmt)
            if into is None:
                copy = None if totals.integer is None else IntegerMoments.empty(totals.integer.channels).merge(totals.integer)
                merged.formats[fmt] = FormatTotals(fmt, totals.first_index, totals.example, copy, copy_histogram(totals.histogram))
                continue
            if totals.histogram is not None:
                into.histogram = copy_histogram(totals.histogram) if into.histogram is None else into.histogram.merge(totals.histogram)
            if totals.first_index < into.first_index:
                into.first_index, into.example = totals.first_index, totals.example
            if totals.integer is not None:
                if into.integer is None:
                    into.integer = IntegerMoments.empty(totals.integer.channels)
                into.integer.merge(totals.integer)
        merged.bad.extend(state.bad)
    if origin is None:
        origin = TiledSources([states[i].start for i in order], [states[i].images.by_index() for i in order],
                              first.listing_size)
    merged.images = ImageTable.concatenate([states[i].images for i in order], origin,
                                           None if directory is None else os.path.join(directory, "merged"))
    # formats in order of first appearance, like a single pass sees them
    merged.formats = dict(sorted(merged.formats.items(), key=lambda item: item[1].first_index))
    return merged


def copy_histogram(histogram):
    """A histogram or sketch that merging into will not change ``histogram`` itself."""
    return None if histogram is None else type(histogram).from_json(histogram.to_json())


def _shard(state: PartialState) -> str:
    return f"{state.shard[0]}/{state.shard[1]}"


def _missing(start: int, stop: int, example: PartialState) -> str:
    n = example.shard[1]
    shards = [k for k in range(1, n + 1) if _overlaps(shard_bounds(example.listing_size, k, n), (start, stop))]
    hint = f" (shard {', '.join(f'{k}/{n}' for k in shards)}?)" if shards else ""
    return f"no partial state covers images {start}..{stop - 1} of {example.listing_size}{hint}"


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[0] < a[1]


def _option_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in differing_options(a, b))
