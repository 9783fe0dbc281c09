"""End to end with real guests: the examples of manifests/examples-guests/ (two Debian VMs configured by
cloud-init) applied through the real CLI to qemu:///system, checked from the host by what the guests do.

The guests phone home: their user data installs a reporter that POSTs JSON (event, hostname, a role value
written in the manifest, root disk and file system size, memory, listening ports) to a listener the test runs
on the network's gateway address, at first boot, at every boot and at shutdown. One scenario, in order:

1. ``apply``: each guest reports from the address its NIC declares (the request's source address), with the
   manifest's role and hostname, and a root disk of the declared size with a file system grown past the image;
2. the security group is enforced: tcp/22 answers with an SSH banner, tcp/80 does not connect; adding an
   inbound tcp/80 rule and applying opens it, and the guest was not restarted (same QEMU process);
3. one apply that does two things at once: a memory change (a restart: the guest reports its shutdown, nebctl's
   events show no forced stop, and it boots again with the new memory) and a live migration of the other
   guest to the peer libvirtd (tests/support/libvirtd_peer.py), after which it still answers on tcp/22 and was
   not rebooted;
4. ``destroy`` leaves no domain (on either daemon), volume, lease, nwfilter or bridge.

Whether KVM can boot a Linux kernel here is probed once (tests/support/guests.py) and reported in the test
output; where it cannot (nested KVM that hangs after "Probing EDD"), the Hosts say ``domainType: qemu`` and the
guests run under TCG: slow, so the waits are long, but bounded.

The peer daemon shares this machine's network namespace, not its libvirt networks: before the migration the
test gives it the guests' segment, as the switch between two real hosts would (a libvirt network of the same
name that forwards onto the system network's bridge), so a migrated guest keeps its address. The datastore is
under /var/lib/libvirt, which the peer sees as a directory of its own: the two hosts have local disks, and the
migration copies the guest's disk.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.conftest import in_ci
from tests.support.guests import GuestImage, KvmProbe, PhoneHome, Report, guest_image, kvm_boots_a_kernel
from tests.support.libvirt_scenario import Run, check, remove_prefixed
from tests.support.libvirtd import LibvirtDaemon, exclusive_objects
from tests.support.libvirtd_peer import PeerDaemon

try:
    import libvirt
except ImportError:
    if in_ci():
        raise
    pytest.skip("libvirt-python is not installed (pip install nebctl[libvirt])", allow_module_level=True)

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(3600)]

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "manifests" / "examples-guests"
EXAMPLE_NETWORK = "10.124.0."
EXAMPLE_IMAGE = "/var/lib/nebctl/images/debian-12-guest/"
EXAMPLE_URL = "http://10.124.0.1:8080/"
PORT = 8080
GIB, MIB = 1024**3, 1024**2
# Generous bounds for guests under TCG on a loaded 2-core machine (a boot takes about a minute unloaded).
BOOT_TIMEOUT = 900.0
APPLY_TIMEOUT = 1500.0
CONNECT_TIMEOUT = 5.0


@dataclass
class Guests:
    run: Run
    phone: PhoneHome
    peer: PeerDaemon
    peer_connection: Any  # libvirt.virConnect
    host: str
    peer_host: str
    datastore: Path  # the datastore's directory, as the system daemon sees it

    def apply(self) -> str:
        result = self.run.nebctl("apply", *self.run.manifest_args(), "--yes")
        return check(result)

    def vm(self, name: str) -> dict[str, Any]:
        return next(d for d in self.run.vms() if d["metadata"]["name"] == name)

    def events(self) -> list[dict[str, Any]]:
        output = check(self.run.nebctl("events", "--stack", self.run.prefix, "-n", "1000", "-o", "json"))
        return [json.loads(line) for line in output.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def image() -> GuestImage:
    try:
        return guest_image()
    except RuntimeError as error:  # in CI, which builds it first (make test), it must be there
        if in_ci():
            pytest.fail(str(error))
        pytest.skip(f"no guest image (sudo make test-image builds it): {error}")


def say(config: pytest.Config, line: str) -> None:
    """A line in the test output, whether or not pytest captures the test's own."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.write_line("")
        reporter.write_line(line)


@pytest.fixture(scope="module")
def kvm(image: GuestImage, pytestconfig: pytest.Config) -> KvmProbe:
    probe = kvm_boots_a_kernel(image)
    say(pytestconfig, f"real guests: {probe.detail}; the guests run with domainType {'kvm' if probe.boots else 'qemu'}")
    return probe


