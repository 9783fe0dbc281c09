"""A real threaded HTTP/1.1 server on the loopback, started by the tests that download images and indexes.

It serves files (bytes or paths on disk) with ``Range``, ``ETag``/``Last-Modified`` and conditional requests,
counts the requests it gets per path, and misbehaves on demand, per path: cut the body after N bytes on the
first requests, stay silent for a while, answer a fixed status, redirect, announce a wrong length, or send more
than it announced. Used by tests/unit/drivers/test_downloads.py, the catalogue and image-source tests, the
libvirt end-to-end test and bench/images.py.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Behaviour:
    cut_after: int | None = None  # send this many body bytes of a response, then close the connection...
    cuts: int = 0  # ...on this many requests (then serve normally)
    delay: float = 0.0  # seconds of silence before answering
    status: int | None = None  # answer this status, no body
    redirect: str | None = None  # answer 302 to this path
    content_length: int | None = None  # announce this length instead of the real one
    no_length: bool = False  # no Content-Length: the body ends when the connection closes
    extra: bytes = b""  # sent after the file (with no_length: a body longer than the file)
    ranges: bool = True  # honour Range requests
    stall_after: int | None = None  # send this many body bytes, then pause for ``stall`` seconds (a slow link)
    stall: float = 0.0


@dataclass
class Served:
    body: bytes | Path
    etag: str = ""
    modified: float = 0.0

    def size(self) -> int:
        return self.body.stat().st_size if isinstance(self.body, Path) else len(self.body)


@dataclass
class ImageServer:
    files: dict[str, Served] = field(default_factory=dict)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    headers_seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def put(self, path: str, body: bytes | Path, *, etag: str | None = None) -> None:
        """Serve ``body`` at ``path``; its ETag is the content's digest unless given."""
        if etag is None:
            if isinstance(body, Path):
                etag = f"{body.stat().st_size}-{body.stat().st_mtime_ns}"
            else:
                etag = hashlib.sha256(body).hexdigest()[:16]
        self.files[path.lstrip("/")] = Served(body, f'"{etag}"', time.time())

    def behave(self, path: str, behaviour: Behaviour) -> None:
        self.behaviours[path.lstrip("/")] = behaviour

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests[path.lstrip("/")]


def _handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].lstrip("/")
            with server._lock:
                server.requests[path] += 1
                number = server.requests[path]
                server.headers_seen.append((path, {k.lower(): v for k, v in self.headers.items()}))
            behaviour = server.behaviours.get(path, Behaviour())
            if behaviour.delay:
                time.sleep(behaviour.delay)
            if behaviour.redirect is not None:
                self._empty(302, location=f"/{behaviour.redirect.lstrip('/')}")
                return
            if behaviour.status is not None:
                self._empty(behaviour.status)
                return
            served = server.files.get(path)
            if served is None:
                self._empty(404)
                return
            size = served.size()
            if self.headers.get("If-None-Match") == served.etag:
                self._empty(304, etag=served.etag)
                return
            start = 0
            wanted = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if wanted and behaviour.ranges and (if_range is None or if_range == served.etag):
                start = int(wanted.removeprefix("bytes=").split("-", 1)[0])
                if start >= size:
                    self._empty(416, content_range=f"bytes */{size}")
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            else:
                self.send_response(200)
            length = size - start
            if behaviour.no_length:
                self.send_header("Connection", "close")
            else:
                announced = behaviour.content_length if behaviour.content_length is not None else length
                self.send_header("Content-Length", str(announced))
            self.send_header("ETag", served.etag)
            self.send_header("Last-Modified", formatdate(served.modified, usegmt=True))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            limit = length
            cut = behaviour.cut_after is not None and number <= behaviour.cuts
            if cut:
                assert behaviour.cut_after is not None
                limit = min(length, behaviour.cut_after)
            if behaviour.stall_after is not None and behaviour.stall_after < limit:
                self._send(served, start, behaviour.stall_after)
                self.wfile.flush()
                time.sleep(behaviour.stall)
                self._send(served, start + behaviour.stall_after, limit - behaviour.stall_after)
            else:
                self._send(served, start, limit)
            if behaviour.extra:
                self.wfile.write(behaviour.extra)
            if cut or behaviour.no_length:
                self.wfile.flush()
                self.close_connection = True

        def _send(self, served: Served, start: int, count: int) -> None:
            if isinstance(served.body, bytes):
                self.wfile.write(served.body[start : start + count])
                return
            self.wfile.flush()
            with served.body.open("rb") as source:
                sent = 0
                while sent < count:
                    sent += self.connection.sendfile(source, start + sent, count - sent) or 0

        def _empty(self, status: int, **headers: str) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-").title(), value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-body (a refused download) is expected here, not worth a traceback."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextmanager
def image_server() -> Iterator[ImageServer]:
    """A running server on 127.0.0.1 (an unused port), stopped when the block ends."""
    state = ImageServer()
    httpd = _Server(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, name="image-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def sha256_of(path: Path) -> str:
    """The digest a test expects, computed independently of nebctl (hashlib over the file)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> None:
    """``python -m tests.support.httpserver DIRECTORY``: serve the files of DIRECTORY on 127.0.0.1 from a process
    of its own (bench/images.py, so that the server does not share the measured process); prints the port."""
    directory = Path(sys.argv[1])
    with image_server() as server:
        for path in sorted(directory.iterdir()):
            if path.is_file():
                server.put(path.name, path)
        print(server.port, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


if __name__ == "__main__":
    main()
