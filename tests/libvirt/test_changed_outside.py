"""A network and an nwfilter changed with virsh on real libvirt (qemu:///system of tests/support/libvirtd.py), through
the real CLI, with manifests/examples-libvirt/ rewritten as tests/libvirt/test_end_to_end.py's fixture does
(per-run names, paths and /24), without the VMs.

The network's DHCP range is changed with ``virsh net-update`` and the security group's filter is redefined with
``virsh nwfilter-define`` (port 22 made 2222): ``diff`` shows both under "Changed outside nebctl" with the
sentences written out below, ``apply`` deletes and creates the network again and sets the filter's rules again
(nothing else), libvirt then holds what was applied, and the next diff has nothing to do.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import libvirt
import pytest

from nebctl.drivers.libvirt.monitoring import LibvirtMonitoring
from nebctl.drivers.types import HostRef, OwnedObject
from tests.libvirt.test_end_to_end import run  # noqa: F401  # the fixture
from tests.support.libvirt_scenario import Run, check

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(900)]


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], check=True, capture_output=True, text=True).stdout


def test_a_network_and_a_filter_changed_with_virsh_are_shown_and_repaired(run: Run) -> None:  # noqa: F811
    names = {d["kind"]: d["metadata"]["name"] for d in run.documents}
    network, group = names["Network"], names["SecurityGroup"]
    spec = next(d["spec"] for d in run.documents if d["kind"] == "Network")
    octet = spec["cidr"].split(".")[2]  # the fixture's own /24: 10.123.OCTET.0/24
    run.documents = [d for d in run.documents if d["kind"] != "VirtualMachine"]
    run.write()
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    assert not run.nebctl("diff", *run.manifest_args()).returncode

    old_range = f"<range start='10.123.{octet}.100' end='10.123.{octet}.200'/>"
    new_range = f"<range start='10.123.{octet}.150' end='10.123.{octet}.160'/>"
    virsh("net-update", network, "delete", "ip-dhcp-range", old_range, "--live", "--config")
    virsh("net-update", network, "add", "ip-dhcp-range", new_range, "--live", "--config")
    filter_name = f"nebctl-sg-{group}"
    xml = virsh("nwfilter-dumpxml", filter_name)
    assert xml.count("dstportstart='22'") == 1, xml  # the example's one SSH rule
    edited = run.root / "filter.xml"
    edited.write_text(xml.replace("dstportstart='22' dstportend='22'", "dstportstart='2222' dstportend='2222'"))
    virsh("nwfilter-define", str(edited))

    plan = check(run.nebctl("diff", *run.manifest_args()), expected=2)
    outside = plan.split("Changed outside nebctl:")[1].split("Plan:")[0]
    lines = sorted(line.strip() for line in outside.strip().splitlines())
    assert lines == sorted(
        [
            f"# network/{network} network {network} was changed outside nebctl on kvm-local: "
            f"range 10.123.{octet}.100-10.123.{octet}.200 -> 10.123.{octet}.150-10.123.{octet}.160; "
            "it will be deleted and created again there",
            f"# securitygroup/{group} filter {filter_name} was changed outside nebctl on kvm-local: "
            f"rules in icmp all 0.0.0.0/0, in tcp 22 10.123.{octet}.0/24, out any all 0.0.0.0/0 -> "
            f"in icmp all 0.0.0.0/0, in tcp 2222 10.123.{octet}.0/24, out any all 0.0.0.0/0; "
            "its rules will be set again there",
        ]
    ), plan

    applied = check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    ran = re.findall(r"\] +[\d.]+s (\S+) succeeded", applied)
    assert sorted(ran) == sorted(
        [
            f"network/{network}:delete:kvm-local",
            f"network/{network}:create:kvm-local",
            f"securitygroup/{group}:update_sg:kvm-local",
        ]
    ), applied
    live = run.connection.networkLookupByName(network)
    assert live.isActive()
    assert f"start='10.123.{octet}.100' end='10.123.{octet}.200'" in live.XMLDesc(0)
    assert "dstportstart='22'" in run.connection.nwfilterLookupByName(filter_name).XMLDesc(0)
    check(run.nebctl("diff", *run.manifest_args()))


def _redefine_network(run: Run, name: str, edit: Callable[[str], str]) -> None:  # noqa: F811
    """What a user does to change a network by hand: dump its XML, edit it, define it, and restart it (the
    running network keeps its old definition until then)."""
    xml = virsh("net-dumpxml", "--inactive", name)
    edited = run.root / f"{name}.xml"
    edited.write_text(edit(xml))
    virsh("net-define", str(edited))
    virsh("net-destroy", name)
    virsh("net-start", name)


def test_a_network_s_mtu_dns_and_bridge_changed_with_virsh_are_shown_and_repaired(run: Run) -> None:  # noqa: F811
    """The example's isolated network declares an MTU and a DNS server here, and a bridge-mode network joins
    it (attached to a bridge that need not exist: libvirt starts such a network without looking)."""
    network = next(d for d in run.documents if d["kind"] == "Network")
    name = network["metadata"]["name"]
    octet = network["spec"]["cidr"].split(".")[2]
    network["spec"].update(mtu=1400, dns=[f"10.123.{octet}.1"])
    uplink, bridge, moved = f"{run.prefix}-uplink", f"nb{run.prefix[-6:]}", f"nc{run.prefix[-6:]}"
    run.documents = [d for d in run.documents if d["kind"] != "VirtualMachine"] + [
        {
            "apiVersion": "nebctl/v1",
            "kind": "Network",
            "metadata": {"name": uplink},
            "spec": {"mode": "bridge", "bridge": bridge, "cidr": "192.168.231.0/24"},
        }
    ]
    run.write()
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    check(run.nebctl("diff", *run.manifest_args()))  # the declared MTU, DNS and bridge read back as applied

    def jumbo(xml: str) -> str:
        assert "<mtu size='1400'/>" in xml and f"<forwarder addr='10.123.{octet}.1'/>" in xml, xml
        xml = xml.replace("<mtu size='1400'/>", "<mtu size='9000'/>")
        return xml.replace(f"<forwarder addr='10.123.{octet}.1'/>", "<forwarder addr='9.9.9.9'/>")

    _redefine_network(run, name, jumbo)
    _redefine_network(run, uplink, lambda xml: xml.replace(f"name='{bridge}'", f"name='{moved}'"))

    plan = check(run.nebctl("diff", *run.manifest_args()), expected=2)
    outside = plan.split("Changed outside nebctl:")[1].split("Plan:")[0]
    assert sorted(line.strip() for line in outside.strip().splitlines()) == sorted(
        [
            f"# network/{name} network {name} was changed outside nebctl on kvm-local: "
            f"dns 10.123.{octet}.1 -> 9.9.9.9; mtu 1400 -> 9000; it will be deleted and created again there",
            f"# network/{uplink} network {uplink} was changed outside nebctl on kvm-local: "
            f"bridge {bridge} -> {moved}; it will be deleted and created again there",
        ]
    ), plan

    applied = check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    ran = re.findall(r"\] +[\d.]+s (\S+) succeeded", applied)
    assert sorted(ran) == sorted(
        f"network/{net}:{step}:kvm-local" for net in (name, uplink) for step in ("delete", "create")
    ), applied
    live = run.connection.networkLookupByName(name).XMLDesc(0)
    assert "<mtu size='1400'/>" in live and f"<forwarder addr='10.123.{octet}.1'/>" in live, live
    assert f"<bridge name='{bridge}'/>" in run.connection.networkLookupByName(uplink).XMLDesc(0)
    check(run.nebctl("diff", *run.manifest_args()))

    # Back to no MTU nor DNS declared: a network given them by hand differs from libvirt's default (none).
    network["spec"].pop("mtu")
    network["spec"].pop("dns")
    run.write()
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    check(run.nebctl("diff", *run.manifest_args()))
    _redefine_network(run, name, lambda xml: xml.replace("</name>", "</name><mtu size='1450'/>", 1))
    plan = check(run.nebctl("diff", *run.manifest_args()), expected=2)
    assert f"network {name} was changed outside nebctl on kvm-local: mtu default -> 1450;" in plan, plan


def test_an_image_volume_replaced_by_another_image_is_shown_and_imported_again(run: Run) -> None:  # noqa: F811
    """The image's volume file is replaced by a raw image of 32 MiB (the fixture's is a 64 MiB qcow2) and the pool
    refreshed, as a user would with qemu-img and virsh. Only the image volume is read for its fingerprint: a
    volume no ledger claims (one made here by hand, as a VM's disk is) is listed without one."""
    names = {d["kind"]: d["metadata"]["name"] for d in run.documents}
    image, pool = names["Image"], names["Datastore"]
    volume = f"image-{image}"
    run.documents = [d for d in run.documents if d["kind"] != "VirtualMachine"]
    run.write()
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    check(run.nebctl("diff", *run.manifest_args()))

    virsh("vol-create-as", pool, "by-hand", "8M", "--format", "raw")
    listed = {(item.object, item.name): item.fingerprint for item in _inventory()}
    assert listed["volume", volume] == {"format": "qcow2", "size": "64Mi"}
    assert listed["volume", "by-hand"] is None
    virsh("vol-delete", "by-hand", "--pool", pool)

    path = run.root / "datastore" / volume
    path.unlink()
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "32M"], check=True)
    virsh("pool-refresh", pool)

    plan = check(run.nebctl("diff", *run.manifest_args()), expected=2)
    outside = plan.split("Changed outside nebctl:")[1].split("Plan:")[0]
    assert [line.strip() for line in outside.strip().splitlines()] == [
        f"# image/{image} volume {volume} was changed outside nebctl on kvm-local: format qcow2 -> raw; "
        "size 64Mi -> 32Mi; it will be deleted and created again there"
    ], plan
    applied = check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    ran = re.findall(r"\] +[\d.]+s (\S+) succeeded", applied)
    assert sorted(ran) == [f"image/{image}:delete:kvm-local", f"image/{image}:import_image:kvm-local"], applied
    info = run.connection.storagePoolLookupByName(pool).storageVolLookupByName(volume).XMLDesc(0)
    assert "<format type='qcow2'/>" in info and f"<capacity unit='bytes'>{64 * 1024 * 1024}</capacity>" in info
    assert path.read_bytes()[:4] == b"QFI\xfb"  # the fixture's qcow2 again
    check(run.nebctl("diff", *run.manifest_args()))


