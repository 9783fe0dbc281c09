"""The libvirt monitoring driver: host capacity and usage, every VM of a host in one ``getAllDomainStats``
call, and domain lifecycle events for noticing drift between probes.

Registered as ``libvirt`` for the monitoring family; the controller's monitoring loop calls it on its interval.
CPU usage is a rate, so the driver keeps the previous counters per host and per VM and reports the change
since the last probe (the first probe of a host reports the average since its boot, of a VM zero).
"""

from __future__ import annotations

import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import libvirt

from nebctl.core.families import Family
from nebctl.drivers.errors import DriverError
from nebctl.drivers.libvirt import ledger, owning
from nebctl.drivers.libvirt.common import LibvirtDriverBase, domain_facts, live_state, pool_definition
from nebctl.drivers.libvirt.connections import Connections
from nebctl.drivers.libvirt.fingerprinting import (
    group_filter_fingerprint,
    network_fingerprint,
    pool_fingerprint,
    volume_fingerprint,
)
from nebctl.drivers.libvirt.network import network_status
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import HostProbe, HostRef, OwnedObject, Ownership, VMStatus

KIB = 1024
MIB = 1024 * 1024

VM_STATS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)

LIFECYCLE_EVENTS: Mapping[int, str] = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}

DriftCallback = Callable[[str, str], None]
"""Called with (domain uuid, event name such as "stopped") from libvirt's event thread: keep it short."""


def _sum(stats: Mapping[str, object], prefix: str, count_key: str, field: str) -> int:
    count = stats.get(count_key, 0)
    total = 0
    for index in range(int(count) if isinstance(count, int) else 0):
        value = stats.get(f"{prefix}.{index}.{field}", 0)
        total += int(value) if isinstance(value, int) else 0
    return total


def _claimed(
    claims: Mapping[tuple[str, str, str, str], Sequence[ledger.Entry]],
    key: tuple[str, str, str, str],
    details: Mapping[str, object],
    fingerprint: Mapping[str, str] | None = None,
) -> list[OwnedObject]:
    """The object ``key`` (object, pool, name, uuid) as listed: once per ledger entry that claims it (with what
    the entry recorded of it), or once without an owner; each with the object's ``fingerprint``."""
    what, _pool, name, _uuid = key
    entries = claims.get(key)
    if not entries:
        return [OwnedObject(what, name, None, dict(details), fingerprint)]
    return [OwnedObject(what, name, e.owner, {**e.details, **details}, fingerprint) for e in entries]


def _is_local(uri: str) -> bool:
    """A URI served on this machine (no host part), where the controller's own load average is the host's."""
    parsed = urllib.parse.urlparse(uri)
    return parsed.scheme.startswith("qemu") and not parsed.hostname


