"""The shared connections: libvirt's event loop only for the connections that need it (keepalive across a
network, lifecycle events for watchers), since a connection hooked to it pays on every call."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from nebctl.drivers.libvirt.connections import crosses_network
from tests.support.libvirtd import LibvirtDaemon

pytestmark = pytest.mark.libvirt


@pytest.mark.parametrize(
    ("uri", "remote"),
    [
        ("qemu:///system", False),
        ("qemu+unix:///system?socket=/run/libvirt/libvirt-sock", False),
        ("test:///default", False),
        ("test+unix:///default", False),
        ("qemu+ssh://root@kvm1/system", True),
        ("qemu+ssh:///system", True),
        ("qemu+libssh2://kvm1/system", True),
        ("qemu+tcp://kvm1:16509/system", True),
        ("qemu://kvm1/system", True),  # a host without a transport is TLS
        ("qemu+ext:///system?command=/opt/connect", True),
    ],
)
def test_only_uris_across_a_network_count_as_remote(uri: str, remote: bool) -> None:
    assert crosses_network(uri) is remote


# In a process of its own: the event loop is process-wide, and once running it hooks every connection opened
# after it, so only a fresh process shows a connection opened without it, then replaced for a watcher.
WATCH_LATER = """
import threading, uuid
from nebctl.drivers.libvirt import Connections, LibvirtMonitoring, LibvirtVirtualization
from nebctl.drivers.libvirt.connections import _EventLoop
from nebctl.drivers.types import HostRef, VMDefinition

host = HostRef(name="test", uri="test+unix:///default")
connections = Connections()
virt = LibvirtVirtualization(connections=connections)
monitoring = LibvirtMonitoring(connections=connections)
name = f"nbtconn{uuid.uuid4().hex[:8]}"
vm = VMDefinition(name=name, uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, name)), vcpu=1, memory=16 * 1024**2)
virt.deploy(host, vm)
assert not _EventLoop.running(), "a local connection started the event loop"
stopped = threading.Event()
stop = monitoring.watch(host, lambda uuid_, event: stopped.set() if (uuid_, event) == (vm.uuid, "stopped") else None)
try:
    assert stop is not None, "no events on a connection opened before the loop ran"
    virt.cancel(host, vm.uuid)
    assert stopped.wait(10), "the watcher was not told"
    assert virt.poll(host, vm.uuid).name == name  # the replaced connection still sees the same daemon state
finally:
    if stop is not None:
        stop()
    virt.undeploy(host, vm.uuid)
    connections.close()
print("ok")
"""


def test_a_local_connection_goes_without_the_event_loop_until_a_watcher_needs_it(libvirtd: LibvirtDaemon) -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WATCH_LATER)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr
