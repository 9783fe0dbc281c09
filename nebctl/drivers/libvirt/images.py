"""Image files on the controller's side: fetching a source (path, file:// or http(s)://), detecting its format
from the header, and streaming it into a libvirt volume while computing its sha256 (one read of the file).

``LibvirtStorage.import_image`` uses these; the bytes travel through libvirt's stream API, so the same code
works for a local daemon and a remote host (qemu+ssh://).
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import libvirt

from nebctl.drivers import context, downloads
from nebctl.drivers.downloads.progress import ProgressMeter
from nebctl.drivers.errors import PermanentError
from nebctl.drivers.libvirt.failures import DRIVER_NAME, error_code

QCOW2_MAGIC = b"QFI\xfb"
CHUNK = 1024 * 1024


@contextlib.contextmanager
def local_copy(source: str, *, sha256: str | None = None) -> Iterator[tuple[Path, str | None]]:
    """A local path holding ``source`` and its sha256 when already known: the file itself (digest unknown), or
    a verified temporary download removed afterwards. The controller hands this driver cached local files;
    a URL reaches it only from direct callers of the driver."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https"):
        with tempfile.TemporaryDirectory(prefix="nebctl-image-") as directory:
            call = context.current()
            transfer = downloads.fetch(
                source,
                Path(directory) / "image",
                sha256=sha256,
                deadline=call.deadline,
                cancelled=call.cancelled,
                report=call.progress,
            )
            yield transfer.path, transfer.sha256
        return
    if parsed.scheme == "file":
        yield Path(urllib.parse.unquote(parsed.path)), None
        return
    if parsed.scheme:
        raise PermanentError(f"unsupported image source {source!r}", driver=DRIVER_NAME)
    yield Path(source), None


def sha256_of(path: Path) -> str:
    """Only for backends that take no bytes (nothing is streamed to hash on the way)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def detect(path: Path) -> tuple[str, int]:
    """The image's format (qcow2 or raw) and virtual size, from the qcow2 header (magic, then size at 24)."""
    with path.open("rb") as stream:
        header = stream.read(32)
    if len(header) >= 32 and header[:4] == QCOW2_MAGIC:
        (size,) = struct.unpack(">Q", header[24:32])
        return "qcow2", int(size)
    return "raw", path.stat().st_size


def upload(connection: libvirt.virConnect, volume: libvirt.virStorageVol, path: Path) -> str | None:
    """Stream ``path`` into ``volume``, computing its sha256 from the bytes sent (the file is read once);
    None when the backend takes no bytes (libvirt's test driver keeps volumes as records only)."""
    size = path.stat().st_size
    stream = connection.newStream(0)
    try:
        volume.upload(stream, 0, size, 0)
    except libvirt.libvirtError as error:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        if error_code(error) == libvirt.VIR_ERR_NO_SUPPORT:
            return None
        raise
    call = context.current()
    meter = ProgressMeter(label=str(path), total=size, report=call.progress, log=call.log, phase="upload")
    with path.open("rb") as source:
        reader = _HashingReader(source, meter)
        try:
            stream.sendAll(_read, reader)
            stream.finish()
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            raise
    return reader.digest.hexdigest()


class _HashingReader:
    def __init__(self, source: BinaryIO, meter: ProgressMeter) -> None:
        self.source = source
        self.meter = meter
        self.digest = hashlib.sha256()

    def read(self, nbytes: int) -> bytes:
        chunk = self.source.read(min(nbytes, CHUNK))
        self.digest.update(chunk)
        self.meter.advance(len(chunk))
        return chunk


def _read(_stream: libvirt.virStream, nbytes: int, source: _HashingReader) -> bytes:
    if context.current().cancelled.is_set():
        raise PermanentError("upload cancelled", driver=DRIVER_NAME)
    return source.read(nbytes)
