"""Real servers for the object-storage tests, on 127.0.0.1 only: moto's S3 server, a plain HTTP
file server (with ranges and ETags, as real ones have), and a fault-injecting proxy in front of
either (delays, 503s, connections dropped in the middle of a body)."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Credentials the S3 tests use (moto accepts any); distinctive, so a leak is found by grep.
ACCESS_KEY = "AKIACHANSTATSLEAKTEST1"
SECRET_KEY = "chanstats-secret-Zq8x!never-written"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """moto's S3 server in a thread of this process (how s3fs tests itself)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "MotoServer":
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def upload_tree(self, bucket: str, local: Path, prefix: str = "") -> None:
        """Every file under ``local`` as an object ``prefix/relative/path`` (hidden ones too)."""
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
        for path in sorted(local.rglob("*")):
            if path.is_file():
                key = "/".join(filter(None, [prefix.strip("/"), path.relative_to(local).as_posix()]))
                client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())


class _FileHandler(SimpleHTTPRequestHandler):
    """Files of a folder with Range (206) and an ETag of their content, as object stores serve."""

    def log_message(self, *args: object) -> None:
        pass

    def send_head(self):
        path = self.translate_path(self.path)
        if os.path.isdir(path):
            return super().send_head()
        try:
            data = Path(path).read_bytes()
        except OSError:
            self.send_error(404, "not found")
            return None
        etag = '"' + hashlib.md5(data).hexdigest() + '"'
        start, end = 0, len(data)
        ranged = self.headers.get("Range")
        if ranged and ranged.startswith("bytes="):
            first, _, last = ranged[6:].partition("-")
            start = int(first)
            end = min(len(data), int(last) + 1) if last else len(data)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        import io

        return io.BytesIO(data[start:end])


class HttpFileServer:
    """A plain HTTP server for ``directory`` in a thread (directory pages list a folder)."""

    def __init__(self, directory: Path) -> None:
        handler = lambda *args, **kwargs: _FileHandler(*args, directory=str(directory), **kwargs)  # noqa: E731
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "HttpFileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Faults:
    """What the proxy does to requests (changed by the tests while it runs): ``delay`` seconds
    before each; every ``fail_every``-th request answered 503; every ``drop_every``-th response
    with a body cut in the middle and its connection closed; ``gone`` paths answered 404."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.fail_every = 0
        self.drop_every = 0
        self.always_fail = False
        self.fail_after = 0  # when set: every request after this many answered 503
        self.gone: set[str] = set()
        self.denied: set[str] = set()
        self.requests = 0
        self.failed = 0
        self.dropped = 0
        self.lock = threading.Lock()

    def next_number(self) -> int:
        with self.lock:
            self.requests += 1
            return self.requests


class FaultProxy:
    """A reverse proxy to ``upstream`` (``http://host:port``) that injects :class:`Faults`."""

    def __init__(self, upstream: str) -> None:
        self.faults = Faults()
        host, _, port = upstream.removeprefix("http://").partition(":")
        faults = self.faults

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                import time

                number = faults.next_number()
                if faults.delay:
                    time.sleep(faults.delay)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if (faults.always_fail or (faults.fail_every and number % faults.fail_every == 0)
                        or (faults.fail_after and number > faults.fail_after)):
                    faults.failed += 1
                    self._answer(503, b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>")
                    return
                if self.path.split("?")[0] in faults.denied:
                    self._answer(403, b"<Error><Code>AccessDenied</Code><Message>denied</Message></Error>")
                    return
                if self.path.split("?")[0] in faults.gone:
                    self._answer(404, b"<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>")
                    return
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                connection.close()
                drop = (faults.drop_every and self.command == "GET" and len(data) > 16
                        and number % faults.drop_every == 0)
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                # A HEAD answer has no body but tells the length of the object.
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                if drop:
                    faults.dropped += 1
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
