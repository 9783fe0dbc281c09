"""The sim virtualization and monitoring drivers: VMs on fleet hosts, their state machine, and bulk probes.

Registered by ``nebctl.drivers.registry``; the executor and monitoring call them like any other driver. The
state machine is the one the contract suite checks for every driver: deploy defines and starts; shutdown and
cancel stop (a stopped VM is left alone); suspend and resume only from running and suspended; reboot only a
running VM; undeploy removes. Actions are instantaneous unless latency is configured (``sim.behaviour``).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from nebctl.core.families import Family
from nebctl.drivers import fingerprints
from nebctl.drivers.errors import ConflictError, NotFoundError, PermanentError
from nebctl.drivers.sim.fleet import (
    VM_COLUMNS,
    SimFleet,
    edge,
    fleet_host,
    host_shape,
    open_fleet,
    owner_from,
    owner_json,
)
from nebctl.drivers.sim.usage import vm_cpu
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import (
    HostProbe,
    HostRef,
    NetworkDefinition,
    OwnedObject,
    Ownership,
    VMDefinition,
    VMStatus,
    to_payload,
)

# The table holding each object ``own`` writes on, and the column naming it there.
_OWNED_TABLES: Mapping[str, tuple[str, str]] = {
    "vm": ("vms", "uuid"),
    "network": ("networks", "name"),
    "pool": ("datastores", "name"),
    "volume": ("volumes", "name"),
    "filter": ("security_groups", "name"),
}

RUNNING, STOPPED, SUSPENDED = VMLiveState.RUNNING.value, VMLiveState.STOPPED.value, VMLiveState.SUSPENDED.value


class SimDriver:
    """What the sim drivers share: the fleet, taken from the registry's shared objects so they use one file."""

    name: ClassVar[str] = "sim"

    def __init__(self, fleet: SimFleet) -> None:
        self.fleet = fleet

    @classmethod
    def from_context(cls, context: Any) -> Any:  # a registry.DriverContext; Any avoids an import cycle
        fleet = context.shared.get("sim.fleet")
        if fleet is None:
            fleet = open_fleet(context.settings, options=context.options)
            context.shared["sim.fleet"] = fleet
        return cls(fleet)


def _definition(vm: VMDefinition) -> str:
    # Cloud-init carries secrets: the simulated fleet only remembers whether there was any.
    payload = to_payload(vm)
    payload["cloud_init"] = vm.cloud_init is not None
    return json.dumps(payload)


def _macs(vm: VMDefinition) -> str:
    """The MACs of the VM's NICs as the fleet keeps them (and ``SimFleet.status`` reads them back)."""
    return ",".join(nic.mac for nic in vm.nics)


