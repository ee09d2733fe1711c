"""Config files: the JSON/YAML text of a config, atomic writes and safe reads.

The written config holds no timestamps, durations, host names or worker counts, so the same inputs
and options give the same bytes.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from ..errors import ChanstatsError

FORMATS = ("json", "yaml")


def format_for_path(path: str) -> str:
    return "yaml" if path.lower().endswith((".yaml", ".yml")) else "json"


def dumps(data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return _json_text(data, "") + "\n"
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    raise ChanstatsError(f"unknown format {fmt!r}: choose json or yaml")


def _json_text(value: Any, indent: str) -> str:
    """Indented JSON with each list of scalars on one line, so per-channel values read as a row."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {_json_text(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [inner + _json_text(v, inner) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return json.dumps(value, allow_nan=False)


def write_atomic(path: str, text: str | bytes) -> None:
    """Write ``text`` (or bytes) to ``path`` so that readers see the old file or the new one, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        handle, temporary = tempfile.mkstemp(prefix=".chanstats-", suffix=".tmp", dir=directory)
    except OSError as error:
        raise ChanstatsError(f"{path}: cannot write: {error.strerror or error}") from None
    try:
        binary = isinstance(text, bytes)
        with os.fdopen(handle, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def read_config(path: str) -> dict[str, Any]:
    """Read a config written by chanstats (JSON or YAML), with a clear error for anything else."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as error:
        raise ChanstatsError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        if format_for_path(path) == "yaml":
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ValueError as error:  # json.JSONDecodeError and yaml.YAMLError's parse errors
        raise ChanstatsError(f"{path}: not a valid config ({error})") from None
    except Exception as error:  # yaml.YAMLError does not derive from ValueError
        raise ChanstatsError(f"{path}: not a valid config ({error})") from None
    if not isinstance(data, dict) or "chanstats" not in data or "exact" not in data:
        raise ChanstatsError(f"{path}: not a chanstats config (no 'chanstats'/'exact' keys)")
    return data
