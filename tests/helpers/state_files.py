"""Editing chanstats' state files as a person or a tool would, for tests of their integrity checks.

Written from the documented format (docs/reliability.md), not with chanstats' own code: a state file's
last member is ``"digest": "<hex>"``, the BLAKE2b-256 of every byte before that member.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

_TAIL = re.compile(r',(\s*)"digest": "[0-9a-f]{64}"\}\n\Z')


def reseal(text: str) -> str:
    """``text`` with its digest recomputed: an edit that a digest alone would not catch."""
    match = _TAIL.search(text)
    assert match is not None, "not a sealed state file"
    body = text[: match.start()]
    return f'{body},{match.group(1)}"digest": "{hashlib.blake2b(body.encode(), digest_size=32).hexdigest()}"}}\n'


def copy_state(header: Path, into: Path) -> Path:
    """Copy a state file and its ``.columns`` folder (if any) into ``into``; the copy's header."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / header.name
    shutil.copyfile(header, target)
    columns = header.with_name(header.name + ".columns")
    if columns.is_dir():
        shutil.copytree(columns, into / columns.name)
    return target


def flip_byte(path: Path, position: int) -> None:
    """Flip every bit of the byte at ``position`` (negative: from the end)."""
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def edit_json(path: Path, change) -> None:
    """Parse the state file, let ``change`` edit the document, write it back with a matching
    digest: a consistent file whose content no longer adds up."""
    import json

    data = json.loads(path.read_text())
    del data["digest"]
    change(data)
    body = json.dumps(data)[:-1]
    path.write_text(f'{body}, "digest": "{hashlib.blake2b(body.encode(), digest_size=32).hexdigest()}"}}\n')