class SimVirtualization(SimDriver):
    family: ClassVar[Family] = Family.VIRTUALIZATION
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"deploy", "shutdown", "cancel", "reboot", "suspend", "resume", "migrate", "live-migrate", "undeploy", "poll"}
    )

    @edge
    def deploy(self, host: HostRef, vm: VMDefinition, *, start: bool = True) -> VMStatus:
        name, _ = self.fleet.enter("virtualization.deploy", host)
        now = self.fleet.clock()
        macs = _macs(vm)
        # Made before the write: other threads wait for the fleet file while it is held.
        definition, owner = _definition(vm), owner_json(vm.owner)
        with self.fleet.write() as connection:
            row = connection.execute(
                "SELECT host, state, started, vcpu, memory, macs FROM vms WHERE uuid = ?", (vm.uuid,)
            ).fetchone()
            if row is not None and row[0] != name:
                raise ConflictError(f"VM {vm.name} ({vm.uuid}) is on host {row[0]}, not {name}", driver="sim")
            clash = connection.execute(
                "SELECT uuid FROM vms WHERE host = ? AND name = ? AND uuid <> ?", (name, vm.name, vm.uuid)
            ).fetchone()
            if clash is not None:
                raise ConflictError(f"host {name} already has a VM named {vm.name} ({clash[0]})", driver="sim")
            if row is None:
                state, started = (RUNNING, now) if start else (STOPPED, None)
                connection.execute(
                    "INSERT INTO vms (uuid, host, name, state, vcpu, memory, definition, owner, started, created, "
                    "macs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (vm.uuid, name, vm.name, state, vm.vcpu, vm.memory, definition, owner, started, now, macs),
                )  # fmt: skip
                vcpu, memory = vm.vcpu, vm.memory
            else:
                _, state, started, vcpu, memory, kept = row
                if state == STOPPED:
                    # A stopped VM takes the new definition; a running one keeps its own until restarted.
                    vcpu, memory = vm.vcpu, vm.memory
                    connection.execute(
                        "UPDATE vms SET vcpu = ?, memory = ?, definition = ?, owner = ?, macs = ? WHERE uuid = ?",
                        (vcpu, memory, definition, owner, macs, vm.uuid),
                    )
                else:
                    macs = kept
                if start and state != RUNNING:
                    state, started = RUNNING, now
                    connection.execute("UPDATE vms SET state = ?, started = ? WHERE uuid = ?", (state, now, vm.uuid))
        return self.fleet.status((vm.uuid, vm.name, state, vcpu, memory, owner, started, macs), now)

    def _transition(
        self, action: str, host: HostRef, uuid: str, moves: dict[str, str], *, restart: bool = False
    ) -> None:
        name, _ = self.fleet.enter(f"virtualization.{action}", host)
        now = self.fleet.clock()
        with self.fleet.write() as connection:
            row = connection.execute("SELECT state FROM vms WHERE uuid = ? AND host = ?", (uuid, name)).fetchone()
            if row is None:
                raise NotFoundError(f"no VM {uuid} on host {name}", driver="sim")
            state = row[0]
            if state not in moves:
                raise ConflictError(f"cannot {action} VM {uuid}: it is {state}", driver="sim")
            target = moves[state]
            if target == state and not restart:
                return
            if target == STOPPED:
                connection.execute("UPDATE vms SET state = ?, started = NULL WHERE uuid = ?", (target, uuid))
            elif target == RUNNING and (restart or state != SUSPENDED):
                connection.execute("UPDATE vms SET state = ?, started = ? WHERE uuid = ?", (target, now, uuid))
            else:  # suspend and resume keep the uptime, like a paused domain
                connection.execute("UPDATE vms SET state = ? WHERE uuid = ?", (target, uuid))

    _STOP: ClassVar[dict[str, str]] = {
        RUNNING: STOPPED,
        SUSPENDED: STOPPED,
        STOPPED: STOPPED,
        VMLiveState.CRASHED.value: STOPPED,
    }

    @edge
    def shutdown(self, host: HostRef, uuid: str, *, timeout: float) -> None:
        self._transition("shutdown", host, uuid, self._STOP)

    @edge
    def cancel(self, host: HostRef, uuid: str) -> None:
        self._transition("cancel", host, uuid, self._STOP)

    @edge
    def reboot(self, host: HostRef, uuid: str) -> None:
        self._transition("reboot", host, uuid, {RUNNING: RUNNING}, restart=True)

    @edge
    def suspend(self, host: HostRef, uuid: str) -> None:
        self._transition("suspend", host, uuid, {RUNNING: SUSPENDED, SUSPENDED: SUSPENDED})

    @edge
    def resume(self, host: HostRef, uuid: str) -> None:
        self._transition("resume", host, uuid, {SUSPENDED: RUNNING, RUNNING: RUNNING})

    @edge
    def migrate(self, source: HostRef, target: HostRef, vm: VMDefinition, *, live: bool = False) -> VMStatus:
        source_name, _ = self.fleet.enter("virtualization.migrate", source)
        target_name, _ = self.fleet.enter("virtualization.migrate", target)
        now = self.fleet.clock()
        with self.fleet.write() as connection:
            row = connection.execute(f"SELECT host, {VM_COLUMNS} FROM vms WHERE uuid = ?", (vm.uuid,)).fetchone()
            if row is None or row[0] not in (source_name, target_name):
                raise NotFoundError(f"no VM {vm.uuid} on host {source_name}", driver="sim")
            if row[0] == source_name and source_name != target_name:
                clash = connection.execute(
                    "SELECT uuid FROM vms WHERE host = ? AND name = ? AND uuid <> ?", (target_name, row[2], vm.uuid)
                ).fetchone()
                if clash is not None:
                    raise ConflictError(f"host {target_name} already has a VM named {row[2]}", driver="sim")
                # A cold migration of a running VM restarts it on the target; a live one keeps its uptime.
                started = row[7] if live or row[3] != RUNNING else now
                connection.execute(
                    "UPDATE vms SET host = ?, started = ? WHERE uuid = ?", (target_name, started, vm.uuid)
                )
                row = (*row[:7], started, *row[8:])
            if vm.owner is not None:
                # The move is applied with a new spec (its host): the VM carries it, as a redefinition would.
                connection.execute("UPDATE vms SET owner = ? WHERE uuid = ?", (owner_json(vm.owner), vm.uuid))
                row = (*row[:6], owner_json(vm.owner), *row[7:])
        return self.fleet.status(row[1:], now)

    @edge
    def undeploy(self, host: HostRef, uuid: str) -> None:
        name, _ = self.fleet.enter("virtualization.undeploy", host)
        with self.fleet.write() as connection:
            if connection.execute("DELETE FROM vms WHERE uuid = ? AND host = ?", (uuid, name)).rowcount == 0:
                raise NotFoundError(f"no VM {uuid} on host {name}", driver="sim")

    @edge
    def poll(self, host: HostRef, uuid: str) -> VMStatus:
        name, _ = self.fleet.enter("virtualization.poll", host)
        row = (
            self.fleet.store.read()
            .execute(f"SELECT {VM_COLUMNS} FROM vms WHERE uuid = ? AND host = ?", (uuid, name))
            .fetchone()
        )
        if row is None:
            raise NotFoundError(f"no VM {uuid} on host {name}", driver="sim")
        return self.fleet.status(row, self.fleet.clock())


