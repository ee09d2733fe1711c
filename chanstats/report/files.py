"""Config files: the JSON/YAML text of a config, atomic writes (all outputs or none) and safe reads.

The written config holds no timestamps, durations, host names or worker counts, so the same inputs
and options give the same bytes.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from typing import Any, Callable, Iterable, Sequence

from ..errors import ChanstatsError, cannot_write
from ..exits import stops_held_back
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
    pipe itself. A failure (a full disk, a read-only folder) raises :class:`ChanstatsError`
    naming ``path`` and leaves no temporary file behind.
    """
    write_all([(path, text)])


def write_all(outputs: Sequence[tuple[str, str | bytes | Iterable[str]]], before_commit: Callable[[], None] | None = None) -> None:
    """Write every ``(path, text)`` of ``outputs`` as :func:`write_atomic` does, all or none.

    Each is written in full to a temporary file beside its destination first; only when all of
    them are written (and ``before_commit``, for example printing to stdout, has succeeded) are
    they renamed into place, with Ctrl-C and SIGTERM held back for those few renames. If any
    fails, the temporary files of all are removed and the destinations are left as they were.
    """
    staged: list[_Staged] = []
    try:
        for path, text in outputs:
            staged.append(_Staged(path, text))
        if before_commit is not None:
            before_commit()
        with stops_held_back():
            for item in staged:  # direct writes first: they may fail, renames hardly can
                if item.temporary is None:
                    item.commit()
            for item in staged:
                if item.temporary is not None:
                    item.commit()
    except BaseException:
        for item in staged:
            item.discard()
        raise


class _Staged:
    """One output of :func:`write_all`: written to ``temporary`` beside its destination, or, for a
    destination that is not a regular file, kept in memory until :meth:`commit` writes it."""

    def __init__(self, path: str, text: str | bytes | Iterable[str]) -> None:
        self.name = path  # as the user wrote it, for messages
        self.binary = isinstance(text, bytes)
        pieces = [text] if isinstance(text, (str, bytes)) else text
        self.path = os.path.realpath(path) if os.path.islink(path) else path
        self.temporary: str | None = None
        if _exists_but_not_regular(self.path):
            self.pieces = list(pieces)
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            handle, self.temporary = tempfile.mkstemp(prefix=".chanstats-", suffix=".tmp", dir=directory)
        except OSError as error:
            raise cannot_write(path, error) from None
        try:
            with os.fdopen(handle, *self._mode()) as stream:
                stream.writelines(pieces)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(self.temporary, _permissions_for(self.path))
        except OSError as error:
            self.discard()
            raise cannot_write(path, error) from None
        except BaseException:
            self.discard()
            raise

    def _mode(self) -> tuple[str, ...]:
        return ("wb",) if self.binary else ("w", -1, "utf-8")

    def commit(self) -> None:
        try:
            if self.temporary is None:
                with open(self.path, *self._mode()) as stream:
                    stream.writelines(self.pieces)
            else:
                os.replace(self.temporary, self.path)
                self.temporary = None
        except OSError as error:
            raise cannot_write(self.name, error) from None

    def discard(self) -> None:
        if self.temporary is not None:
            try:
                os.unlink(self.temporary)
            except OSError:
                pass
            self.temporary = None


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
