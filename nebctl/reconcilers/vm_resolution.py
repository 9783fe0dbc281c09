"""What a plan resolves for each VM before anything is compared: the address each NIC leases, the MAC each NIC
has, and the datastore each disk goes to. Pure; problems are appended to the list handed in. Reached through the
VM reconciler's ``resolve`` (the planner asks every kind's reconciler), so the planner knows no VM rule.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import defaultdict
from collections.abc import Mapping

from nebctl.core.keys import Kind, ResourceKey, sort_key
from nebctl.reconcilers.base import PlanInputs, RecordView, SharedInputs
from nebctl.reconcilers.identity import deposed_of, mac_address
from nebctl.schemas.models import AnyManifest, Host, Image, Network, VirtualMachine


def lease_addresses(  # noqa: PLR0912 - one pass over every NIC: static, kept, deposed and new addresses
    request: PlanInputs,
    own: Mapping[ResourceKey, RecordView],
    problems: list[str],
    deposing: frozenset[ResourceKey] = frozenset(),
) -> dict[tuple[ResourceKey, int], str]:
    """The address of every NIC: static when given, the one leased before when still valid, else the lowest free
    address of the network's range (VMs in key order, so the result does not depend on input order). The new
    VM of a create-first replacement (``deposing``) runs beside the old one: it gets addresses of its own."""
    # Addresses are handled as integers: parsing tens of thousands of recorded ones with ``ipaddress`` took
    # longer than the rest of a no-op plan's lease work.
    leases: dict[tuple[ResourceKey, int], str] = {}
    used: dict[ResourceKey, set[int]] = defaultdict(set)
    vms = sorted(
        ((key, doc) for key, doc in request.documents.items() if isinstance(doc, VirtualMachine)),
        key=lambda item: sort_key(item[0]),
    )
    networks = {key: doc for key, doc in request.documents.items() if isinstance(doc, Network)}
    ranges = {
        key: (*map(int, doc.spec.effective_range), int(doc.spec.effective_gateway)) for key, doc in networks.items()
    }
    # The lowest address of each network that may still be free: addresses are only taken during the loop
    # below, so the next free one is never below the last one found (without this, leasing n addresses
    # rescanned the range from its start every time, n^2 / 2 steps).
    cursor: dict[ResourceKey, int] = {}
    # Static addresses first, then addresses recorded for VMs that stay, so new leases avoid both.
    static: dict[ResourceKey, set[int]] = defaultdict(set)
    for key, vm in vms:
        for nic in vm.spec.nics:
            if nic.ip is not None:
                static[ResourceKey.of(Kind.NETWORK, nic.network, key.namespace)].add(int(nic.ip))
    for network_key, addresses in static.items():
        used[network_key] |= addresses
    # Addresses of old VMs that create-first replacements deposed: held until the old VM goes, after the new one
    # runs, so no VM of this plan may have them (the new one would have to wait for the old one to go).
    deposed: dict[tuple[ResourceKey, int], ResourceKey] = {}
    for key, stored in request.records.items():
        if key.kind is not Kind.VIRTUAL_MACHINE or stored.applied is None:
            continue
        held = deposed_of(key, stored.live) is not None
        if not held and key not in request.documents and stored.stack == request.stack and request.prune:
            continue  # deleted by this plan: its addresses are free again
        for nic in stored.applied.get("nics", []):
            if nic.get("ip"):
                network_key = ResourceKey.of(Kind.NETWORK, nic["network"], key.namespace)
                used[network_key].add(_address(nic["ip"]))
                if held:
                    deposed[(network_key, _address(nic["ip"]))] = key
    for key, vm in vms:
        record = own.get(key)
        old_nics = record.applied.get("nics", []) if record is not None and record.applied else []
        for index, nic in enumerate(vm.spec.nics):
            network_key = ResourceKey.of(Kind.NETWORK, nic.network, key.namespace)
            if nic.ip is not None:
                leases[(key, index)] = str(nic.ip)
                holder = deposed.get((network_key, int(nic.ip))) if deposed else None
                if holder is not None:
                    problems.append(
                        f"{key}: nics[{index}].ip {nic.ip} is held by {holder}, the VM it replaces, until the new"
                        " VM runs (lifecycle.createBeforeDestroy); give the new VM another address, or drop"
                        " createBeforeDestroy"
                    )
                continue
            previous = old_nics[index] if index < len(old_nics) and key not in deposing else None
            network = networks.get(network_key)
            if network is None:
                continue  # reported by validation
            first, last, gateway = ranges[network_key]
            if previous and previous.get("network") == nic.network and previous.get("ip"):
                address = _address(previous["ip"])
                # Kept unless another NIC now asks for it as its static address (the static one wins).
                if first <= address <= last and address not in static[network_key]:
                    leases[(key, index)] = str(previous["ip"])
                    continue
            free = _free_address(cursor.get(network_key, first), last, used[network_key], gateway)
            if free is None:
                problems.append(f"{key}: nics[{index}]: no free address left in network/{nic.network}")
                continue
            cursor[network_key] = free
            used[network_key].add(free)
            leases[(key, index)] = str(ipaddress.IPv4Address(free))
    return leases


def mac_addresses(  # noqa: PLR0912 - one pass over every NIC: kept, recorded, derived and the next free MAC
    request: PlanInputs,
    own: Mapping[ResourceKey, RecordView],
    incarnations: Mapping[ResourceKey, int],
    deposing: frozenset[ResourceKey],
    problems: list[str],
) -> dict[tuple[ResourceKey, int], str]:
    """The MAC of every NIC of the manifests, none given to two NICs of the installation. A NIC keeps the MAC
    it has (the one its VM was created with, or the one an interrupted create already prepared, so a resumed
    apply plans it again); a new one takes its first derived MAC that no other NIC has, new NICs in key order,
    so a collision is resolved the same way on every plan. The new VM of a create-first replacement
    (``deposing``) gets MACs of its own: the old one keeps its MACs until it is gone."""
    vms = sorted(
        ((key, doc) for key, doc in request.documents.items() if isinstance(doc, VirtualMachine)),
        key=lambda item: sort_key(item[0]),
    )
    macs: dict[tuple[ResourceKey, int], str] = {}
    used: set[str] = set()
    for key, stored in request.records.items():
        if key.kind is not Kind.VIRTUAL_MACHINE:
            continue
        if key in request.documents and key in own and key not in deposing:
            continue  # its kept MACs are taken below
        if key not in request.documents and key in own and request.prune and deposed_of(key, stored.live) is None:
            continue  # deleted by this plan: its MACs are free again
        used.update(_recorded_macs(stored).values())
    for key, vm in vms:
        record = own.get(key)
        if record is None or key in deposing:
            continue
        kept = _recorded_macs(record)
        for index in range(len(vm.spec.nics)):
            if index in kept:
                macs[(key, index)] = kept[index]
                used.add(kept[index])
    limit = 1 << request.mac_bits  # more attempts than MACs of that width: the installation is full
    for key, vm in vms:
        incarnation = incarnations.get(key, 0)
        for index in range(len(vm.spec.nics)):
            if (key, index) in macs:
                continue
            attempt = 0
            mac = mac_address(key, index, incarnation, 0, request.mac_bits)
            while mac in used and attempt < limit:
                attempt += 1
                mac = mac_address(key, index, incarnation, attempt, request.mac_bits)
            if mac in used:
                # A nearly full range: the derived ones missed the few free MACs; the next free one after the
                # last tried, in order (as deterministic, and it finds one whenever one is left).
                found = _next_free_mac(mac, used, request.mac_bits)
                if found is None:
                    problems.append(f"{key}: nics[{index}]: no free MAC address left")
                    continue
                mac = found
            used.add(mac)
            macs[(key, index)] = mac
    return macs


def vm_shared_inputs(vm: VirtualMachine) -> SharedInputs:
    """What a plan's installation-wide steps read of a VM's manifest: its size, disks and placement rules (where
    it goes, and the quotas); its NICs' networks and static addresses (leases, MACs) and its disks' datastores and
    images (disk datastores). Two manifests equal here are placed and resolved alike, whatever else differs."""
    spec = vm.spec
    return SharedInputs(
        placing=(spec.vcpu, spec.memory, tuple(disk.size for disk in spec.disks), spec.placement),
        resolving=(
            tuple((nic.network, nic.ip) for nic in spec.nics),
            tuple((disk.datastore, disk.image) for disk in spec.disks),
        ),
    )


def vm_record_shared_inputs(record: RecordView) -> SharedInputs:
    """What those steps read of a VM's record: its host and the size and instance type it holds there (where it
    stays); its stack, its NICs' addresses and MACs (applied, or prepared by an unfinished apply), its incarnation
    and deposition (the rest)."""
    applied = record.applied
    live = record.live
    size = nics = None
    if applied is not None:
        size = (applied.get("vcpu"), applied.get("memory"))
        nics = tuple((nic.get("network"), nic.get("ip"), nic.get("mac")) for nic in applied.get("nics", []))
    return SharedInputs(
        placing=(record.host, size, live.get("instanceType")),
        resolving=(
            record.stack,
            applied is None,
            nics,
            {name: value for name, value in live.items() if name.startswith("nic.")},
            live.get("incarnation"),
            live.get("deposed"),
        ),
    )


def _next_free_mac(after: str, used: set[str], bits: int) -> str | None:
    """The first MAC after ``after`` (wrapping around the ``bits``-bit range) that is not in ``used``."""
    size = 1 << bits
    value = int(after.replace(":", "")[6:], 16)  # a MAC of that width is below ``size`` (``mac_address``)
    for step in range(1, size + 1):
        candidate = (value + step) % size
        mac = "52:54:00:" + ":".join(f"{byte:02x}" for byte in candidate.to_bytes(3, "big"))
        if mac not in used:
            return mac
    return None


def _recorded_macs(record: RecordView) -> dict[int, str]:
    """NIC index -> MAC a VM's record knows: of its applied spec, or prepared by an unfinished apply."""
    found: dict[int, str] = {}
    for index, nic in enumerate((record.applied or {}).get("nics", [])):
        if nic.get("mac"):
            found[index] = str(nic["mac"])
    for name, value in record.live.items():
        if name.startswith("nic.") and isinstance(value, Mapping) and value.get("mac"):
            found.setdefault(int(name[4:]), str(value["mac"]))
    return found