class SimMonitoring(SimDriver):
    family: ClassVar[Family] = Family.MONITORING
    capabilities: ClassVar[frozenset[str]] = frozenset({"probe_host", "probe_vms", "usage", "inventory", "own"})

    def __init__(self, fleet: SimFleet) -> None:
        super().__init__(fleet)
        self._owners: dict[bytes, Ownership | None] = {}  # those the last bulk probe parsed, by their text's digest

    @edge
    def observation_token(self, hosts: Sequence[HostRef]) -> str | None:
        """A word equal between two calls exactly when the probes and listings of these hosts would report the
        same, usage figures aside (they move with the clock): the fleet file's identity and change count (the
        rows of every host are in one file). None while some latency or fault is set: answers then vary."""
        if self.fleet.misbehaves():
            return None
        return self.fleet.store.changes()

    @edge
    def host_tokens(self, hosts: Sequence[HostRef]) -> dict[str, str] | None:
        """A word for each of these hosts (by the HostRef's name), equal between two calls exactly when that host's
        probe and listing would report the same, usage figures aside: the fleet file's identity and the host's own
        change count. None while some latency or fault is set."""
        if self.fleet.misbehaves():
            return None
        identity, counts = self.fleet.store.host_changes()
        return {ref.name: f"{identity}:{counts.get(fleet_host(ref.name, ref.uri), 0)}" for ref in hosts}

    @edge
    def probe_host(self, host: HostRef) -> HostProbe:
        name, down = self.fleet.enter("monitoring.probe_host", host, allow_down=True)
        connection = self.fleet.store.read()
        cpus, memory, disk, reason = connection.execute(
            "SELECT cpus, memory, disk, reason FROM hosts WHERE name = ?", (name,)
        ).fetchone()
        if down:
            return HostProbe(name=name, state=HostLiveState.ERROR, error=f"host does not answer: {reason or 'down'}")
        now = self.fleet.clock()
        # The owners are not needed for the host's figures: NULL in their place spares parsing each document.
        statuses = [self.fleet.status(row, now) for row in connection.execute(
            f"SELECT {VM_COLUMNS.replace('owner', 'NULL')} FROM vms WHERE host = ?", (name,)
        )]  # fmt: skip
        used_disk = connection.execute(
            "SELECT COALESCE(SUM(allocation), 0) FROM volumes WHERE host = ?", (name,)
        ).fetchone()[0]
        return self._probe(name, cpus, memory, disk, figures=_figures(statuses), used_disk=used_disk)

    @edge
    def probe_many(self, hosts: Sequence[HostRef]) -> dict[str, tuple[HostProbe, Sequence[VMStatus]]] | None:
        """Every host's ``probe_host`` and ``probe_vms`` (by the HostRef's name) in one pass over the fleet file,
        as a backend that answers for many hosts in one call does. None when some latency or fault is set (the
        caller then probes host by host, so that each call suffers what was set for it)."""
        return self._probe_fleet(hosts, owners=True)

    @edge
    def probe_hosts(self, hosts: Sequence[HostRef]) -> dict[str, HostProbe] | None:
        """Every host's ``probe_host`` (by the HostRef's name) in one pass over the fleet file, its VMs' ownership
        not even parsed. None when some latency or fault is set, as for ``probe_many``."""
        found = self._probe_fleet(hosts, owners=False)
        return None if found is None else {name: probe for name, (probe, _) in found.items()}

    def _probe_fleet(
        self, hosts: Sequence[HostRef], *, owners: bool
    ) -> dict[str, tuple[HostProbe, Sequence[VMStatus]]] | None:
        if self.fleet.misbehaves():
            return None
        connection = self.fleet.store.read()
        shapes = {ref.name: host_shape(ref.name, ref.uri) for ref in hosts}
        rows = {
            row[0]: row[1:] for row in connection.execute("SELECT name, cpus, memory, disk, down, reason FROM hosts")
        }
        for shape in shapes.values():
            if shape.name not in rows:  # first sight, as ``enter`` does
                self.fleet.add_host(shape.name, uri=shape.uri, cpus=shape.cpus, memory=shape.memory, disk=shape.disk)
                rows[shape.name] = (shape.cpus, shape.memory, shape.disk, 0, None)
        now = self.fleet.clock()
        statuses: dict[str, list[VMStatus]] = {}
        where, asked = _of_hosts([shape.name for shape in shapes.values()], len(rows))
        if owners:
            # Each VM's ownership document (its spec included) parsed by the last bulk probe is taken as parsed
            # then: a service probes the same fleet again and again. Only those seen this time are kept for the next.
            parsed: tuple[dict[bytes, Ownership | None], dict[bytes, Ownership | None]] = (self._owners, {})
            query = f"SELECT host, {VM_COLUMNS} FROM vms{where} ORDER BY host, name"  # probe_vms's order
            for row in connection.execute(query, asked):
                statuses.setdefault(row[0], []).append(self.fleet.status(row[1:], now, parsed))
            self._owners = parsed[1]
            figures = {host: _figures(vms) for host, vms in statuses.items()}
        else:
            figures = self._fleet_figures(connection, where, asked, now)
        used = dict(
            connection.execute(f"SELECT host, COALESCE(SUM(allocation), 0) FROM volumes{where} GROUP BY host", asked)
        )
        found: dict[str, tuple[HostProbe, Sequence[VMStatus]]] = {}
        for ref_name, shape in shapes.items():
            cpus, memory, disk, down, reason = rows[shape.name]
            if down:
                error = f"host does not answer: {reason or 'down'}"
                found[ref_name] = HostProbe(name=shape.name, state=HostLiveState.ERROR, error=error), ()
                continue
            summed = figures.get(shape.name) or _figures(())
            probe = self._probe(shape.name, cpus, memory, disk, figures=summed, used_disk=used.get(shape.name, 0))
            found[ref_name] = probe, statuses.get(shape.name, [])
        return found

    def _fleet_figures(
        self, connection: sqlite3.Connection, where: str, asked: tuple[str, ...], now: float
    ) -> dict[str, tuple[int, float, int]]:
        """Each host's ``_figures`` from its VMs' rows, without building their statuses: the memory of those that
        hold it, each one's CPU usage (``usage.vm_cpu``, summed in ``probe_vms``'s order, as ``_figures`` sums it)
        and their count."""
        held: dict[str, list[int]] = {}
        used: dict[str, list[float]] = {}
        seed = self.fleet.seed
        query = f"SELECT host, uuid, state, vcpu, memory, started FROM vms{where} ORDER BY host, name"
        for host, uuid, state, vcpu, memory, started in connection.execute(query, asked):
            held.setdefault(host, []).append(memory if state in _HOLDING_MEMORY else 0)
            used.setdefault(host, []).append(
                vm_cpu(seed=seed, uuid=uuid, state=state, vcpu=vcpu, started=started, now=now)
            )
        return {host: (sum(memory), sum(used[host]), len(memory)) for host, memory in held.items()}

    @staticmethod
    def _probe(
        name: str, cpus: int, memory: int, disk: int, *, figures: tuple[int, float, int], used_disk: int
    ) -> HostProbe:
        allocated, load, count = figures
        return HostProbe(
            name=name,
            state=HostLiveState.ONLINE,
            cpus=cpus,
            memory=memory,
            free_memory=max(0, memory - allocated),
            cpu_usage=round(min(1.0, load / cpus), 4) if cpus else 0.0,
            load=round(load, 4),
            disk_total=disk,
            disk_free=max(0, disk - used_disk),
            custom={"sim": "true", "vms": str(count)},
        )

    @edge
    def list_many(
        self, hosts: Sequence[HostRef]
    ) -> dict[str, tuple[frozenset[tuple[str, str]], dict[tuple[str, str], Mapping[str, str]]]] | None:
        """The (object, name) pairs of every network, pool, volume and filter of each host (by the HostRef's
        name), with their fingerprints, as ``inventory`` lists them, in one query per table over the fleet file:
        what drift detection reads, without the details and owners it does not need. None when some latency or
        fault is set, or a host is down (the caller then lists host by host, where each call suffers what was set
        and a host that does not answer is left out). A host seen for the first time is created, as ``enter``
        does."""
        if self.fleet.misbehaves():
            return None
        connection = self.fleet.store.read()
        shapes = {ref.name: host_shape(ref.name, ref.uri) for ref in hosts}
        names = {ref_name: shape.name for ref_name, shape in shapes.items()}
        down = dict(connection.execute("SELECT name, down FROM hosts"))
        for shape in shapes.values():
            if shape.name not in down:
                self.fleet.add_host(shape.name, uri=shape.uri, cpus=shape.cpus, memory=shape.memory, disk=shape.disk)
                down[shape.name] = 0
        if any(down[name] for name in names.values()):
            return None
        pairs: dict[str, set[tuple[str, str]]] = {name: set() for name in names.values()}
        prints: dict[str, dict[tuple[str, str], Mapping[str, str]]] = {name: {} for name in names.values()}
        where, asked = _of_hosts(list(pairs), len(down))
        for what, query, fingerprint in (
            ("network", "SELECT host, name, definition FROM networks", _network_fingerprint_text),
            ("pool", "SELECT host, name, type, path FROM datastores", _pool_fingerprint),
            ("volume", "SELECT host, name, format, capacity FROM volumes", _volume_fingerprint),
            ("filter", "SELECT host, name, rules FROM security_groups", _rules_fingerprint),
        ):
            for host, name, *values in connection.execute(query + where, asked):
                found = pairs.get(host)
                if found is not None:
                    found.add((what, name))
                    seen = fingerprint(*values)
                    if seen is not None:
                        prints[host][what, name] = seen
        return {ref_name: (frozenset(pairs[name]), prints[name]) for ref_name, name in names.items()}

    @edge
    def inventory(self, host: HostRef) -> Sequence[OwnedObject]:
        """Every network, pool, volume and security group of the host, each with its ownership (None for one
        made without nebctl) and its fingerprint (``drivers.fingerprints``): one query per table."""
        name, _ = self.fleet.enter("monitoring.inventory", host)
        connection = self.fleet.store.read()
        found: list[OwnedObject] = []
        for network, definition, owner in connection.execute(
            "SELECT name, definition, owner FROM networks WHERE host = ?", (name,)
        ):
            data = json.loads(definition)
            bridge = data.get("bridge") or f"virbr-{network}"[:15]
            found += _owned("network", network, owner, {"bridge": bridge}, _network_fingerprint(data))
        disk = connection.execute("SELECT disk FROM hosts WHERE name = ?", (name,)).fetchone()[0]
        for pool, path, kind, owner in connection.execute(
            "SELECT name, path, type, owner FROM datastores WHERE host = ?", (name,)
        ):
            found += _owned("pool", pool, owner, {"capacity": disk}, _pool_fingerprint(kind, path))
        for pool, volume, capacity, fmt, sha256, owner in connection.execute(
            "SELECT datastore, name, capacity, format, sha256, owner FROM volumes WHERE host = ?",
            (name,),
        ):
            details = {"pool": pool, "capacity": capacity, "format": fmt, "sha256": sha256}
            found += _owned("volume", volume, owner, details, _volume_fingerprint(fmt, capacity))
        for group, rules, owner in connection.execute(
            "SELECT name, rules, owner FROM security_groups WHERE host = ?", (name,)
        ):
            found += _owned("filter", group, owner, {}, _rules_fingerprint(rules))
        return found

    @edge
    def own(self, host: HostRef, what: str, name: str, owner: Ownership, *, pool: str = "") -> None:
        """Write ``owner`` in the row of the object ``inventory`` lists as (``what``, ``name``), or of the VM
        whose UUID is ``name``; ``NotFoundError`` when there is none."""
        host_name, _ = self.fleet.enter("monitoring.own", host)
        table, column = _OWNED_TABLES.get(what, ("", ""))
        if not table:
            raise PermanentError(f"no simulated object kind {what!r}", driver="sim")
        # The table and column come from _OWNED_TABLES, never from the caller.
        query = f"UPDATE {table} SET owner = ? WHERE host = ? AND {column} = ?"
        arguments: tuple[str | None, ...] = (owner_json(owner), host_name, name)
        if what == "volume":
            query, arguments = f"{query} AND datastore = ?", (*arguments, pool)
        with self.fleet.write() as connection:
            if connection.execute(query, arguments).rowcount == 0:
                raise NotFoundError(f"no {what} {name} on host {host_name}", driver="sim")

    @edge
    def probe_vms(self, host: HostRef) -> Sequence[VMStatus]:
        name, _ = self.fleet.enter("monitoring.probe_vms", host)
        now = self.fleet.clock()
        rows = self.fleet.store.read().execute(f"SELECT {VM_COLUMNS} FROM vms WHERE host = ?", (name,)).fetchall()
        return [self.fleet.status(row, now) for row in rows]