def load_examples() -> list[dict[str, Any]]:
    yaml = YAML(typ="safe", pure=True)
    return [doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.load_all(path.read_text())]


def rewrite_examples(
    documents: list[dict[str, Any]], prefix: str, datastore: Path, octet: int, image: GuestImage, domain_type: str,
    peer: PeerDaemon,
) -> list[dict[str, Any]]:  # fmt: skip
    """The examples with prefixed names, the test's own datastore, the image the script built, its own /24
    (10.124.0.x -> 10.124.OCTET.x, in the user data too), the probed domain type, and the peer as a second
    Host that has the datastore but not the network (the test bridges it there)."""
    documents = copy.deepcopy(documents)
    renamed = {d["metadata"]["name"]: f"{prefix}-{d['metadata']['name']}" for d in documents}

    def address(text: str) -> str:
        assert text.startswith(EXAMPLE_NETWORK), text
        return f"10.124.{octet}.{text.rsplit('.', 1)[1]}"

    def path(text: str) -> str:
        assert text.startswith(EXAMPLE_IMAGE), text
        return str(image.directory / text.removeprefix(EXAMPLE_IMAGE))

    host = next(d for d in documents if d["kind"] == "Host")
    host_name = renamed[host["metadata"]["name"]]
    for doc in documents:
        spec = doc["spec"]
        doc["metadata"]["name"] = renamed[doc["metadata"]["name"]]
        match doc["kind"]:
            case "Host":
                spec["virtualization"] = {"domainType": domain_type}
            case "Datastore":
                spec["path"] = str(datastore)
            case "Image":
                spec["source"] = path(spec["source"])
                spec["datastore"] = renamed[spec["datastore"]]
            case "Network":
                spec["cidr"] = f"10.124.{octet}.0/24"
                spec["gateway"] = address(spec["gateway"])
                spec["range"] = {edge: address(value) for edge, value in spec["range"].items()}
                spec["hosts"] = [host_name]
            case "SecurityGroup":
                for rule in spec["rules"]:
                    if "cidr" in rule:
                        rule["cidr"] = f"10.124.{octet}.0/24"
            case "VirtualMachine":
                spec["placement"]["host"] = renamed[spec["placement"]["host"]]
                for disk in spec["disks"]:
                    disk["image"] = renamed[disk["image"]]
                for nic in spec["nics"]:
                    nic["network"] = renamed[nic["network"]]
                    nic["securityGroups"] = [renamed[group] for group in nic["securityGroups"]]
                    nic["ip"] = address(nic["ip"])
                spec["boot"]["kernel"] = path(spec["boot"]["kernel"])
                spec["boot"]["initrd"] = path(spec["boot"]["initrd"])
                user_data = spec["cloudInit"]["userData"]
                assert EXAMPLE_URL in user_data
                spec["cloudInit"]["userData"] = user_data.replace(EXAMPLE_URL, f"http://10.124.{octet}.1:{PORT}/")
    peer_host = copy.deepcopy(host)
    peer_host["metadata"]["name"] = f"{prefix}-peer"
    peer_host["spec"]["uri"] = peer.uri
    documents.insert(1, peer_host)
    return documents


@pytest.fixture
def guests(
    libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, tmp_path: Path, image: GuestImage, kvm: KvmProbe
) -> Iterator[Guests]:
    prefix = f"g{os.getpid() % 1000}{uuid.uuid4().hex[:4]}"
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    # A graceful shutdown under TCG takes a while; the timeout bounds it, it is not a figure to meet.
    (tmp_path / "config.yaml").write_text("shutdown_timeout: 600s\nparallelism: 8\n")
    octet = random.randint(1, 254)
    domain_type = "kvm" if kvm.boots else "qemu"
    # Under /var/lib/libvirt, which the peer daemon sees as a directory of its own (its mount namespace): the
    # same path is then two directories, as on two hosts with local disks, and a migration copies the disk.
    datastore = Path("/var/lib/libvirt") / f"{prefix}-datastore"
    documents = rewrite_examples(load_examples(), prefix, datastore, octet, image, domain_type, libvirtd_peer)
    connection = libvirt.open(libvirtd.uri)
    peer_connection = libvirt.open(libvirtd_peer.uri)
    run = Run(tmp_path, manifests, prefix, documents, connection)
    run.write()
    host = next(d["metadata"]["name"] for d in documents if d["kind"] == "Host")
    phone = PhoneHome(f"10.124.{octet}.1", PORT)
    try:
        with exclusive_objects(), phone.running():
            yield Guests(run, phone, libvirtd_peer, peer_connection, host, f"{prefix}-peer", datastore)
    finally:
        try:
            remove_prefixed(peer_connection, prefix)
            remove_prefixed(connection, prefix)
        finally:
            peer_connection.close()
            connection.close()
            shutil.rmtree(datastore, ignore_errors=True)


