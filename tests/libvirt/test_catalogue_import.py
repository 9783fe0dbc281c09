"""An image imported from a catalogue over HTTP into a real dir pool of the qemu:///system daemon
(tests/support/libvirtd.py), through the real CLI: the catalogue index and the qcow2 (made with qemu-img) are
served by the loopback server of tests/support/httpserver.py.

Checked independently of nebctl: the volume's file in the pool directory hashes (hashlib) to the image's
digest, libvirt reads it as qcow2 with the image's virtual size, the server saw one download; a wrong digest
given to the driver leaves no volume in the pool.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nebctl.drivers.errors import PermanentError
from nebctl.drivers.types import DatastoreDefinition, HostRef, ImageImport
from tests.conftest import in_ci
from tests.support.httpserver import ImageServer, image_server, sha256_of
from tests.support.libvirtd import LibvirtDaemon, exclusive_objects

try:
    import libvirt
except ImportError:
    if in_ci():
        raise
    pytest.skip("libvirt-python is not installed (pip install nebctl[libvirt])", allow_module_level=True)

from nebctl.drivers.libvirt import Connections, LibvirtStorage

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(300)]

NEBCTL = Path(sys.executable).with_name("nebctl")
VIRTUAL_SIZE = 64 * 1024 * 1024


@pytest.fixture()
def prefix() -> str:
    return f"cat{os.getpid() % 1000}{uuid.uuid4().hex[:4]}"


@pytest.fixture()
def connection(libvirtd: LibvirtDaemon, prefix: str) -> Iterator[Any]:
    handle = libvirt.open(libvirtd.uri)
    try:
        with exclusive_objects():
            yield handle
    finally:
        for pool in handle.listAllStoragePools(0):
            if pool.name().startswith(prefix):
                with contextlib.suppress(libvirt.libvirtError):
                    if pool.isActive():
                        for volume in pool.listAllVolumes(0):
                            volume.delete(0)
                        pool.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    pool.undefine()
        handle.close()


@pytest.fixture()
def server() -> Iterator[ImageServer]:
    with image_server() as running:
        yield running


def _image(directory: Path) -> Path:
    """A qcow2 of 64 MiB virtual size holding 2 MiB of data, so that the bytes matter."""
    raw = directory / "disk.raw"
    with raw.open("wb") as out:
        out.write(os.urandom(2 * 1024 * 1024))
        out.truncate(VIRTUAL_SIZE)
    image = directory / "debian.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True)
    return image


def test_a_catalogue_image_is_imported_over_http_into_a_dir_pool(
    connection: Any, server: ImageServer, prefix: str, tmp_path: Path
) -> None:
    image = _image(tmp_path)
    digest = sha256_of(image)
    server.put("images/debian.qcow2", image)
    index = {
        "apiVersion": "nebctl/catalogue/v1",
        "appliances": [
            {
                "name": "debian-12",
                "os": "debian 12",
                "versions": [
                    {
                        "version": "20240601",
                        "images": [
                            {
                                "url": "images/debian.qcow2",
                                "sha256": digest,
                                "size": image.stat().st_size,
                                "format": "qcow2",
                            }
                        ],
                    }
                ],
            }
        ],
    }
    server.put("index.json", json.dumps(index).encode())
    pool_dir = tmp_path / "pool"
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "all.yaml").write_text(
        f"""\
apiVersion: nebctl/v1
kind: Host
metadata: {{name: {prefix}-kvm}}
spec: {{uri: 'qemu:///system'}}
---
apiVersion: nebctl/v1
kind: Datastore
metadata: {{name: {prefix}-images}}
spec: {{path: '{pool_dir}'}}
---
apiVersion: nebctl/v1
kind: Marketplace
metadata: {{name: hub}}
spec: {{url: '{server.url("index.json")}'}}
---
apiVersion: nebctl/v1
kind: Image
metadata: {{name: {prefix}-debian}}
spec: {{source: {{marketplace: hub/debian-12}}, datastore: {prefix}-images}}
""",
        encoding="utf-8",
    )
    (tmp_path / "config.yaml").write_text(f"state_dir: '{tmp_path / 'state'}'\n", encoding="utf-8")

    def nebctl(*args: str) -> subprocess.CompletedProcess[str]:
        database, config = f"sqlite:///{tmp_path / 'db.sqlite'}", str(tmp_path / "config.yaml")
        command = [str(NEBCTL), "--db", database, "--config", config, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)

    applied = nebctl("apply", "-f", str(manifests), "--stack", prefix, "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    # Off a terminal, the transfer shows in the per-action lines; the download happened once.
    assert server.count("images/debian.qcow2") == 1

    pool = connection.storagePoolLookupByName(f"{prefix}-images")
    pool.refresh(0)
    (volume,) = pool.listAllVolumes(0)
    document = ET.fromstring(volume.XMLDesc(0))
    assert document.find("./target/format").get("type") == "qcow2"  # type: ignore[union-attr]
    assert int(document.findtext("./capacity") or 0) == VIRTUAL_SIZE
    path = Path(document.findtext("./target/path") or "")
    assert path.parent == pool_dir
    assert sha256_of(path) == digest
    assert (tmp_path / "state" / "images" / "sha256" / digest).exists()

    described = nebctl("describe", f"image/{prefix}-debian")
    assert described.returncode == 0, described.stderr
    assert "20240601" in described.stdout  # the version it got is recorded

    destroyed = nebctl("destroy", "-f", str(manifests), "--stack", prefix, "--yes")
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert not any(p.name().startswith(prefix) for p in connection.listAllStoragePools(0))


def test_a_wrong_digest_leaves_no_volume_in_the_pool(connection: Any, prefix: str, tmp_path: Path) -> None:
    image = _image(tmp_path)
    storage = LibvirtStorage(connections=Connections())
    host = HostRef(name="kvm", uri="qemu:///system")
    name = f"{prefix}-pool"
    storage.create_datastore(host, DatastoreDefinition(name=name, type="dir", path=str(tmp_path / "pool")))
    request = ImageImport(volume=f"{prefix}-vol", source=str(image), sha256="0" * 64)
    with pytest.raises(PermanentError, match=f"sha256 is {sha256_of(image)}, expected {'0' * 64}; the volume was"):
        storage.import_image(host, name, request)
    pool = connection.storagePoolLookupByName(name)
    pool.refresh(0)
    assert pool.listAllVolumes(0) == []
    assert list((tmp_path / "pool").iterdir()) == []
    storage.connections.close()
