"""Config files: the JSON/YAML text of a config, atomic writes and safe reads.

The written config holds no timestamps, durations, host names or worker counts, so the same inputs
and options give the same bytes.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from typing import Any, Iterable

from ..errors import ChanstatsError
from .validate import validate_config

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


def write_atomic(path: str, text: str | bytes | Iterable[str]) -> None:
    """Write ``text`` (or bytes, or consecutive pieces of text) to ``path`` so that readers see the
    old file or the new one, never half.

    The new file is written beside the old one and renamed over it. A symbolic link is followed (the
    file it points to is replaced, the link stays), and a path that is not a regular file (``/dev/null``,
    ``/dev/stdout``, a FIFO) is written to directly: renaming over it would replace the device or
    pipe itself.
    """
    binary = isinstance(text, bytes)
    pieces = [text] if isinstance(text, (str, bytes)) else text
    mode, encoding = ("wb", {}) if binary else ("w", {"encoding": "utf-8"})
    path = os.path.realpath(path) if os.path.islink(path) else path
    if _exists_but_not_regular(path):
        try:
            with open(path, mode, **encoding) as stream:
                stream.writelines(pieces)
        except OSError as error:
            raise ChanstatsError(f"{path}: cannot write: {error.strerror or error}") from None
        return
    directory = os.path.dirname(os.path.abspath(path))
    try:
        handle, temporary = tempfile.mkstemp(prefix=".chanstats-", suffix=".tmp", dir=directory)
    except OSError as error:
        raise ChanstatsError(f"{path}: cannot write: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, mode, **encoding) as stream:
            stream.writelines(pieces)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, _permissions_for(path))
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _exists_but_not_regular(path: str) -> bool:
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _permissions_for(path: str) -> int:
    """What ``open(path, "w")`` would leave: an existing file keeps its permissions, a new one gets
    0o666 less the umask (the temporary file starts at 0o600 whatever the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        pass
    umask = os.umask(0o022)  # the only way to read it; set straight back
    os.umask(umask)
    return 0o666 & ~umask


def read_config(path: str) -> dict[str, Any]:
    """Read a config written by chanstats (JSON or YAML), with a one-line error for anything else.

    Every way a file can fail to be a config (unreadable, empty, binary, not UTF-8, not JSON/YAML,
    not a mapping, unusable statistics: see :func:`~chanstats.report.validate.validate_config`) raises :class:`ChanstatsError` naming the file, so ``check``
    can never mistake an unusable config for drift.
    """
    try:
        with open(path, "rb") as stream:
            raw = stream.read()
    except OSError as error:
        raise ChanstatsError(f"{path}: cannot read: {error.strerror or error}") from None
    if not raw.strip():
        raise ChanstatsError(f"{path}: empty file, not a chanstats config")
    if b"\0" in raw:
        raise ChanstatsError(f"{path}: a binary file, not a chanstats config (JSON or YAML text)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ChanstatsError(f"{path}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}), not a chanstats config") from None
    data = _parse_config(path, text)
    if not isinstance(data, dict) or "chanstats" not in data or "exact" not in data:
        raise ChanstatsError(f"{path}: not a chanstats config (no 'chanstats'/'exact' keys)")
    validate_config(data, path)
    return data


def _parse_config(path: str, text: str) -> Any:
    try:
        if format_for_path(path) == "yaml":
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except RecursionError:
        raise ChanstatsError(f"{path}: not a valid config (nested too deeply)") from None
    except Exception as error:  # json.JSONDecodeError, and yaml.YAMLError, which is no ValueError
        reason = " ".join(str(error).split())  # one line: YAML errors span several
        raise ChanstatsError(f"{path}: not a valid config ({reason})") from None
