"""The simulated fleet: hosts named by ``sim://NAME`` URIs and everything on them, in one SQLite file.

``SimFleet`` is shared by the seven sim drivers (``sim.compute``, ``sim.storage``, ``sim.networking``,
``sim.services``), which call ``enter`` at the start of every action: it makes sure the host exists (created on
first sight with the capacity of its URI's query, ``sim://kvm1?cpus=16&memory=64Gi&disk=1Ti``), refuses calls
to a host that is down, and applies the injected latency and faults. The rest of this class is the drift API
that tests and ``nebctl sim ...`` use to change the fleet behind the controller's back and to configure faults.

Open it with ``open_fleet(settings)`` (the file is ``settings.drivers["sim"]["state_file"]``, else
``settings.state_dir/"sim.db"``) or ``SimFleet(path, clock=..., seed=...)``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlsplit

from nebctl.core.quantities import QuantityError, parse_quantity
from nebctl.core.settings import Settings
from nebctl.drivers import ownership
from nebctl.drivers.errors import ConflictError, NotFoundError, PermanentError, TemporaryError
from nebctl.drivers.sim.behaviour import HOST_AND_MATCHING, Fault, Latency, patterns, suffer
from nebctl.drivers.sim.store import Store
from nebctl.drivers.sim.usage import vm_usage
from nebctl.drivers.states import VMLiveState
from nebctl.drivers.types import Appliance, HostRef, Ownership, VMStatus

DEFAULT_CPUS = 16
DEFAULT_MEMORY = 64 * 1024**3
DEFAULT_DISK = 1024**4

P = ParamSpec("P")
R = TypeVar("R")


def edge(function: Callable[P, R]) -> Callable[P, R]:
    """Convert SQLite errors escaping a driver method into the typed driver errors."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except sqlite3.Error as error:
            fleet = getattr(args[0], "fleet", None) if args else None
            if isinstance(fleet, SimFleet):
                raise fleet.store.translate(error) from error
            raise PermanentError(f"sim: {error}", driver="sim") from error

    return wrapper


@dataclass(frozen=True)
class HostShape:
    """A fleet host as its URI describes it."""

    name: str
    uri: str
    cpus: int = DEFAULT_CPUS
    memory: int = DEFAULT_MEMORY
    disk: int = DEFAULT_DISK


@functools.lru_cache(maxsize=4096)
def fleet_host(name: str, uri: str) -> str:
    """The name of the fleet host a HostRef stands for: ``sim://NAME`` names it, else the Host's name."""
    parts = urlsplit(uri)
    return parts.netloc if parts.scheme == "sim" and parts.netloc else name


@functools.lru_cache(maxsize=4096)
def host_shape(name: str, uri: str) -> HostShape:
    """The fleet host a HostRef stands for (``fleet_host``); the URI's query sizes it."""
    parts = urlsplit(uri)
    fleet_name = fleet_host(name, uri)
    query = dict(parse_qsl(parts.query))
    try:
        return HostShape(
            name=fleet_name,
            uri=uri,
            cpus=int(query.get("cpus", DEFAULT_CPUS)),
            memory=parse_quantity(query.get("memory", DEFAULT_MEMORY)),
            disk=parse_quantity(query.get("disk", DEFAULT_DISK)),
        )
    except (ValueError, QuantityError) as error:
        raise PermanentError(f"sim host URI {uri!r}: {error}", driver="sim") from error


def owner_json(owner: Ownership | None) -> str | None:
    """The ownership document a row keeps (``drivers.ownership``, versioned)."""
    return ownership.dumps(owner)


def owner_from(text: str | None) -> Ownership | None:
    return ownership.loads(text)


# The table of each kind of object ``SimFleet.delete_object`` removes.
_OBJECT_TABLES = {"network": "networks", "datastore": "datastores", "volume": "volumes", "sg": "security_groups"}

# The VM columns every status is built from, in this order.
VM_COLUMNS = "uuid, name, state, vcpu, memory, owner, started, macs"


