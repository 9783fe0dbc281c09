"""The libvirt driver's image sources: an http(s) URL is downloaded to a temporary file, removed afterwards."""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nebctl.drivers.libvirt.images import local_copy


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A real HTTP server on loopback serving one image file; (its URL, its bytes)."""
    content = bytes(range(256)) * 5000
    (tmp_path / "disk.img").write_bytes(content)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/disk.img", content
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_http_source_is_downloaded_then_removed(served: tuple[str, bytes]) -> None:
    url, content = served
    with local_copy(url) as (path, digest):
        assert path.read_bytes() == content
        assert digest == hashlib.sha256(content).hexdigest()
    assert not path.exists()


def test_a_file_url_and_a_path_are_used_in_place(tmp_path: Path) -> None:
    image = tmp_path / "a b.img"
    image.write_bytes(b"qcow")
    with local_copy(f"file://{str(image).replace(' ', '%20')}") as (path, digest):
        assert path == image
        assert digest is None  # computed while uploading, not read beforehand
    assert image.exists()
