"""The few exceptions chanstats raises on purpose.

The CLI turns every :class:`ChanstatsError` into one line on stderr and exit code 2; anything else
is a bug and shows a traceback.
"""

from __future__ import annotations


class ChanstatsError(Exception):
    """A problem with the user's input or options; the message is shown as is.

    Subclasses whose ``__init__`` takes other arguments than the message define ``__reduce__``, so
    that every error survives pickling: worker processes send them back to the main process.
    """


def cannot_write(path: str, error: OSError) -> ChanstatsError:
    """The one-line error for an output that could not be written: ``cannot write PATH: REASON``
    (``No space left on device``, ``Read-only file system``, ...)."""
    return ChanstatsError(f"cannot write {path}: {error.strerror or error}")


class BadImageError(ChanstatsError):
    """One file could not be turned into pixels: corrupt, truncated, not an image, too large."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):
        return type(self), (self.path, self.reason)


class DecompressionBombError(BadImageError):
    """An image whose header declares more pixels (or decoded bytes) than the decompression-bomb
    limit allows (see :mod:`chanstats.decoding.limits`): refused before anything is decoded."""


class BadImagesError(ChanstatsError):
    """Several bad files were found; the message lists each on its own line."""

    def __init__(self, bad: list[tuple[str, str]], summary: str):
        lines = [summary] + [f"  {path}: {reason}" for path, reason in bad]
        super().__init__("\n".join(lines))
        self.bad = bad
        self.summary = summary

    def __reduce__(self):
        return type(self), (self.bad, self.summary)


class NoImagesError(ChanstatsError):
    """The inputs held no file with an image extension."""


class BadSpecError(ChanstatsError):
    """A transform spec, config file or option value that cannot be used."""


class WorkerError(ChanstatsError):
    """Measuring stopped for a reason that is not the image's fault: an unexpected exception (a bug)
    while measuring a file, or a worker process that died (out of memory, a crash in a library).
    The message names the file; it is never skipped by ``--on-error skip``."""


def one_line(error: BaseException) -> str:
    r"""``Type: message`` of an exception, on one line, for messages that quote another error.

    >>> one_line(ValueError("bad\n  value"))
    'ValueError: bad value'
    """
    detail = " ".join(str(error).split())
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__
