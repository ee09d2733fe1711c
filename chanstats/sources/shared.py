"""Listing once for several processes: shards of one job, torchrun ranks, a resumed run.

With a work directory (``--workdir DIR``) the listing's column files are kept there, in a folder
named by a hash of what decides the listing: the inputs (as absolute paths), the extensions, the
table column and the chanstats version, plus torchrun's run id under torchrun. The folder is
written under a temporary name and renamed into place with a header once complete, so a reader
never sees half a listing, and when two processes list at once the first to finish wins.

A saved listing is reused only while what it was listed from is unchanged: the header records the
modification time and size of every folder walked and every file, shard and list file named, and
they are checked (one ``stat`` per folder, not per image) before reuse. Adding, removing or
renaming an image changes its folder's modification time; rewriting an image in place under the
same name does not, so images must not be rewritten while the shards of one job start.

Under torchrun only rank 0 lists; the other ranks wait for its listing to appear (or for its
error) in the shared work directory, which therefore must be on a file system all ranks see.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import Any, Sequence

from .._version import __version__
from ..errors import ChanstatsError
from . import stored
from .base import ImageSource, Listing
from . import storage
from .listing import list_images

# How long a rank waits for rank 0's listing (listing a hundred million files takes hours).
WAIT_SECONDS = 6 * 3600.0
POLL_SECONDS = 0.5


def listing_key(inputs: Sequence[str], extensions: Sequence[str], column: str | None) -> dict[str, Any]:
    """What decides a listing, as recorded in its header."""
    key: dict[str, Any] = {
        "inputs": [_absolute(item) for item in inputs],
        "extensions": list(extensions),
        "column": column,
        "version": __version__,
    }
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if run_id is not None:
        key["torchrun"] = run_id  # ranks of one torchrun job share, other jobs list afresh
    return key


def _absolute(item: str) -> str:
    if storage.is_url(item.lstrip("@")):
        return storage.redact(item)
    return "@" + os.path.abspath(item[1:]) if item.startswith("@") else os.path.abspath(item)


def folder_for(workdir: str, key: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:24]
    return os.path.join(workdir, f"listing-{digest}")


def list_shared(inputs: Sequence[str], extensions: tuple[str, ...], column: str | None, workdir: str | None,
                *, wait: bool = False) -> Sequence[ImageSource]:
    """The listing of ``inputs``: reused from ``workdir`` when a valid one is saved there, else
    listed (and saved there). ``wait``: list nothing, wait for another process (torchrun's rank 0)
    to save it. Without ``workdir``, simply :func:`~chanstats.sources.listing.list_images`."""
    if workdir is None:
        return list_images(inputs, extensions)
    _check_writable(workdir)
    key = listing_key(inputs, extensions, column)
    folder = folder_for(workdir, key)
    if wait:
        return _wait_for(folder, key)
    found = _reuse(folder, key)
    if found is not None:
        return found
    _clear(folder)
    failure = folder + ".failed"
    try:
        os.remove(failure)  # an earlier attempt's
    except OSError:
        pass
    read: list[str] = []

    def save(writer: stored.ListingWriter, fingerprint: str) -> Listing:
        return stored.save(writer, folder, key, fingerprint, {"stamps": _stamps(read)})

    try:
        return list_images(inputs, extensions, workdir=workdir, read=read, saver=save)
    except ChanstatsError as error:
        _write_failure(failure, key, str(error))
        raise


def _check_writable(workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as error:
        raise ChanstatsError(f"--workdir {workdir}: cannot create it: {error.strerror or error}") from None
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise ChanstatsError(f"--workdir {workdir}: not writable")


def _reuse(folder: str, key: dict[str, Any]) -> Listing | None:
    """The listing saved in ``folder`` if it was listed from the same, unchanged inputs."""
    loaded = stored.load(folder)
    if loaded is None:
        return None
    header, listing = loaded
    if header.get("key") != key or header.get("stamps") != _stamps([path for path, _ in header.get("stamps", [])]):
        return None
    listing._columns.fingerprint = header["fingerprint"]
    return listing


def _clear(folder: str) -> None:
    """Remove a stale saved listing (renamed away first, so no reader sees it half removed)."""
    if os.path.exists(folder):
        trash = f"{folder}.stale-{os.getpid()}-{time.monotonic_ns()}"
        try:
            os.rename(folder, trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)


def _stamps(paths: list[str]) -> list[list[Any]]:
    """Each path with its modification time and size (``None`` when gone)."""
    stamps = []
    for path in paths:
        if storage.is_url(path):
            stamps.append([storage.redact(path), storage.stamp(path)])
            continue
        try:
            stat = os.stat(path)
            stamps.append([path, [stat.st_mtime_ns, stat.st_size]])
        except OSError:
            stamps.append([path, None])
    return stamps


def _write_failure(path: str, key: dict[str, Any], message: str) -> None:
    temporary = path + ".tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({"key": key, "error": message}, handle)
        os.replace(temporary, path)
    except OSError:
        # A full disk, most likely: the waiting ranks time out instead, and torchrun stops them
        # when this one exits. Nothing is left half-written.
        try:
            os.unlink(temporary)
        except OSError:
            pass


def _wait_for(folder: str, key: dict[str, Any]) -> Listing:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = _reuse(folder, key)
        if found is not None:
            return found
        try:
            with open(folder + ".failed", encoding="utf-8") as handle:
                failure = json.load(handle)
            if failure.get("key") == key:
                raise ChanstatsError(f"rank 0 could not list the images: {failure.get('error')}")
        except (OSError, ValueError):
            pass
        time.sleep(POLL_SECONDS)
    raise ChanstatsError(f"{folder}: no listing appeared in {WAIT_SECONDS:.0f} s (rank 0 lists the images; is the "
                         "work directory on a file system every rank sees?)")
