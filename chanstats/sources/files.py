"""Image files as a source kind: each file one item, read whole into memory (decoders work from
bytes), or opened by a decoder that reads only the parts it needs (a TIFF's segments).

Folders are walked by :mod:`~chanstats.sources.folders` and files named as inputs are listed by
:mod:`~chanstats.sources.listing`: this is the kind every path is when no other kind claims it.
"""

from __future__ import annotations

import os
import stat as stat_module
from typing import BinaryIO

from ..errors import BadImageError
from . import storage
from .base import Encoded, ImageSource, RemoteImageFile, SourceKind

_TIFF_SUFFIXES = (".tif", ".tiff")


def read(source: ImageSource) -> Encoded:
    """The file's bytes, read when asked; a file named as a TIFF says so (its bytes decide). A
    remote file is fetched whole, like any object (a request per TIFF segment would cost more),
    and checked against the size and version listed."""
    hint = "tiff" if source.name.lower().endswith(_TIFF_SUFFIXES) else None
    if isinstance(source, RemoteImageFile):
        return Encoded(lambda: storage.read(source), hint=hint)
    return Encoded(lambda: read_file(source), hint=hint, file=source.path)


def read_file(source: ImageSource) -> bytes:
    """The bytes of a file, in one go. Raises :class:`~chanstats.errors.BadImageError` for a file
    that cannot be read or is not a regular file."""
    with open_file(source) as stream:
        try:
            return stream.read()
        except OSError as error:
            raise BadImageError(source.display, f"cannot read: {error.strerror or error}") from None


def open_file(source: ImageSource) -> BinaryIO:
    """A plain file's stream, for a reader that reads only the parts it needs (a TIFF's segments).

    Raises :class:`~chanstats.errors.BadImageError` as :func:`read_file` does for a file that
    cannot be opened or is not a regular file.
    """
    # O_NONBLOCK: a file that became a FIFO after listing must not hang the run; the fstat
    # refuses it before any read. (No effect on reading regular files.)
    try:
        descriptor = os.open(source.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise BadImageError(source.display, f"cannot read: {error.strerror or error}") from None
    stream = open(descriptor, "rb")
    if not stat_module.S_ISREG(os.fstat(descriptor).st_mode):
        stream.close()
        raise BadImageError(source.display, "not a regular file")
    return stream


KIND = SourceKind("image file", ImageSource, read, also=(RemoteImageFile,))