def _boot_report(guests: Guests, vm: dict[str, Any], after: float = 0.0) -> Report:
    ip = vm["spec"]["nics"][0]["ip"]
    name = vm["metadata"]["name"]
    return guests.phone.wait_for(
        f"of a boot of {name} (from {ip})",
        lambda r: r.body.get("event") == "boot" and r.body.get("hostname") == name and r.received > after,
        BOOT_TIMEOUT,
    )


def _connects(ip: str, port: int) -> bytes | None:
    """The first bytes the guest sends on a new connection (b"" if none within the timeout); None if the
    connection cannot be made (refused, or dropped by a filter: no answer within the timeout)."""
    try:
        with socket.create_connection((ip, port), timeout=CONNECT_TIMEOUT) as connection:
            if port == 80:
                connection.sendall(b"GET / HTTP/1.0\r\n\r\n")
            chunks = b""
            with contextlib.suppress(TimeoutError):
                while len(chunks) < 4096:
                    chunk = connection.recv(4096)
                    if not chunk:
                        break
                    chunks += chunk
                    if port == 22 and b"\n" in chunks:
                        break
            return chunks
    except OSError:
        return None


def _domain_on(connection: Any, name: str) -> Any | None:
    try:
        return connection.lookupByName(name)
    except libvirt.libvirtError:
        return None


def _bridge_peer_onto(guests: Guests, network: str) -> None:
    """The guests' segment on the peer daemon, as the switch between two real hosts would give it: a transient
    network of the system network's name that forwards onto its bridge."""
    document = ET.fromstring(guests.run.connection.networkLookupByName(network).XMLDesc(0))
    bridge = document.find("bridge")
    assert bridge is not None
    xml = f"<network><name>{network}</name><forward mode='bridge'/><bridge name='{bridge.get('name')}'/></network>"
    guests.peer_connection.networkCreateXML(xml)


