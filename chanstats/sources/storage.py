"""Data where it lives: object storage and HTTP(S) as a file system under the existing kinds of
source (fsspec). A folder, a tar shard or a Parquet table may be local or a URL
(``s3://bucket/prefix``, ``gs://``, ``az://``, ``hf://``, ``https://``); this module is the one
place that knows the difference.

What it gives the kinds of source:

- :func:`is_url`, :func:`stat` (object or prefix, size and *version*: ETag, generation or
  version id), :func:`walk` (a prefix listed recursively in the order of a local folder: sorted by
  the bytes of the relative path, hidden entries skipped; S3 is paged and streamed, since its
  listing already comes in that order), :func:`open_file` (a seekable file for tar headers and
  Parquet row groups, read through range requests) and :func:`read` (an object's or a tar
  member's bytes, checked against the version seen when listing).
- Retries: connection resets, timeouts, 429 and 5xx are retried with exponential backoff, at most
  :data:`RETRIES` times per request (``--storage-option retries=N``), then one line naming the
  object stops the run; 403 stops it at once and 404 (an object gone since listing) is a bad
  image. An object whose version or size changed since listing is a bad image too: bytes of two
  versions are never mixed.
- Latency is hidden by concurrency: :func:`read_ahead` keeps up to :data:`READ_AHEAD` requests in
  flight for the objects a worker is about to measure, and reads consecutive members of a tar shard
  with one range request.
- Credentials come the way each ecosystem configures them (AWS environment and profiles,
  ``AWS_ENDPOINT_URL``, ``gcloud``, ``az``, ``HF_TOKEN``), plus storage options given with
  ``--storage-option KEY=VALUE`` or ``storage_options=``. They are handed to worker processes
  through their environment, never written anywhere, and :func:`redact` removes them (and
  passwords or signatures inside URLs) from every message.

Nothing here imports fsspec until a URL is met, so local runs and ``--help`` do not pay for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ..errors import BadImageError, ChanstatsError
from .base import ArchiveMember, ContainedItem, ImageSource, Listed, RemoteImageFile

# Each protocol → the package fsspec needs for it and the chanstats extra that installs it.
PROTOCOL_PACKAGES: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"), "abfss": ("adlfs", "azure"), "adl": ("adlfs", "azure"),
    "hf": ("huggingface_hub", "hf"),
    "http": ("aiohttp", "http"), "https": ("aiohttp", "http"),
}

# Attempts after the first for one request, and the first wait (doubling, at most MAX_WAIT, times a
# jitter of 0.5 to 1): 12 to 23 s of waiting in all before a store that keeps failing stops the run.
RETRIES = 8
FIRST_WAIT = 0.1
MAX_WAIT = 10.0
# Requests a worker keeps in flight ahead of the image it measures.
READ_AHEAD = 16
# Consecutive tar members read with one range request: at most this many bytes (times READ_AHEAD:
# what a worker may hold in flight), gaps up to GAP.
COALESCE_BYTES = 4 << 20
COALESCE_GAP = 64 << 10
# What a read that skips more than a block fetches at least.
SMALL_READ = 64 << 10
# Keys per page when listing an S3 prefix (S3's largest page).
PAGE_KEYS = 1000
# Sequential reads (tar headers while listing, a gzip shard) fetch this much per request.
BLOCK = 4 << 20

# The environment variable that hands storage options to worker processes (spawned ones too).
OPTIONS_VARIABLE = "CHANSTATS_STORAGE_OPTIONS"
# Options chanstats reads itself rather than passing to the file system.
_OWN_OPTIONS = ("retries", "read_ahead")
# Identities of remote objects (see chanstats.sources.listing): a group no local device number has.
REMOTE = -2

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_url(path: str) -> bool:
    """Whether ``path`` names data through a file system other than the local one.

    >>> is_url("s3://bucket/train"), is_url("https://host/a.png"), is_url("data/a.png"), is_url("file:///tmp")
    (True, True, False, False)
    """
    match = _URL.match(path)
    return match is not None and match.group(1).lower() != "file"


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0].lower()


# --- options and credentials -------------------------------------------------------------------


def parse_storage_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``--storage-option KEY=VALUE`` pairs as keyword arguments of the file system: ``true``,
    ``false``, ``null`` and numbers become JSON values, dotted keys nest.

    >>> parse_storage_options(["anon=true", "client_kwargs.region_name=eu-west-1", "retries=2"])
    {'anon': True, 'client_kwargs': {'region_name': 'eu-west-1'}, 'retries': 2}
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ChanstatsError(f"--storage-option {key.strip() or pair!r}: expected KEY=VALUE")
        value: Any = text
        if text in ("true", "false", "null") or re.fullmatch(r"-?\d+(\.\d+)?", text):
            value = json.loads(text)
        target = options
        *parents, last = key.strip().split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = value
    return options


@contextlib.contextmanager
def storage_options(options: dict[str, Any] | None) -> Iterator[None]:
    """Use ``options`` (keyword arguments of every file system, plus ``retries`` and
    ``read_ahead``) for the duration; ``None`` or empty: leave things as they are. Worker processes
    started inside inherit them through their environment."""
    if not options:
        yield
        return
    before = os.environ.get(OPTIONS_VARIABLE)
    try:
        text = json.dumps(options, sort_keys=True)
    except (TypeError, ValueError):
        raise ChanstatsError("storage_options must be JSON-like (strings, numbers, booleans, lists, dicts)") from None
    os.environ[OPTIONS_VARIABLE] = text
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(OPTIONS_VARIABLE, None)
        else:
            os.environ[OPTIONS_VARIABLE] = before


def _given_options() -> dict[str, Any]:
    text = os.environ.get(OPTIONS_VARIABLE)
    return json.loads(text) if text else {}


def _setting(name: str, default: int) -> int:
    value = _given_options().get(name, default)
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        raise ChanstatsError(f"--storage-option {name}={value}: expected a whole number") from None


_SECRET_KEY = re.compile(r"secret|token|password|passwd|credential|signature|sas|private|access_key|auth|cookie|"
                         r"key$|^key", re.IGNORECASE)
_SECRET_ENVIRONMENT = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "HF_TOKEN",
                       "HUGGING_FACE_HUB_TOKEN", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
                       "AZURE_STORAGE_CONNECTION_STRING", "AZURE_CLIENT_SECRET", "GOOGLE_OAUTH_ACCESS_TOKEN")
_SIGNED_QUERY = re.compile(r"(?i)([?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|sig|signature|"
                           r"token|access_token|se|sv|sp)=)[^&#\s]*")
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*):[^/@\s]*@")


def _secrets() -> list[str]:
    found = [os.environ[name] for name in _SECRET_ENVIRONMENT if os.environ.get(name)]

    def collect(options: Any, secret: bool) -> None:
        if isinstance(options, dict):
            for key, value in options.items():
                collect(value, secret or bool(_SECRET_KEY.search(str(key))))
        elif isinstance(options, (list, tuple)):
            for value in options:
                collect(value, secret)
        elif secret and isinstance(options, str) and options:
            found.append(options)

    collect(_given_options(), False)
    return sorted((secret for secret in found if len(secret) >= 4), key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` without credentials: values of secret storage options and of the credential
    variables of the environment, URL passwords and signed-URL query parameters become ``***``.

    >>> redact("https://user:hunter22@host/a.png?X-Amz-Signature=abc123&b=1")
    'https://user:***@host/a.png?X-Amz-Signature=***&b=1'
    """
    for secret in _secrets():
        text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    return _SIGNED_QUERY.sub(r"\1***", text)