# The states in which a VM holds its memory on its host.
_HOLDING_MEMORY = frozenset({VMLiveState.RUNNING.value, VMLiveState.SUSPENDED.value})


def _figures(statuses: Sequence[VMStatus]) -> tuple[int, float, int]:
    """What a host's probe sums of its VMs: the memory of those that hold it, their CPU usage, and their count."""
    allocated = sum(s.memory for s in statuses if s.state in (VMLiveState.RUNNING, VMLiveState.SUSPENDED))
    return allocated, sum(s.cpu_usage for s in statuses), len(statuses)


def _of_hosts(names: Sequence[str], fleet: int) -> tuple[str, tuple[str, ...]]:
    """A ``WHERE`` clause (and its parameters) keeping the rows of the hosts ``names`` when they are a few of the
    ``fleet``'s hosts, else none: every table's key starts with the host, so a few hosts' rows are found by it. A
    plan after an apply probes again the host the apply acted on, of a thousand: reading every row to keep that
    host's was most of that bulk probe."""
    if len(names) * 4 >= fleet or len(names) > _FEW_HOSTS:
        return "", ()
    return f" WHERE host IN ({', '.join('?' * len(names))})", tuple(names)


_FEW_HOSTS = 500  # below SQLite's least limit of parameters in one statement (999)