def test_guests_get_their_addresses_run_user_data_and_are_filtered_restarted_migrated_and_destroyed(
    guests: Guests, image: GuestImage, pytestconfig: pytest.Config
) -> None:
    started = time.monotonic()
    run = guests.run
    guest1, guest2 = run.vms()
    name1, name2 = guest1["metadata"]["name"], guest2["metadata"]["name"]
    ip1, ip2 = guest1["spec"]["nics"][0]["ip"], guest2["spec"]["nics"][0]["ip"]
    network = next(d["metadata"]["name"] for d in run.documents if d["kind"] == "Network")
    image_size = int(
        json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(image.disk)], capture_output=True,
                                  text=True, check=True).stdout)["virtual-size"]
    )  # fmt: skip

    # 1. Both guests boot (in parallel) and report from their declared addresses, with the manifest's values.
    guests.apply()
    document = ET.fromstring(run.connection.networkLookupByName(network).XMLDesc(0))
    bridge_element = document.find("bridge")
    bridge = bridge_element.get("name", "") if bridge_element is not None else ""
    assert bridge and Path(f"/sys/class/net/{bridge}").exists()
    reports = {}
    for vm, role in ((guest1, "frontend"), (guest2, "backend")):
        report = _boot_report(guests, vm)
        assert report.source == vm["spec"]["nics"][0]["ip"]
        assert report.body["role"] == role and report.body["hostname"] == vm["metadata"]["name"]
        assert report.body["disk_bytes"] == 3 * GIB  # the declared size, as the guest's kernel sees the disk
        assert report.body["root_fs_bytes"] > image_size  # cloud-init grew the partition and the file system
        assert {22, 80} <= set(report.body["listening"])
        reports[vm["metadata"]["name"]] = report
    booted = time.monotonic()

    # 2. The security group: SSH in, HTTP not; opening tcp/80 in the manifest needs no restart.
    for ip in (ip1, ip2):
        assert (_connects(ip, 22) or b"").startswith(b"SSH-2.0-OpenSSH"), ip
        assert _connects(ip, 80) is None, f"tcp/80 of {ip} is open before the group allows it"
    group = next(d for d in run.documents if d["kind"] == "SecurityGroup")
    group["spec"]["rules"].append({"direction": "in", "protocol": "tcp", "ports": [80]})
    run.write()
    plan = check(run.nebctl("diff", *run.manifest_args()), expected=2)
    assert "restart" not in plan, plan
    ids = {name: run.domain(name).ID() for name in (name1, name2)}
    guests.apply()
    for name, ip, role in ((name1, ip1, "frontend"), (name2, ip2, "backend")):
        answer = _connects(ip, 80) or b""
        assert answer.startswith(b"HTTP/1.0 200") and answer.rstrip().endswith(role.encode()), (ip, answer[:200])
        assert run.domain(name).ID() == ids[name]  # the same QEMU process: not restarted

    # 3. At once: guest-1's memory grows (a restart, graceful), guest-2 moves live to the peer daemon.
    _bridge_peer_onto(guests, network)
    memory_before = reports[name1].body["memory_bytes"]
    guest1["spec"]["memory"] = "512Mi"
    guest2["spec"]["placement"]["host"] = guests.peer_host
    run.write()
    plan = check(run.nebctl("diff", *run.manifest_args()), expected=2)
    assert "restart required" in plan and f"moves from {guests.host} to {guests.peer_host}" in plan, plan
    changed = time.monotonic()
    guests.apply()
    shutdown = guests.phone.wait_for(
        f"of {name1}'s shutdown", lambda r: r.body.get("event") == "shutdown" and r.body["hostname"] == name1, 60
    )
    assert shutdown.source == ip1 and shutdown.received > changed
    reboot = _boot_report(guests, guest1, after=shutdown.received)
    assert reboot.source == ip1
    # MemTotal is what the kernel has left after its own reservations: below the domain's memory, and up by
    # about the 128 MiB added.
    assert reboot.body["memory_bytes"] <= 512 * MIB
    assert reboot.body["memory_bytes"] - memory_before > 100 * MIB, (memory_before, reboot.body)
    stops = [e for e in guests.events() if e["type"] == "action.succeeded" and "shut down" in e["message"]]
    assert stops and all(e["severity"] == "info" and "forced" not in e["message"] for e in stops), stops
    moved = _domain_on(guests.peer_connection, name2)
    assert moved is not None and moved.isActive()
    assert moved.state(0) == [libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    assert _domain_on(run.connection, name2) is None
    assert (_connects(ip2, 22) or b"").startswith(b"SSH-2.0-OpenSSH")  # still answering, from the peer
    assert (_connects(ip2, 80) or b"").rstrip().endswith(b"backend")
    reports_of_2 = [r for r in guests.phone.reports if r.body.get("hostname") == name2]
    assert [r.body["event"] for r in reports_of_2] == ["boot"]  # moved, not rebooted
    check(run.nebctl("diff", *run.manifest_args()))  # converged
    changed_done = time.monotonic()

    # 4. destroy leaves nothing behind, on either daemon.
    uuids = {name: dom.UUIDString() for name, dom in ((name1, run.domain(name1)), (name2, moved))}
    check(run.nebctl("destroy", "--stack", run.prefix, "--yes"))
    guests.peer_connection.networkLookupByName(network).destroy()  # the test's own bridging
    for connection in (run.connection, guests.peer_connection):
        assert remove_prefixed(connection, run.prefix) == []  # no domain, network, pool, volume or nwfilter
        for uuid_ in uuids.values():
            with pytest.raises(libvirt.libvirtError):
                connection.lookupByUUIDString(uuid_)
    assert not Path(f"/sys/class/net/{bridge}").exists()
    leases = Path(f"/var/lib/libvirt/dnsmasq/{bridge}.status")
    assert not leases.exists() or not any(ip in leases.read_text() for ip in (ip1, ip2))
    assert not guests.datastore.exists() or not any(guests.datastore.iterdir())
    finished = time.monotonic()
    say(
        pytestconfig,
        f"real guests: boot and report {booted - started:.0f} s, security group and restart+migration "
        f"{changed_done - booted:.0f} s, destroy {finished - changed_done:.0f} s, total {finished - started:.0f} s",
    )