def _inventory() -> list[OwnedObject]:
    return list(LibvirtMonitoring().inventory(HostRef("kvm-local", "qemu:///system")))


def _move_pool(run: Run, pool: str, path: str, *, restart: bool) -> None:  # noqa: F811
    """What a user does to point a pool elsewhere: dump its XML, edit the path, define it; with ``restart``
    the pool is stopped and started too, so that libvirt lists the (empty) new place."""
    xml = virsh("pool-dumpxml", "--inactive", pool)
    edited = run.root / "pool.xml"
    edited.write_text(re.sub(r"<path>[^<]*</path>", f"<path>{path}</path>", xml, count=1))
    virsh("pool-define", str(edited))
    if restart:
        virsh("pool-destroy", pool)
        virsh("pool-start", pool)


def test_a_pool_moved_with_virsh_under_running_vms_is_defined_again_where_it_was(run: Run) -> None:  # noqa: F811
    """The datastore's pool is defined at another (empty) directory while both example VMs run with their disks
    in it. ``apply`` stops it, defines it again at the declared path and starts it: no file moves, the VMs keep
    running on the disks they have open, and the volumes are listed again. First with the new definition only
    (libvirt would move the pool when it next starts), then with the pool restarted there, so that its image
    volume and the VMs' disks vanish from its listing until the repair."""
    names = {d["kind"]: d["metadata"]["name"] for d in run.documents}
    pool, image = names["Datastore"], names["Image"]
    vms = [vm["metadata"]["name"] for vm in run.vms()]
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    check(run.nebctl("diff", *run.manifest_args()))
    declared, elsewhere = run.root / "datastore", run.root / "elsewhere"
    elsewhere.mkdir()
    files = {path.name: path.stat().st_ino for path in declared.iterdir()}
    assert f"image-{image}" in files and len(files) >= 3, files  # the image and a disk per VM at least
    handle = run.connection.storagePoolLookupByName(pool)
    uuid = handle.UUIDString()
    moved = (
        f"# datastore/{pool} pool {pool} was changed outside nebctl on kvm-local: "
        f"path {declared} -> {elsewhere}; its pool will be defined again there"
    )

    for restart in (False, True):
        _move_pool(run, pool, str(elsewhere), restart=restart)
        plan = check(run.nebctl("diff", *run.manifest_args()), expected=2)
        outside = plan.split("Changed outside nebctl:")[1].split("Plan:")[0]
        # Restarted at the empty place, the pool lists neither the image nor the disks: the image looks deleted
        # (the disks are no resource of their own), and its import after the repair finds it where it was.
        missing = (
            f"# image/{image} volume image-{image} was deleted outside nebctl on kvm-local; it will be created again"
        )
        assert sorted(line.strip() for line in outside.strip().splitlines()) == sorted(
            [moved, missing] if restart else [moved]
        ), plan
        print("PLAN", restart, plan)
        applied = check(run.nebctl("apply", *run.manifest_args(), "--yes"))
        ran = re.findall(r"\] +[\d.]+s (\S+) succeeded", applied)
        repaired = [f"datastore/{pool}:create_datastore:kvm-local"]
        assert ran == ([*repaired, f"image/{image}:import_image:kvm-local"] if restart else repaired), applied
        handle = run.connection.storagePoolLookupByName(pool)
        assert handle.isActive() and handle.UUIDString() == uuid
        for flags in (0, libvirt.VIR_STORAGE_XML_INACTIVE):
            assert f"<path>{declared}</path>" in handle.XMLDesc(flags)
        assert {volume.name() for volume in handle.listAllVolumes(0)} == set(files)
        assert {path.name: path.stat().st_ino for path in declared.iterdir()} == files  # not a file re-made
        assert not any(elsewhere.iterdir())
        assert all(run.domain(vm).isActive() for vm in vms)
        check(run.nebctl("diff", *run.manifest_args()))