class LibvirtMonitoring(LibvirtDriverBase):
    family: ClassVar[Family] = Family.MONITORING
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"probe_host", "probe_vms", "usage", "events", "inventory", "own"}
    )

    def __init__(self, *, connections: Connections | None = None) -> None:
        super().__init__(connections=connections)
        self._lock = threading.Lock()
        self._host_cpu: dict[str, tuple[int, int]] = {}  # uri -> (busy ns, total ns)
        self._vm_cpu: dict[tuple[str, str], tuple[int, float]] = {}  # (uri, uuid) -> (cpu ns, monotonic s)
        # (uri, uuid) -> the domain's owner and NIC MACs, read once per domain (``domain_facts``)
        self._facts: dict[tuple[str, str], tuple[Ownership | None, tuple[str, ...]]] = {}

    # --- hosts --------------------------------------------------------------------------------------------

    def probe_host(self, host: HostRef) -> HostProbe:
        try:
            with self._using(host, "probe host") as connection:
                _model, memory_mib, cpus, *_rest = connection.getInfo()
                free_memory = int(connection.getFreeMemory())
                cpu_usage = self._host_cpu_usage(host.uri, connection)
                disk_total, disk_free = self._pool_space(connection)
        except DriverError as error:
            return HostProbe(name=host.name, state=HostLiveState.ERROR, error=str(error))
        return HostProbe(
            name=host.name,
            state=HostLiveState.ONLINE,
            cpus=int(cpus),
            memory=int(memory_mib) * MIB,
            free_memory=free_memory,
            cpu_usage=cpu_usage,
            load=os.getloadavg()[0] if _is_local(host.uri) else 0.0,
            disk_total=disk_total,
            disk_free=disk_free,
        )

    def _host_cpu_usage(self, uri: str, connection: libvirt.virConnect) -> float:
        try:
            stats = connection.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS, 0)
        except libvirt.libvirtError:
            return 0.0  # not every driver reports node CPU times; usage is then unknown, not an error
        idle = int(stats.get("idle", 0)) + int(stats.get("iowait", 0))
        total = sum(int(value) for value in stats.values())
        busy = total - idle
        with self._lock:
            previous = self._host_cpu.get(uri)
            self._host_cpu[uri] = (busy, total)
        if previous is not None and total > previous[1]:
            busy, total = busy - previous[0], total - previous[1]
        return min(1.0, max(0.0, busy / total)) if total > 0 else 0.0

    @staticmethod
    def _pool_space(connection: libvirt.virConnect) -> tuple[int, int]:
        """Capacity and free space of the active pools; pools on one file system count once."""
        seen: set[tuple[int, int]] = set()
        for pool in connection.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            _state, capacity, _allocation, available = pool.info()
            seen.add((int(capacity), int(available)))
        return sum(c for c, _ in seen), sum(a for _, a in seen)

    # --- VMs ----------------------------------------------------------------------------------------------

    def probe_vms(self, host: HostRef) -> Sequence[VMStatus]:
        with self._using(host, "probe VMs") as connection:
            records = connection.getAllDomainStats(VM_STATS, 0)
            now = time.monotonic()
            statuses = [self._vm_status(host.uri, domain, stats, now) for domain, stats in records]
        with self._lock:
            alive = {(host.uri, status.uuid) for status in statuses}
            for key in [key for key in self._vm_cpu if key[0] == host.uri and key not in alive]:
                del self._vm_cpu[key]
                self._facts.pop(key, None)
        return statuses

    def _vm_status(self, uri: str, domain: libvirt.virDomain, stats: Mapping[str, int], now: float) -> VMStatus:
        uuid = domain.UUIDString()  # cached in the domain object: no round trip
        key = (uri, uuid)
        state = live_state(int(stats.get("state.state", -1)), int(stats.get("state.reason", 0)))
        vcpu = int(stats.get("vcpu.current", 0))
        memory = int(stats.get("balloon.maximum", 0)) * KIB
        memory_used = int(stats.get("balloon.rss", stats.get("balloon.current", 0))) * KIB
        if "balloon.maximum" not in stats:
            # Drivers whose bulk stats stop at the state (the test driver): one info call, in process.
            _state, max_memory, current, vcpu, _cpu = domain.info()
            memory, memory_used = int(max_memory) * KIB, int(current) * KIB
        cpu_time = int(stats.get("cpu.time", 0))
        with self._lock:
            previous = self._vm_cpu.get(key)
            self._vm_cpu[key] = (cpu_time, now)
            facts = self._facts.get(key)
        usage = 0.0
        if previous is not None and now > previous[1] and cpu_time >= previous[0]:
            usage = (cpu_time - previous[0]) / 1e9 / (now - previous[1])
        if facts is None:
            # The owner and the NICs are written at define time and do not change: read once per domain.
            facts = domain_facts(domain)
            with self._lock:
                self._facts[key] = facts
        owner, macs = facts
        running = state in (VMLiveState.RUNNING, VMLiveState.SUSPENDED)
        return VMStatus(
            uuid=uuid,
            name=domain.name(),
            state=state,
            vcpu=int(vcpu),
            memory=memory,
            cpu_usage=round(usage, 4),
            memory_used=memory_used if running else 0,
            disk_read=_sum(stats, "block", "block.count", "rd.bytes"),
            disk_write=_sum(stats, "block", "block.count", "wr.bytes"),
            net_rx=_sum(stats, "net", "net.count", "rx.bytes"),
            net_tx=_sum(stats, "net", "net.count", "tx.bytes"),
            owner=owner,
            macs=macs,
        )

    # --- owned objects ----------------------------------------------------------------------------------------

    def inventory(self, host: HostRef) -> Sequence[OwnedObject]:
        """The host's networks, pools, volumes and network filters: a listing of each (and one of each pool's
        volumes), never a call per object. Networks carry their ownership in their XML; pools, image volumes and
        filters in the host's ownership ledgers (``ledger``: one read per ledger, docs/ownership.md). An object
        claimed by several ledgers is listed once per claim, so whoever reads it sees every claimant. Networks,
        pools and security group filters carry their fingerprints (``fingerprinting``), from the XML of each:
        the one further read per such object. So do the volumes a ledger claims (images): one read each, while
        the volumes no ledger claims (VMs' disks, by far the most) are listed without one, unread."""
        found: list[OwnedObject] = []
        with self._using(host, "list networks, pools, volumes and filters") as connection:
            for network in connection.listAllNetworks(0):
                xml = network.XMLDesc(0)  # read once: for the status and the fingerprint
                status = network_status(network, xml)
                details = {"bridge": status.bridge}
                found.append(OwnedObject("network", status.name, status.owner, details, network_fingerprint(xml)))
            try:
                filters = list(connection.listAllNWFilters(0))
            except libvirt.libvirtError:  # a hypervisor without nwfilter (the test driver): no ledger either
                filters = []
            claims = ledger.owners(ledger.read_all(connection, filters))
            for pool in connection.listAllStoragePools(0):
                uuid = pool.UUIDString()  # kept in the handle: no round trip
                # As defined: a path defined again by hand is drift at once, though libvirt moves a running pool
                # only when it next starts.
                xml = pool_definition(pool)
                found += _claimed(claims, ("pool", "", pool.name(), uuid), {}, pool_fingerprint(xml))
                if pool.isActive():
                    for volume in pool.listAllVolumes(0):
                        key = ("volume", pool.name(), volume.name(), uuid)
                        # Only a volume a ledger claims (an image's) is read: a VM's disks, the many, are not.
                        fingerprint = volume_fingerprint(volume.XMLDesc(0)) if key in claims else None
                        found += _claimed(claims, key, {"pool": pool.name()}, fingerprint)
            for handle in filters:
                if not ledger.is_ledger(handle.name()):
                    key = ("filter", "", handle.name(), handle.UUIDString())
                    found += _claimed(claims, key, {}, group_filter_fingerprint(handle))
        return found

    def own(self, host: HostRef, what: str, name: str, owner: Ownership, *, pool: str = "") -> None:
        """Write ``owner`` on one object, the object untouched (``owning``)."""
        with self._using(host, f"write the ownership of {what} {name}") as connection:
            owning.own(connection, host.uri, what, name, owner=owner, pool=pool)
        if what == "vm":
            with self._lock:
                self._facts.pop((host.uri, name), None)  # read again at the next probe

    # --- events -------------------------------------------------------------------------------------------

    def watch(self, host: HostRef, callback: DriftCallback) -> Callable[[], None] | None:
        """Call ``callback(uuid, event)`` on every domain lifecycle event of the host, so the controller can
        probe at once instead of at the next interval. Returns the function that stops watching, or None
        when the connection offers no events (then the interval probes are all there is)."""

        def deliver(uuid: str, event: int, _detail: int) -> None:
            with self._lock:
                self._facts.pop((host.uri, uuid), None)  # a redefinition may carry a new owner or NICs
            callback(uuid, LIFECYCLE_EVENTS.get(event, str(event)))

        if not self.connections.subscribe(host.uri, deliver):
            return None
        return lambda: self.connections.unsubscribe(host.uri, deliver)
