"""Integrity of state files: a digest sealing each JSON document, and running checksums of
column files.

* A JSON partial state or a checkpoint/column header ends with ``"digest": "<hex>"``, the
  BLAKE2b-256 of every byte before that member (:func:`seal`). Any edited, flipped, cut or
  appended byte is refused on load (:func:`unseal`) before anything in the file is believed.
* A column file's records are covered by a CRC-32 kept as they are appended (:class:`Checksum`,
  resumable from the value a header recorded), so saving a checkpoint never re-reads its columns:
  the header records each column's length and checksum, and loading recomputes them over exactly
  that many records.

These checks catch damage and hand edits; they are not signatures. Someone who rewrites a state
file and recomputes its digests on purpose is not stopped by them (the structural checks of
:mod:`.state_file` still refuse counts and slices that do not add up).
"""

from __future__ import annotations

import hashlib
import re
import zlib

from ..errors import ChanstatsError

DIGEST_KEY = "digest"
# The digest member is always the document's last, written exactly like this.
_TAIL = re.compile(r',\s*"digest": "([0-9a-f]{64})"\}\n?\Z')


def digest(body: str) -> str:
    """The hex BLAKE2b-256 of ``body``'s UTF-8 bytes."""
    return hashlib.blake2b(body.encode("utf-8"), digest_size=32).hexdigest()


def seal(body: str, separator: str = " ") -> str:
    """``body`` (a JSON object's text without its closing brace) with the digest of its bytes as
    its last member, closed, and a final newline."""
    return f'{body},{separator}"{DIGEST_KEY}": "{digest(body)}"}}\n'


def _tail(text: str):
    return _TAIL.search(text, max(0, len(text) - 200))


def has_seal(text: str) -> bool:
    """Whether ``text`` ends with a digest member (it may still not match)."""
    return _tail(text) is not None


def unseal(text: str, name: str) -> str:
    """The JSON document in ``text`` without its digest member, once the digest matches; a
    :class:`ChanstatsError` naming ``name`` otherwise."""
    match = _tail(text)
    if match is None:
        raise ChanstatsError(f"{name}: damaged partial state (no digest: cut short or edited)")
    body = text[: match.start()]
    if digest(body) != match.group(1):
        raise ChanstatsError(f"{name}: damaged partial state (digest mismatch)")
    return body + "}"


class Checksum:
    """A running CRC-32 of the bytes appended to a column file, resumable from a recorded value."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def update(self, data) -> None:
        """Add ``data`` (any contiguous buffer: bytes, a NumPy array)."""
        self.value = zlib.crc32(data, self.value)
