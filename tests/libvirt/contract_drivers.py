"""The libvirt entries of the shared contract suite (tests/contract/conftest.py imports them).

Two driver sets: libvirt's in-process test hypervisor (two fresh, file-described ones per test: one host
and a migration target, between which the driver migrates cold, the test hypervisor having no migration) and
the real ``qemu:///system`` daemon of tests/support/libvirtd.py, whose migration target is the second, private
libvirtd of tests/support/libvirtd_peer.py (QEMU live-migrates between the two). Both are built through the
registry. Each test starts from what exists and, at its end, removes every domain, network,
pool, volume and filter that appeared meanwhile, so tests do not see each other's objects and nothing stays
behind on the shared daemon.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from nebctl.core.settings import Settings
from nebctl.drivers.registry import build_registry
from nebctl.drivers.types import HostRef
from tests.support.libvirtd import ensure_daemon, exclusive_objects, remove_objects
from tests.support.libvirtd_peer import ensure_peer

if TYPE_CHECKING:
    from tests.contract.conftest import DriverSet

NODE_XML = (
    "<node><cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>"
    "<memory>16777216</memory></node>"
)


def _names(uri: str) -> dict[str, set[str]]:
    import libvirt  # the tests' own view of the hypervisor, not the driver's

    connection = libvirt.open(uri)
    try:
        found = {
            "domain": {d.UUIDString() for d in connection.listAllDomains(0)},
            "network": {n.name() for n in connection.listAllNetworks(0)},
            "pool": {p.name() for p in connection.listAllStoragePools(0)},
            "filter": set(),
        }
        with contextlib.suppress(libvirt.libvirtError):
            found["filter"] = {f.name() for f in connection.listAllNWFilters(0)}
        return found
    finally:
        connection.close()


def _remove_new(uri: str, before: dict[str, set[str]]) -> None:
    import libvirt

    def existed(kind: str, found: Any) -> bool:
        return (found.UUIDString() if kind == "domain" else found.name()) in before[kind]

    connection = libvirt.open(uri)
    try:
        remove_objects(connection, existed)
    finally:
        connection.close()


@contextlib.contextmanager
def _libvirt_set(tmp_path: Path, name: str, host: HostRef, second: HostRef | None) -> Iterator[DriverSet]:
    """The drivers as the registry builds them. What the test hypervisor lacks (nwfilter, volume resize) is
    declared by ``capabilities_on`` and checked by the contract tests, never skipped."""
    from tests.contract.conftest import DriverSet

    registry = build_registry(Settings(state_dir=tmp_path / "state"), entry_points=False)
    drivers = registry.for_host(host)
    hosts = [h for h in (host, second) if h is not None]
    before = {h.uri: _names(h.uri) for h in hosts}
    try:
        yield DriverSet(name, host, drivers.virtualization, drivers.storage, drivers.network,
                        drivers.monitoring, datastore_path=str(tmp_path / "pool"), second_host=second)  # fmt: skip
    finally:
        for h in hosts:
            _remove_new(h.uri, before[h.uri])
        registry.close()


@contextlib.contextmanager
def build_libvirt_test(tmp_path: Path) -> Iterator[DriverSet]:
    """Two fresh test hypervisors described by node files: test:///default comes with a domain and a network
    of its own, and the contract starts from an empty host."""
    uris = []
    for index in (1, 2):
        node = tmp_path / f"node{index}.xml"
        node.write_text(NODE_XML)
        uris.append(f"test://{node}")
    with _libvirt_set(tmp_path, "libvirt-test", HostRef("test1", uris[0]), HostRef("test2", uris[1])) as driver_set:
        yield driver_set


@contextlib.contextmanager
def build_libvirt_qemu(tmp_path: Path) -> Iterator[DriverSet]:
    daemon = ensure_daemon()
    second, missing = None, ""
    try:
        second = HostRef("peer", ensure_peer().uri)
    except pytest.skip.Exception as skipped:  # outside CI only (in CI it fails): the other tests still run
        missing = skipped.msg or "the peer libvirtd did not start"
    host = HostRef("local", daemon.uri)
    with exclusive_objects(), _libvirt_set(tmp_path, "libvirt-qemu", host, second) as driver_set:
        driver_set.no_second_host = missing
        yield driver_set


LIBVIRT_BUILDERS = {"libvirt-test": build_libvirt_test, "libvirt-qemu": build_libvirt_qemu}
LIBVIRT_PARAMS = [
    pytest.param("libvirt-test", marks=pytest.mark.libvirt),
    pytest.param("libvirt-qemu", marks=pytest.mark.libvirt),
]
