"""The registry of source kinds, and reading any item through it.

Every kind is one module under ``sources/`` that defines a :class:`~chanstats.sources.base.SourceKind`
(see there for the protocol) and one line in :data:`KINDS` below. Listing asks the kinds, in this
order, whether they claim an input file or folder (plain image files are what is left); measuring
reads every item with :func:`read_item`; the worker pool keeps each item's :func:`unit_of` in one
piece of work. A new kind is a new module and a new line here, and
``tests/test_source_conformance.py`` then runs the conformance suite on it (see
docs/architecture.md, "Adding a source kind").
"""

from __future__ import annotations

from typing import Hashable

from ..errors import BadImageError
from . import arrays, datasets, files, parquet, tar
from .base import Decoded, Encoded, ImageSource, SourceKind

# Claims are asked in this order; the image-file kind claims what no other kind does.
KINDS: tuple[SourceKind, ...] = (
    parquet.KIND,
    arrays.KIND,
    tar.KIND,
    datasets.KIND,
    files.KIND,
)

_BY_TYPE: dict[type, SourceKind] = {item_type: kind for kind in KINDS for item_type in (kind.item_type, *kind.also)}


def kind_of(item: ImageSource) -> SourceKind:
    """The kind that listed ``item`` (by the item's class)."""
    try:
        return _BY_TYPE[type(item)]
    except KeyError:
        raise TypeError(f"{item.display}: a {type(item).__name__} belongs to no registered source kind "
                        "(an item read back from a partial state is not read again)") from None


def read_item(item: ImageSource) -> Encoded | Decoded:
    """What ``item`` holds: encoded bytes or decoded pixels. Raises
    :class:`~chanstats.errors.BadImageError` for an item listing found unusable (its ``problem``)
    and for one its kind cannot read."""
    if item.problem is not None:
        raise BadImageError(item.display, item.problem)
    return kind_of(item).read(item)


def read_bytes(item: ImageSource) -> bytes:
    """The encoded bytes of an item stored encoded (a file, a shard member, a table row)."""
    content = read_item(item)
    if not isinstance(content, Encoded):
        raise TypeError(f"{item.display}: holds pixels, not encoded bytes")
    return content.read()


def unit_of(item: ImageSource) -> Hashable | None:
    """The piece of work ``item`` must not be separated from (see ``SourceKind.unit``)."""
    return kind_of(item).unit(item)


def file_kind(path: str) -> SourceKind | None:
    """The kind that claims the file at ``path`` as a container of items; ``None``: an image file."""
    for kind in KINDS:
        if kind.claims is not None and kind.claims(path):
            return kind
    return None


def folder_kind(path: str) -> SourceKind | None:
    """The kind that claims the folder at ``path`` as one source (a saved table); ``None``: a
    folder to walk."""
    for kind in KINDS:
        if kind.claims_folder is not None and kind.claims_folder(path):
            return kind
    return None