def redact_url(url: str) -> str:
    """A URL as configs record it: without a password or a signature (local paths unchanged)."""
    return redact(url) if is_url(url) else url


# --- file systems --------------------------------------------------------------------------------

_filesystems: dict[tuple, Any] = {}
_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION",
                *_SECRET_ENVIRONMENT)
_filesystems_lock = threading.Lock()


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec file system for ``url`` (one per protocol, options and process) and the path
    inside it. A protocol whose package is missing is one line naming the extra to install; a
    URL holding a password is refused (it would be written wherever the URL is: configs, partial
    states, skipped images)."""
    if _URL_PASSWORD.match(url):
        raise ChanstatsError(f"{redact(url)}: a password inside a URL would be written to the outputs; give it as "
                             "--storage-option headers.Authorization=... or in the environment instead")
    protocol = protocol_of(url)
    given = {k: v for k, v in _given_options().items() if k not in _OWN_OPTIONS}
    # The environment a file system was made with is part of what it is: a long-lived process
    # (a notebook, tests) may change the endpoint or the credentials between runs.
    environment = tuple(os.environ.get(name) for name in _ENVIRONMENT)
    key = (protocol, os.getpid(), json.dumps(given, sort_keys=True), environment)
    with _filesystems_lock:
        fs = _filesystems.get(key)
        if fs is None:
            fs = _filesystems[key] = _new_filesystem(protocol, given, url)
    return fs, fs._strip_protocol(url) if protocol not in ("http", "https") else url


def _new_filesystem(protocol: str, given: dict[str, Any], url: str) -> Any:
    package, extra = PROTOCOL_PACKAGES.get(protocol, ("fsspec", protocol))
    try:
        import fsspec

        cls = fsspec.get_filesystem_class(protocol)
    except ImportError:
        raise ChanstatsError(f"{redact(url)}: reading {protocol}:// needs {package}: "
                             f"pip install 'chanstats[{extra}]'") from None
    except ValueError:
        raise ChanstatsError(f"{redact(url)}: unknown protocol {protocol}://") from None
    options = dict(given)
    if protocol in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and "endpoint_url" not in options and "endpoint_url" not in options.get("client_kwargs", {}):
            options["endpoint_url"] = endpoint
        # chanstats retries (see _with_retries): one attempt inside botocore and s3fs.
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("retries", {"total_max_attempts": 1})
        options["config_kwargs"] = config
    options.setdefault("skip_instance_cache", True)
    try:
        fs = cls(**options)
    except Exception as error:  # a wrong option: the file system's own message, without secrets
        raise ChanstatsError(f"{redact(url)}: cannot set up {protocol}://: {redact(_one_line(error))}") from None
    if hasattr(fs, "retries"):
        fs.retries = 1
    return fs


# --- errors and retries --------------------------------------------------------------------------


class _Transient(Exception):
    """A failure worth trying again (connection reset, timeout, 429, 5xx)."""


def _status(error: BaseException) -> int | None:
    """The HTTP status behind an error of aiohttp, botocore or fsspec, if any."""
    seen = 0
    while error is not None and seen < 8:
        # Not ``code``: aiohttp's parser errors carry code 400 for a body cut short.
        status = getattr(error, "status", None) or getattr(error, "status_code", None)
        if isinstance(status, int) and 100 <= status < 600:
            return status
        response = getattr(error, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(status, int):
                return status
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def _is_transient(error: BaseException) -> bool:
    status = _status(error)
    if status is not None:
        return status == 429 or status >= 500 or status == 408
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    names = {cls.__name__ for cls in type(error).__mro__}
    transient = {"OSError", "TimeoutError", "ClientError", "ClientPayloadError", "ServerDisconnectedError",
                 "ClientConnectionError", "BotoCoreError", "HTTPClientError", "EndpointConnectionError",
                 "ConnectionClosedError", "ReadTimeoutError", "IncompleteReadError", "ResponseStreamingError",
                 "FSTimeoutError", "ProtocolError", "ContentLengthError"}
    return bool(names & transient) and "ClientResponseError" not in names


class ObjectGone(Exception):
    """404 for an object that was listed."""


def _describe(error: BaseException) -> str:
    status = _status(error)
    text = redact(_one_line(error))
    return f"HTTP {status}: {text}" if status is not None and str(status) not in text else text


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _with_retries(url: str, attempt):
    """``attempt()``'s result, retrying transient failures with exponential backoff and jitter."""
    retries = _setting("retries", RETRIES)
    for number in range(retries + 1):
        try:
            return attempt()
        except (BadImageError, ChanstatsError, ObjectGone):
            raise
        except Exception as error:
            status = _status(error)
            if status == 404 or isinstance(error, FileNotFoundError):
                raise ObjectGone() from None
            if status in (401, 403) or isinstance(error, PermissionError):
                raise ChanstatsError(f"{redact(url)}: access denied ({_describe(error)}); "
                                     "check the credentials (see docs: Data in object storage)") from None
            if not _is_transient(error):
                raise ChanstatsError(f"{redact(url)}: cannot read: {_describe(error)}") from None
            if number == retries:
                raise ChanstatsError(f"{redact(url)}: still failing after {retries + 1} attempts "
                                     f"({_describe(error)}); the storage is unreachable or overloaded") from None
            wait = min(MAX_WAIT, FIRST_WAIT * 2 ** number)
            time.sleep(wait * (0.5 + random.random() / 2))
    raise AssertionError("unreachable")