def _address(text: str) -> int:
    """A recorded (canonical, dotted-quad) IPv4 address as an integer."""
    return int.from_bytes(socket.inet_aton(text), "big")


def _free_address(first: int, last: int, used: set[int], gateway: int) -> int | None:
    address = first
    while address <= last:
        if address not in used and address != gateway:
            return address
        address += 1
    return None


def cloud_hosts(documents: Mapping[ResourceKey, AnyManifest]) -> dict[str, str]:
    """The cloud hosts among the documents (a ``cloud`` capacity map), each with its URI."""
    return {
        key.name: document.spec.uri
        for key, document in documents.items()
        if isinstance(document, Host) and document.spec.cloud is not None
    }


def disk_datastores_of(
    documents: Mapping[ResourceKey, AnyManifest],
    spans: Mapping[ResourceKey, tuple[str, ...]],
    placements: Mapping[ResourceKey, str],
    problems: list[str],
) -> dict[tuple[ResourceKey, int], str]:
    """Each disk's datastore: its own, else its image's, else the first datastore on the VM's host."""
    datastores = sorted(key.name for key in documents if key.kind is Kind.DATASTORE)
    # Spans as sets, and the first datastore of each host: a span lists every host, and scanning it for each
    # disk was most of this function's time on a large fleet.
    span_sets = {ds: set(spans.get(ResourceKey.of(Kind.DATASTORE, ds), ())) for ds in datastores}
    first_on_host: dict[str, str] = {}
    for ds in datastores:
        for on in span_sets[ds]:
            first_on_host.setdefault(on, ds)
    chosen: dict[tuple[ResourceKey, int], str] = {}
    cloud = cloud_hosts(documents)
    for key, document in documents.items():
        if not isinstance(document, VirtualMachine):
            continue
        host = placements.get(key)
        if host is None:
            continue  # not placed: already reported, and its disks have nowhere to go
        if host in cloud:
            # A cloud host keeps no datastores: the VM boots from its first disk's Image as the cloud has it (an
            # AMI), and the instance's root volume is its only disk.
            if len(document.spec.disks) > 1:
                problems.append(
                    f"{key}: placed on cloud host {host}, which keeps no datastores: a VM there has at most one"
                    f" disk (its Image's cloud source), not {len(document.spec.disks)}"
                )
            continue
        for index, disk in enumerate(document.spec.disks):
            name = disk.datastore
            if name is None and disk.image is not None:
                image = documents.get(ResourceKey.of(Kind.IMAGE, disk.image, key.namespace))
                name = image.spec.datastore if isinstance(image, Image) else None
            if name is None:
                name = first_on_host.get(host)
            if name is None:
                problems.append(f"{key}: disks[{index}]: no datastore on host {host} to hold the disk")
                continue
            if name in span_sets and host not in span_sets[name]:
                problems.append(f"{key}: disks[{index}]: datastore/{name} is not available on host {host}")
            chosen[(key, index)] = name
    return chosen