def _owned(
    what: str, name: str, text: str | None, details: dict[str, Any], fingerprint: Mapping[str, str] | None
) -> list[OwnedObject]:
    return [OwnedObject(what, name, owner_from(text), details, fingerprint)]


# The fingerprint of each kind of row (``drivers.fingerprints``), for ``inventory`` and ``list_many`` alike. A
# row without what one needs (written by hand into the fleet file) has none: it is judged by its presence.


def _network_fingerprint(data: Mapping[str, Any]) -> Mapping[str, str] | None:
    fields = ("mode", "cidr", "gateway", "range_first", "range_last")
    if not all(isinstance(data.get(field), str) for field in fields):
        return None
    mode, cidr, gateway, first, last = (str(data[field]) for field in fields)
    bridge, mtu, dns = data.get("bridge"), data.get("mtu"), data.get("dns") or ()
    definition = NetworkDefinition(
        str(data.get("name", "")),
        mode,
        cidr,
        gateway,
        first,
        last,
        bridge=str(bridge) if bridge is not None else None,
        dns=tuple(str(server) for server in dns),
        mtu=int(mtu) if isinstance(mtu, int) else None,
    )
    return fingerprints.of_network(definition)


# The fingerprints are pure functions of a row's text, and a fleet repeats the same few networks, pools and
# rules on every host: a bulk listing of 1,000 hosts computed the same ones thousands of times. Their results are
# only read (``Mapping``), so one object may serve every host.
@functools.lru_cache(maxsize=4096)
def _network_fingerprint_text(definition: str) -> Mapping[str, str] | None:
    return _network_fingerprint(json.loads(definition))


@functools.lru_cache(maxsize=4096)
def _pool_fingerprint(kind: str, path: str) -> Mapping[str, str]:
    return fingerprints.of_pool(type=kind, path=path)


@functools.lru_cache(maxsize=4096)
def _volume_fingerprint(fmt: str, capacity: int) -> Mapping[str, str]:
    return fingerprints.of_volume(format=fmt, capacity=capacity)


@functools.lru_cache(maxsize=4096)
def _rules_fingerprint(rules: str) -> Mapping[str, str] | None:
    try:
        return fingerprints.of_security_group(fingerprints.rules_from_payload(json.loads(rules)))
    except (KeyError, TypeError, AttributeError):
        return None