# --- what an object is ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """An object or a prefix: ``folder``, and for an object its size and version (ETag,
    generation or version id; ``None`` when the store gives none)."""

    url: str
    folder: bool
    size: int = 0
    version: str | None = None


def version_of(info: dict[str, Any]) -> str | None:
    """The version a store reports for an object, as text (ETag first).

    >>> version_of({"ETag": '"9a0364b9e99bb480dd25e1f0284c8555"', "size": 3})
    '9a0364b9e99bb480dd25e1f0284c8555'
    """
    for field in ("ETag", "etag", "generation", "VersionId", "version_id", "blob_id", "md5Hash", "Content-MD5",
                  "Digest", "Last-Modified", "LastModified", "last_modified", "mtime"):
        value = info.get(field)
        if value not in (None, ""):
            return str(value).strip('"')
    lfs = info.get("lfs")
    if isinstance(lfs, dict) and lfs.get("sha256"):
        return str(lfs["sha256"])
    return None


def version_tag(version: str | None) -> int:
    """A version as a non-negative 63-bit number (kept in a listing's offset column); -1: none."""
    if version is None:
        return -1
    return int.from_bytes(hashlib.sha256(version.encode("utf-8", "surrogateescape")).digest()[:8], "big") >> 1


def identity(url: str, *more: int) -> tuple[int, ...]:
    """A remote object's identity for de-duplication (see :class:`chanstats.sources.listing.FirstSightings`)."""
    return (REMOTE, version_tag(url), *more)


# Versions of objects named explicitly (shards, tables), as listing saw them (see remember): what
# a worker checks every range it reads against (inherited by forked workers; others check against
# the first version they see).
_listed_versions: dict[str, str | None] = {}


def stat(url: str) -> Entry | None:
    """What ``url`` is: an object, a prefix holding objects, or ``None`` when neither exists.
    Raises :class:`ChanstatsError` for access denied or a store that keeps failing."""
    fs, path = filesystem(url)
    if protocol_of(url) in ("http", "https") and url.endswith("/"):
        return Entry(url, True)
    try:
        info = _with_retries(url, lambda: _s3_info(fs, path) if protocol_of(url) in ("s3", "s3a") else fs.info(path))
    except ObjectGone:
        return None
    if info.get("type") == "directory" or _is_index_page(url, info):
        return Entry(url, True)
    size = info.get("size")
    return Entry(url, False, -1 if size is None else int(size), version_of(info))


def remember(entry: Entry) -> None:
    """Listing names the object ``entry`` (a shard, a table, a list file): its version is what
    every later read of it is checked against, and opening it needs no second request."""
    _listed_versions[entry.url] = entry.version
    _named[entry.url] = (os.getpid(), entry)


def _is_index_page(url: str, info: dict[str, Any]) -> bool:
    """An HTTP URL that answers with an HTML page and names no file: a folder's index, whose
    links fsspec follows to list it."""
    if protocol_of(url) not in ("http", "https"):
        return False
    last = url.rstrip("/").rsplit("/", 1)[-1]
    return str(info.get("mimetype", "")).startswith("text/html") and "." not in last


def stat_many(urls: Sequence[str]) -> list[Entry | None]:
    """:func:`stat` of each URL, several requests at a time (the shards of a brace pattern)."""
    if len(urls) < 2:
        return [stat(url) for url in urls]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(urls), _setting("read_ahead", READ_AHEAD))) as pool:
        return list(pool.map(stat, urls))