class SimFleet:
    """One fleet file, opened by one process; safe for many threads (see ``sim.store``)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time, seed: int = 0) -> None:
        self.path = path
        self.clock = clock
        self.store = Store(path)
        connection = self.store.read()
        connection.execute("INSERT OR IGNORE INTO meta VALUES ('seed', ?)", (str(seed),))
        # The file's seed wins, so every process that opens the fleet computes the same usage figures.
        self.seed = int(connection.execute("SELECT value FROM meta WHERE key = 'seed'").fetchone()[0])
        self.rng = random.Random(self.seed)
        self._known_hosts: set[str] = set()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> SimFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the path of every driver call -------------------------------------------------------------------

    def enter(self, action: str, host: HostRef, *, allow_down: bool = False) -> tuple[str, bool]:
        """Start an action on ``host``: create it on first sight, refuse it when down (unless ``allow_down``),
        apply latency and faults. Returns the fleet's host name and whether it is down."""
        since = time.monotonic()
        shape = host_shape(host.name, host.uri)
        connection = self.store.read()
        rows = connection.execute(HOST_AND_MATCHING, (*patterns(action), shape.name)).fetchall()
        if not rows:
            self.add_host(shape.name, uri=shape.uri, cpus=shape.cpus, memory=shape.memory, disk=shape.disk)
            suffer(connection, self.rng, action=action, host=shape.name, since=since)
            return shape.name, False
        down, reason = rows[0][:2]
        if down and not allow_down:
            raise TemporaryError(f"host {shape.name} does not answer: {reason or 'down'}", driver="sim")
        rules = [row[2:] for row in rows if row[2] is not None]  # a host with no rule has one row of NULLs
        suffer(connection, self.rng, action=action, host=shape.name, rows=rules, since=since)
        return shape.name, bool(down)

    def enter_service(self, action: str) -> None:
        """Start an action that is not about a host (authorization, marketplace, hooks): latency and faults."""
        suffer(self.store.read(), self.rng, action=action, host="")

    def status(
        self,
        row: tuple[Any, ...],
        now: float,
        owners: tuple[Mapping[bytes, Ownership | None], dict[bytes, Ownership | None]] | None = None,
    ) -> VMStatus:
        """The status of a VM row (``VM_COLUMNS``). With ``owners`` (the ownerships parsed before, by the
        SHA-256 of their text; and where to put those of this row), a document already parsed is not parsed
        again. The digest, not the text, is kept: a thousand bytes less per VM held between probes."""
        uuid, name, state, vcpu, memory, owner, started, macs = row
        if owners is None or not owner:
            parsed = owner_from(owner)
        else:
            known, seen = owners
            digest = hashlib.sha256(owner.encode()).digest()
            parsed = known[digest] if digest in known else owner_from(owner)
            seen[digest] = parsed
        usage = vm_usage(seed=self.seed, uuid=uuid, state=state, vcpu=vcpu, memory=memory, started=started, now=now)
        return VMStatus(
            uuid=uuid,
            name=name,
            state=VMLiveState(state),
            vcpu=vcpu,
            memory=memory,
            cpu_usage=usage.cpu,
            memory_used=usage.memory_used,
            disk_read=usage.disk_read,
            disk_write=usage.disk_write,
            net_rx=usage.net_rx,
            net_tx=usage.net_tx,
            owner=parsed,
            macs=tuple(macs.split(",")) if macs else (),
        )

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self.store.write() as connection:
            yield connection

    # --- drift and set-up API (tests, ``nebctl sim``) ----------------------------------------------------

    def add_host(
        self,
        name: str,
        *,
        uri: str | None = None,
        cpus: int = DEFAULT_CPUS,
        memory: int = DEFAULT_MEMORY,
        disk: int = DEFAULT_DISK,
    ) -> None:
        """Create a host (a no-op when it exists: its capacity comes from its first sighting)."""
        with self.store.write() as connection:
            connection.execute(
                "INSERT OR IGNORE INTO hosts (name, uri, cpus, memory, disk) VALUES (?, ?, ?, ?, ?)",
                (name, uri or f"sim://{name}", cpus, memory, disk),
            )

    def _find_vm(self, connection: sqlite3.Connection, vm: str, host: str | None) -> tuple[str, str, str]:
        query = "SELECT uuid, host, state FROM vms WHERE (uuid = ? OR name = ?)"
        params: tuple[str, ...] = (vm, vm)
        if host is not None:
            query += " AND host = ?"
            params = (*params, host)
        rows = connection.execute(query, params).fetchall()
        if not rows:
            raise NotFoundError(f"no simulated VM {vm!r}" + (f" on host {host}" if host else ""), driver="sim")
        if len(rows) > 1:
            hosts = ", ".join(sorted(r[1] for r in rows))
            raise ConflictError(f"VM name {vm!r} is on several hosts ({hosts}); name the host", driver="sim")
        uuid, on_host, state = rows[0]
        return uuid, on_host, state

    def stop_vm(self, vm: str, *, host: str | None = None) -> None:
        """Stop a VM (by name or uuid) as if someone powered it off."""
        with self.store.write() as connection:
            uuid, _, _ = self._find_vm(connection, vm, host)
            connection.execute("UPDATE vms SET state = ?, started = NULL WHERE uuid = ?", (VMLiveState.STOPPED, uuid))

    def set_vm_state(self, vm: str, state: VMLiveState, *, host: str | None = None) -> None:
        """Put a VM in any state (crashed, suspended...) behind the controller's back."""
        with self.store.write() as connection:
            uuid, _, _ = self._find_vm(connection, vm, host)
            started = self.clock() if state is VMLiveState.RUNNING else None
            connection.execute("UPDATE vms SET state = ?, started = ? WHERE uuid = ?", (state.value, started, uuid))

    def delete_vm(self, vm: str, *, host: str | None = None) -> None:
        """Remove a VM outright, as if someone undefined it by hand."""
        with self.store.write() as connection:
            uuid, _, _ = self._find_vm(connection, vm, host)
            connection.execute("DELETE FROM vms WHERE uuid = ?", (uuid,))

    def set_memory(self, vm: str, memory: int, *, host: str | None = None) -> None:
        """Change a VM's configured memory (bytes)."""
        with self.store.write() as connection:
            uuid, _, _ = self._find_vm(connection, vm, host)
            connection.execute("UPDATE vms SET memory = ? WHERE uuid = ?", (memory, uuid))

    def delete_object(self, what: str, host: str, name: str) -> None:
        """Remove a network, datastore, volume or security group from a host, as if someone deleted it by hand
        (``nebctl sim delete-network`` and the like): drift that the next diff shows and apply repairs."""
        table = _OBJECT_TABLES[what]
        with self.store.write() as connection:
            cursor = connection.execute(f"DELETE FROM {table} WHERE host = ? AND name = ?", (host, name))
            if cursor.rowcount == 0:
                raise NotFoundError(f"no simulated {what} {name!r} on host {host!r}", driver="sim")
            if what == "network":
                connection.execute("DELETE FROM leases WHERE host = ? AND network = ?", (host, name))

    def host_down(self, host: str, *, reason: str = "taken down") -> None:
        """The host stops answering: probes report it in error, every other call fails as temporary."""
        self._set_down(host, True, reason)

    def host_up(self, host: str) -> None:
        self._set_down(host, False, None)

    def _set_down(self, host: str, down: bool, reason: str | None) -> None:
        with self.store.write() as connection:
            cursor = connection.execute("UPDATE hosts SET down = ?, reason = ? WHERE name = ?", (down, reason, host))
            if cursor.rowcount == 0:
                raise NotFoundError(f"no simulated host {host!r}", driver="sim")

    def misbehaves(self) -> bool:
        """Whether some fault or latency is set: the fleet's answers then vary from call to call, so no word vouches
        for them and no call answers for many hosts at once (each call must suffer what was set for it)."""
        return self.store.read().execute("SELECT 1 FROM behaviours LIMIT 1").fetchone() is not None

    def set_fault(self, fault: Fault) -> int:
        """Add a fault rule; returns its id."""
        if fault.probability is not None and not 0 <= fault.probability <= 1:
            raise PermanentError("a fault's probability is between 0 and 1", driver="sim")
        if fault.count is not None and fault.count < 1:
            raise PermanentError("a fault's count is at least 1", driver="sim")
        with self.store.write() as connection:
            cursor = connection.execute(
                "INSERT INTO behaviours (action, host, kind, probability, remaining, duration, message) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    fault.action,
                    fault.host,
                    fault.kind.value,
                    fault.probability,
                    fault.count,
                    fault.duration,
                    fault.message,
                ),
            )
            return int(cursor.lastrowid or 0)

    def clear_faults(self, action: str | None = None) -> int:
        """Remove the fault rules (of one action pattern, or all); returns how many."""
        return self._clear("kind <> 'latency'", action)

    def set_latency(self, latency: Latency) -> None:
        """Set the latency of an action pattern (replacing the previous one for that pattern and host)."""
        if latency.a < 0 or latency.b < 0:
            raise PermanentError("latency parameters are not negative", driver="sim")
        with self.store.write() as connection:
            connection.execute(
                "DELETE FROM behaviours WHERE kind = 'latency' AND action = ? AND host IS ?",
                (latency.action, latency.host),
            )
            connection.execute(
                "INSERT INTO behaviours (action, host, kind, distribution, a, b) VALUES (?, ?, 'latency', ?, ?, ?)",
                (latency.action, latency.host, latency.distribution.value, latency.a, latency.b),
            )

    def clear_latency(self, action: str | None = None) -> int:
        return self._clear("kind = 'latency'", action)

    def _clear(self, condition: str, action: str | None) -> int:
        with self.store.write() as connection:
            if action is None:
                return connection.execute(f"DELETE FROM behaviours WHERE {condition}").rowcount
            return connection.execute(f"DELETE FROM behaviours WHERE {condition} AND action = ?", (action,)).rowcount

    def add_user(self, user: str, secret: str, groups: tuple[str, ...] = ()) -> None:
        """A user of the sim authorization driver."""
        with self.store.write() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO users VALUES (?, ?, ?)", (user, secret, json.dumps(list(groups)))
            )

    def deny(self, subject: str, action: str) -> None:
        """Make the sim authorization driver refuse ``action`` (or ``*``) to a user or group."""
        with self.store.write() as connection:
            connection.execute("INSERT OR IGNORE INTO denials VALUES (?, ?)", (subject, action))

    def add_appliance(self, marketplace: str, appliance: Appliance) -> None:
        """An entry of the sim marketplace catalogue ``marketplace``."""
        with self.store.write() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO appliances VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    marketplace,
                    appliance.name,
                    appliance.source,
                    appliance.sha256,
                    appliance.format,
                    appliance.size,
                    appliance.description,
                ),
            )

    def show(self) -> dict[str, Any]:
        """The whole fleet as plain data (``nebctl sim show``): hosts with their VMs, storage, networks, rules."""
        connection = self.store.read()
        now = self.clock()
        hosts: dict[str, Any] = {}
        for name, uri, cpus, memory, disk, down, reason in connection.execute(
            "SELECT name, uri, cpus, memory, disk, down, reason FROM hosts ORDER BY name"
        ):
            hosts[name] = {
                "uri": uri,
                "cpus": cpus,
                "memory": memory,
                "disk": disk,
                "down": bool(down),
                "reason": reason,
                "vms": [],
                "volumes": [],
                "networks": [],
            }
        for row in connection.execute(f"SELECT host, {VM_COLUMNS} FROM vms ORDER BY host, name"):
            status = self.status(row[1:], now)
            if row[0] in hosts:
                hosts[row[0]]["vms"].append(
                    {
                        "name": status.name,
                        "uuid": status.uuid,
                        "state": status.state.value,
                        "vcpu": status.vcpu,
                        "memory": status.memory,
                        "cpu_usage": status.cpu_usage,
                    }
                )
        for host, datastore, name, capacity, allocation, backing in connection.execute(
            "SELECT host, datastore, name, capacity, allocation, backing FROM volumes ORDER BY host, datastore, name"
        ):
            if host in hosts:
                hosts[host]["volumes"].append(
                    {
                        "datastore": datastore,
                        "name": name,
                        "capacity": capacity,
                        "allocation": allocation,
                        "backing": backing,
                    }
                )
        for host, name in connection.execute("SELECT host, name FROM networks ORDER BY host, name"):
            if host in hosts:
                hosts[host]["networks"].append(name)
        rules = [
            {
                key: value
                for key, value in zip(
                    ("id", "action", "host", "kind", "probability", "count", "duration", "distribution", "a", "b"),
                    row,
                    strict=True,
                )
                if value is not None
            }
            for row in connection.execute(
                "SELECT id, action, host, kind, probability, remaining, duration, distribution, a, b "
                "FROM behaviours ORDER BY id"
            )
        ]
        return {"file": str(self.path), "seed": self.seed, "hosts": hosts, "behaviours": rules}


def fleet_path(settings: Settings, options: Mapping[str, Any] | None = None) -> Path:
    """Where the fleet file of these settings is."""
    options = settings.drivers.get("sim", {}) if options is None else options
    if options.get("state_file"):
        return Path(str(options["state_file"])).expanduser()
    if settings.state_dir is None:
        raise PermanentError(
            "the sim driver needs a state file: set state_dir or drivers.sim.state_file in the configuration",
            driver="sim",
        )
    return settings.state_dir / "sim.db"


def open_fleet(
    settings: Settings, *, options: Mapping[str, Any] | None = None, clock: Callable[[], float] = time.time
) -> SimFleet:
    """Open (creating if needed) the fleet of these settings."""
    options = settings.drivers.get("sim", {}) if options is None else options
    return SimFleet(fleet_path(settings, options), clock=clock, seed=int(options.get("seed", 0)))
