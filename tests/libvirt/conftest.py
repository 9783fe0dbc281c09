"""Fixtures of the libvirt driver tests: drivers sharing one connection cache, unique names, test images.

Tests run twice over: on libvirt's in-process ``test:///default`` hypervisor (fast, no daemon) and, in
test_qemu.py, on the real libvirtd that tests/support/libvirtd.py provides. Every name a test creates starts
with a per-session prefix, so a test never touches objects it did not make.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("libvirt", reason="libvirt-python is not installed (pip install nebctl[libvirt])")

from nebctl.drivers.libvirt import (
    Connections,
    LibvirtMonitoring,
    LibvirtNetwork,
    LibvirtStorage,
    LibvirtVirtualization,
)
from nebctl.drivers.types import HostRef

TEST_URI = "test:///default"


@dataclass
class Drivers:
    virt: LibvirtVirtualization
    storage: LibvirtStorage
    network: LibvirtNetwork
    monitoring: LibvirtMonitoring
    connections: Connections


@pytest.fixture(scope="session")
def prefix() -> str:
    """Unique per session: names of everything the tests create start with it."""
    return f"nbt{os.getpid() % 10000}{uuid.uuid4().hex[:4]}"


@pytest.fixture(scope="session")
def drivers() -> Iterator[Drivers]:
    connections = Connections()
    yield Drivers(
        virt=LibvirtVirtualization(connections=connections, migration_shutdown_timeout=0.5),
        storage=LibvirtStorage(connections=connections),
        network=LibvirtNetwork(connections=connections),
        monitoring=LibvirtMonitoring(connections=connections),
        connections=connections,
    )
    connections.close()


@pytest.fixture
def test_host() -> HostRef:
    return HostRef(name="test", uri=TEST_URI)


def make_image(path: Path, *, fmt: str = "qcow2", size: str = "16M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), size], check=True, capture_output=True)
    return path


@pytest.fixture
def qcow2_image(tmp_path: Path) -> Path:
    return make_image(tmp_path / "base.qcow2")