# The entries of objects named explicitly, as stat found them this run (not one per walked object).
_named: dict[str, tuple[int, Entry]] = {}


def _s3_info(fs: Any, path: str) -> dict[str, Any]:
    """An object's HEAD, else whether the prefix holds anything: each one request, whose
    failures reach :func:`_with_retries` as they are (s3fs's ``info`` takes some for absence)."""
    from fsspec.asyn import sync

    bucket, _, key = path.partition("/")
    if key:
        try:
            head = sync(fs.loop, fs._call_s3, "head_object", Bucket=bucket, Key=key)
            return {**head, "size": head["ContentLength"], "type": "file"}
        except Exception as error:
            if not (_status(error) == 404 or isinstance(error, FileNotFoundError)):
                raise
    prefix = key.rstrip("/") + "/" if key else ""
    page = sync(fs.loop, fs._call_s3, "list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
    if page.get("KeyCount") or page.get("Contents"):
        return {"type": "directory"}
    raise FileNotFoundError(path)


def listed_version(url: str) -> str | None:
    return _listed_versions.get(url)


def fingerprint_tag(source: ImageSource) -> bytes:
    """What a remote source adds to the listing's fingerprint: its version (a tar member or table
    row: its shard's)."""
    tag = version_tag(_listed_versions.get(source.root)) if isinstance(source, ContainedItem) else _version(source)
    return b"@%d\n" % tag


def stamp(url: str) -> list[Any] | None:
    """A named object's size and version, for deciding whether a saved listing is still valid."""
    try:
        entry = stat(url)
    except ChanstatsError:
        return None
    return None if entry is None else [entry.size, entry.version]


# --- listing a prefix ----------------------------------------------------------------------------


def walk(url: str, extensions: tuple[str, ...]) -> Iterator[Listed]:
    """The objects under the prefix ``url`` with an image extension, as a local folder's walk
    gives them: sorted by the bytes of the path relative to ``url``, hidden entries (a component
    starting with ``.``) left out. Each source's offset holds its version's tag."""
    root = url.rstrip("/")
    for relative, size, version in _objects_under(url):
        if not relative.lower().endswith(extensions) or _hidden(relative):
            continue
        source = RemoteImageFile(root, relative, size, None, version_tag(version))
        yield source, identity(root + "/" + relative)


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/"))


def _objects_under(url: str) -> Iterator[tuple[str, int, str | None]]:
    fs, path = filesystem(url)
    if protocol_of(url) in ("s3", "s3a"):
        yield from _s3_pages(url, fs, path)
        return
    # Other stores: their find, sorted here (the listing is held while sorted).
    prefix = path.rstrip("/") + "/"
    try:
        found = _with_retries(url, lambda: fs.find(path, detail=True))
    except ObjectGone:
        raise ChanstatsError(f"{redact(url)}: no such prefix") from None
    rows = []
    for name, info in found.items():
        if info.get("type") == "directory" or not name.startswith(prefix):
            continue
        relative = name[len(prefix):]
        rows.append((relative.encode("utf-8", "surrogateescape"), relative, int(info.get("size") or 0), version_of(info)))
    rows.sort()
    if protocol_of(url) in ("http", "https"):
        yield from _with_http_details(fs, prefix, rows)
        return
    for _, relative, size, version in rows:
        yield relative, size, version


def _with_http_details(fs: Any, prefix: str, rows: list) -> Iterator[tuple[str, int, str | None]]:
    """An index page's links carry neither size nor version: a HEAD for each, several at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def details(relative: str) -> tuple[int, str | None]:
        url = prefix + relative
        try:
            info = _with_retries(url, lambda: fs.info(url))
        except ObjectGone:
            return 0, None  # gone since the index page was read: a bad image when read
        return int(info.get("size") or 0), version_of(info)

    with ThreadPoolExecutor(max_workers=_setting("read_ahead", READ_AHEAD)) as pool:
        for start in range(0, len(rows), 1024):
            batch = [relative for _, relative, _, _ in rows[start : start + 1024]]
            for relative, (size, version) in zip(batch, pool.map(details, batch)):
                yield relative, size, version


def _s3_pages(url: str, fs: Any, path: str) -> Iterator[tuple[str, int, str | None]]:
    """S3 keys under a prefix, a page of up to 1,000 at a time: S3 returns keys in the order of
    their UTF-8 bytes, the order a local walk gives, so nothing is held but one page."""
    from fsspec.asyn import sync

    bucket, _, key = path.partition("/")
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    token: str | None = None
    while True:
        arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": PAGE_KEYS}
        if token:
            arguments["ContinuationToken"] = token
        page = _with_retries(url, lambda: sync(fs.loop, fs._call_s3, "list_objects_v2", **arguments))
        for item in page.get("Contents", ()):
            name = item["Key"]
            if name.endswith("/"):
                continue  # a "folder" marker object
            yield name[len(prefix):], int(item["Size"]), version_of(item)
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return


# --- reading -------------------------------------------------------------------------------------


def fetch(url: str, start: int | None = None, end: int | None = None) -> tuple[bytes, str | None]:
    """Bytes ``[start, end)`` of the object (all of it when ``start`` is ``None``) and the version
    the store answered with, retried as :func:`_with_retries` says. Raises :class:`ObjectGone`."""
    fs, path = filesystem(url)
    return _with_retries(url, lambda: _fetch_once(fs, url, path, start, end))


def _fetch_once(fs: Any, url: str, path: str, start: int | None, end: int | None) -> tuple[bytes, str | None]:
    protocol = protocol_of(url)
    if protocol in ("s3", "s3a"):
        from fsspec.asyn import sync

        return sync(fs.loop, _s3_get, fs, path, start, end)
    if protocol in ("http", "https"):
        from fsspec.asyn import sync

        return sync(fs.loop, _http_get, fs, url, start, end)
    data = fs.cat_file(path, start=start, end=end)
    return data, None


async def _s3_get(fs: Any, path: str, start: int | None, end: int | None) -> tuple[bytes, str | None]:
    bucket, key, version_id = fs.split_path(path)
    arguments: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        arguments["VersionId"] = version_id
    if start is not None:
        arguments["Range"] = f"bytes={start}-{end - 1}" if end is not None else f"bytes={start}-"
    response = await fs._call_s3("get_object", **arguments)
    body = response["Body"]
    try:
        data = await body.read()
    finally:
        body.close()
    length = response.get("ContentLength")
    if isinstance(length, int) and len(data) != length:
        raise ConnectionResetError(f"connection closed after {len(data)} of {length} bytes")
    return data, version_of(response)


async def _http_get(fs: Any, url: str, start: int | None, end: int | None) -> tuple[bytes, str | None]:
    session = await fs.set_session()
    kwargs = dict(fs.kwargs)
    headers = dict(kwargs.pop("headers", None) or {})
    if start is not None:
        headers["Range"] = f"bytes={start}-{end - 1}" if end is not None else f"bytes={start}-"
    async with session.get(fs.encode_url(url), headers=headers, **kwargs) as response:
        if response.status >= 400:
            response.raise_for_status()
        data = await response.read()
        # Header names are case-insensitive (HTTP/2 sends them in lower case).
        version = version_of({name: response.headers[name] for name in _VERSION_HEADERS if name in response.headers})
        if start is not None and response.status == 200:  # the server ignored the range
            data = data[start:end]
    return data, version


_VERSION_HEADERS = ("ETag", "Content-MD5", "Digest", "Last-Modified")


def _check_version(source: ImageSource, url: str, version: str | None) -> None:
    """Refuse bytes of another version than the one listed (a source, or a shard's member)."""
    if isinstance(source, ContainedItem):
        expected = _listed_versions.setdefault(url, version)  # first seen, when not inherited
        changed = version is not None and expected is not None and version != expected
    else:
        changed = version is not None and _version(source) >= 0 and version_tag(version) != _version(source)
    if changed:
        what = "shard" if isinstance(source, ContainedItem) else "object"
        raise BadImageError(source.display, f"the {what} changed since listing (version {version}); "
                                            "measuring it would mix two versions")


def _version(source: ImageSource) -> int:
    """A remote file's version tag as listed (-1: none)."""
    return source.version if isinstance(source, RemoteImageFile) else -1


def _gone(source: ImageSource) -> BadImageError:
    what = "shard" if isinstance(source, ContainedItem) else "object"
    return BadImageError(source.display, f"the {what} vanished since listing (404)")


def read(source: ImageSource) -> bytes:
    """The bytes of a remote object or of a member of an uncompressed remote shard, checked
    against the size and version listed; from the read-ahead when it fetched them already."""
    ahead = _read_ahead
    if ahead is not None and ahead.pid == os.getpid():
        found = ahead.take(source)
        if found is not None:
            return found
    return _read_now(source)


def _read_now(source: ImageSource) -> bytes:
    url = source.path
    try:
        if isinstance(source, ArchiveMember):
            data, version = fetch(url, source.offset, source.offset + source.size)
        else:
            data, version = fetch(url)
    except ObjectGone:
        raise _gone(source) from None
    return _checked(source, url, data, version)


def _checked(source: ImageSource, url: str, data: bytes, version: str | None) -> bytes:
    _check_version(source, url, version)
    if len(data) != source.size:
        raise BadImageError(source.display, f"{len(data)} bytes where listing found {source.size} "
                                            "(changed or truncated since listing)")
    return data


def read_whole(url: str) -> bytes:
    """A small named object (a list file), whole. Raises :class:`ChanstatsError` when missing."""
    try:
        return fetch(url)[0]
    except ObjectGone:
        raise ChanstatsError(f"{redact(url)}: no such object") from None


class RemoteFile:
    """A read-only, seekable file over range requests, for readers that seek (tar headers, Parquet
    footers and row groups, a gzip stream): each miss fetches at least ``block`` bytes, every
    range is checked against the version of the first."""

    def __init__(self, url: str, size: int, block: int = BLOCK) -> None:
        self.url, self.size, self.block = url, size, block
        self.position = 0
        self.buffer, self.buffer_start = b"", 0
        self.version: str | None = _listed_versions.get(url)
        self.closed = False

    def pread(self, count: int, position: int) -> bytes:
        if position >= self.size or count <= 0:
            return b""
        end = min(self.size, position + count)
        buffered_end = self.buffer_start + len(self.buffer)
        if not (self.buffer_start <= position and end <= buffered_end):
            # Reads that jump further than a block (tar headers of large members) fetch only a
            # little more than asked: fetching whole blocks would read every member's data.
            jump = position - (self.buffer_start + len(self.buffer))
            ahead = self.block if jump <= self.block else SMALL_READ
            fetch_end = min(self.size, max(end, position + ahead))
            try:
                data, version = fetch(self.url, position, fetch_end)
            except ObjectGone:
                raise FileNotFoundError(f"{redact(self.url)}: vanished since listing (404)") from None
            if self.version is None:
                self.version = version
            elif version is not None and version != self.version:
                raise OSError(f"{redact(self.url)}: changed since listing (version {version})")
            if position == 0:
                while len(_first_blocks) >= FIRST_BLOCKS_KEPT:
                    _first_blocks.pop(next(iter(_first_blocks), None), None)
                _first_blocks[self.url] = (version, data)
            self.buffer, self.buffer_start = data, position
        return self.buffer[position - self.buffer_start : end - self.buffer_start]

    def read(self, count: int = -1) -> bytes:
        if count is None or count < 0:
            count = self.size - self.position
        data = self.pread(count, self.position)
        self.position += len(data)
        return data

    def readinto(self, target) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.position, self.size)[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> "RemoteFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_file(url: str, block: int = BLOCK) -> RemoteFile:
    """A named object as a seekable file (see :class:`RemoteFile`); :class:`ChanstatsError` when it
    does not exist."""
    pid, entry = _named.get(url, (None, None))
    if entry is None or pid != os.getpid():  # a worker looks again: listing's entry may be old
        entry = stat(url)
    if entry is None or entry.folder:
        raise ChanstatsError(f"{redact(url)}: no such object")
    remote = RemoteFile(url, entry.size, block)
    version, first = _first_blocks.get(url, (None, None))
    if first is not None and version is not None and version == remote.version:
        remote.buffer, remote.buffer_start = first, 0  # listing opens a shard twice: gzip or not, then its headers
    return remote


# The first blocks of the last objects opened in this process, with their versions, to open them
# again for free (shards are listed several at a time).
FIRST_BLOCKS_KEPT = 8
_first_blocks: dict[str, tuple[str | None, bytes]] = {}



# --- latency hidden by concurrency ---------------------------------------------------------------


def map_ahead(function, items: Sequence[Any], ahead: int = 4) -> Iterator[Any]:
    """``function(item)`` for each item, in order, with up to ``ahead`` of them running at once
    (listing the shards of a pattern: each is read through while listing)."""
    if len(items) < 2:
        yield from (function(item) for item in items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="chanstats-list") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class ReadAhead:
    """Keeps up to ``depth`` requests in flight for the remote sources of one chunk of work, in the
    order they will be measured: an object whole, consecutive members of an uncompressed shard
    together in one range request (up to :data:`COALESCE_BYTES`)."""

    def __init__(self, sources: Sequence[ImageSource], depth: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pid = os.getpid()
        self.requests = _requests(sources)
        self.owner: dict[tuple[str, str, int], int] = {}
        for number, (_, _, _, members) in enumerate(self.requests):
            for member in members:
                self.owner[_key(member)] = number
        self.futures: dict[int, Any] = {}
        self.next = 0
        self.depth = max(1, depth)
        self.pool = ThreadPoolExecutor(max_workers=self.depth, thread_name_prefix="chanstats-read")
        self._top_up(0)

    def _top_up(self, current: int) -> None:
        while self.next < len(self.requests) and self.next < current + self.depth:
            url, start, end, _ = self.requests[self.next]
            self.futures[self.next] = self.pool.submit(_fetch_or_gone, url, start, end)
            self.next += 1

    def take(self, source: ImageSource) -> bytes | None:
        number = self.owner.get(_key(source))
        if number is None:
            return None
        future = self.futures.get(number)
        self._top_up(number)
        if future is None:
            future = self.futures[number]
        result = future.result()  # raises what the fetch raised (ChanstatsError: the run stops)
        last = self.requests[number][3][-1]
        if _key(last) == _key(source):
            self.futures.pop(number, None)  # every member of it is read: let its bytes go
        if result is None:
            raise _gone(source)
        data, version = result
        url, start, _, _ = self.requests[number]
        if isinstance(source, ArchiveMember):
            begin = source.offset - start
            data = data[begin : begin + source.size]
        return _checked(source, url, data, version)

    def close(self) -> None:
        for future in self.futures.values():
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _key(source: ImageSource) -> tuple[str, str, int]:
    return (source.root, source.name, source.offset if isinstance(source, ArchiveMember) else _version(source))


def _fetch_or_gone(url: str, start: int | None, end: int | None) -> tuple[bytes, str | None] | None:
    try:
        return fetch(url, start, end)
    except ObjectGone:
        return None


def _requests(sources: Sequence[ImageSource]) -> list[tuple[str, int | None, int | None, list[ImageSource]]]:
    """The requests that read ``sources`` (the remote ones, in order): (url, start, end, sources)."""
    requests: list[tuple[str, int | None, int | None, list[ImageSource]]] = []
    for source in sources:
        if source.problem is not None or not is_url(source.root) or getattr(source, "compressed", False):
            continue
        if type(source) not in (RemoteImageFile, ArchiveMember):
            continue  # table rows are read by their own reader, a row group at a time
        if isinstance(source, ArchiveMember):
            begin, finish = source.offset, source.offset + source.size
            if requests:
                url, start, end, members = requests[-1]
                if (url == source.root and start is not None and end is not None and end <= begin
                        and begin - end <= COALESCE_GAP and finish - start <= COALESCE_BYTES):
                    requests[-1] = (url, start, finish, members + [source])
                    continue
            requests.append((source.root, begin, finish, [source]))
        else:
            requests.append((source.path, None, None, [source]))
    return requests


_read_ahead: ReadAhead | None = None


def _has_remote(sources: Sequence[ImageSource]) -> bool:
    columns = getattr(sources, "_columns", None)
    if columns is not None:  # a Listing: look at its roots, not at each image
        return any(is_url(root) for root in columns.roots)
    return any(is_url(getattr(source, "root", "")) for source in sources)


@contextlib.contextmanager
def read_ahead(sources: Sequence[ImageSource]) -> Iterator[None]:
    """While measuring ``sources`` in order: fetch the remote ones ahead (nothing for local data)."""
    global _read_ahead
    if not _has_remote(sources):
        yield
        return
    ahead = ReadAhead(list(sources), _setting("read_ahead", READ_AHEAD))
    previous, _read_ahead = _read_ahead, ahead
    try:
        yield
    finally:
        _read_ahead = previous
        ahead.close()
