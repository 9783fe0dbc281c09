"""The sim network driver: networks per host, NIC address leases, security groups bound to NICs.

Registered by ``nebctl.drivers.registry``. ``pre`` leases the NIC's address (its static ``ip``, or a free one
of the network's range) and records its security groups; ``post`` marks the filters bound; ``clean`` releases
both. A network or a group still in use cannot be deleted (``ConflictError``), as libvirt refuses it too.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import sqlite3
from collections.abc import Mapping
from typing import ClassVar

from nebctl.core.families import Family
from nebctl.drivers.errors import ConflictError, NotFoundError, PermanentError
from nebctl.drivers.sim.compute import SimDriver
from nebctl.drivers.sim.fleet import edge, owner_from, owner_json
from nebctl.drivers.types import (
    HostRef,
    NetworkDefinition,
    NetworkStatus,
    NicDefinition,
    SecurityGroupDefinition,
    to_payload,
)


class SimNetwork(SimDriver):
    family: ClassVar[Family] = Family.NETWORK
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"create", "delete", "pre", "post", "clean", "security-groups", "monitor", "nat", "isolated", "bridge"}
    )

    def _network(self, connection: sqlite3.Connection, host: str, network: str) -> NetworkDefinition:
        row = connection.execute(
            "SELECT definition FROM networks WHERE host = ? AND name = ?", (host, network)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no network {network} on host {host}", driver="sim")
        data = json.loads(row[0])
        data["dns"] = tuple(data.get("dns") or ())
        data["owner"] = None
        return NetworkDefinition(**data)

    @edge
    def create(self, host: HostRef, network: NetworkDefinition) -> NetworkStatus:
        name, _ = self.fleet.enter("network.create", host)
        try:
            cidr = ipaddress.ip_network(network.cidr, strict=False)
            first, last = ipaddress.ip_address(network.range_first), ipaddress.ip_address(network.range_last)
        except ValueError as error:
            raise PermanentError(f"network {network.name}: {error}", driver="sim") from error
        if first not in cidr or last not in cidr or int(first) > int(last):
            raise PermanentError(f"network {network.name}: range {first}-{last} is not inside {cidr}", driver="sim")
        definition = to_payload(network)
        definition.pop("owner")
        with self.fleet.write() as connection:
            connection.execute(
                "INSERT INTO networks VALUES (?, ?, ?, ?) ON CONFLICT (host, name) DO UPDATE SET "
                "definition = excluded.definition, owner = excluded.owner",
                (name, network.name, json.dumps(definition), owner_json(network.owner)),
            )
        return NetworkStatus(
            name=network.name, active=True, bridge=network.bridge or f"virbr-{network.name}"[:15], owner=network.owner
        )

    @edge
    def delete(self, host: HostRef, name: str) -> None:
        host_name, _ = self.fleet.enter("network.delete", host)
        with self.fleet.write() as connection:
            self._network(connection, host_name, name)
            count = connection.execute(
                "SELECT COUNT(*) FROM leases WHERE host = ? AND network = ?", (host_name, name)
            ).fetchone()[0]
            if count:
                raise ConflictError(f"network {name} on host {host_name} still has {count} NICs", driver="sim")
            connection.execute("DELETE FROM networks WHERE host = ? AND name = ?", (host_name, name))

    def _pick_address(self, connection: sqlite3.Connection, host: str, network: NetworkDefinition, mac: str) -> str:
        first = int(ipaddress.ip_address(network.range_first))
        last = int(ipaddress.ip_address(network.range_last))
        size = last - first + 1
        # Start at a place derived from the MAC so a thousand NICs do not all probe from the range's start.
        start = int.from_bytes(hashlib.blake2b(mac.encode(), digest_size=4).digest(), "big") % size
        taken = "SELECT 1 FROM leases WHERE host = ? AND network = ? AND ip = ?"
        for offset in range(size):
            candidate = str(ipaddress.ip_address(first + (start + offset) % size))
            if candidate == network.gateway:
                continue
            if connection.execute(taken, (host, network.name, candidate)).fetchone() is None:
                return candidate
        raise PermanentError(f"network {network.name} has no free address left", driver="sim")

    @edge
    def pre(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        name, _ = self.fleet.enter("network.pre", host)
        with self.fleet.write() as connection:
            network = self._network(connection, name, nic.network)
            for group in nic.security_groups:
                known = connection.execute(
                    "SELECT 1 FROM security_groups WHERE host = ? AND name = ?", (name, group)
                ).fetchone()
                if known is None:
                    raise NotFoundError(f"no security group {group} on host {name}", driver="sim")
            lease = connection.execute(
                "SELECT ip, vm_uuid FROM leases WHERE host = ? AND network = ? AND mac = ?",
                (name, nic.network, nic.mac),
            ).fetchone()
            if lease is not None and lease[1] != vm_uuid:
                raise ConflictError(f"MAC {nic.mac} on {nic.network} belongs to VM {lease[1]}", driver="sim")
            if nic.ip is not None:
                try:
                    inside = ipaddress.ip_address(nic.ip) in ipaddress.ip_network(network.cidr, strict=False)
                except ValueError as error:
                    raise PermanentError(f"NIC address {nic.ip!r}: {error}", driver="sim") from error
                if not inside:
                    raise PermanentError(
                        f"address {nic.ip} is outside network {nic.network} ({network.cidr})", driver="sim"
                    )
                holder = connection.execute(
                    "SELECT mac FROM leases WHERE host = ? AND network = ? AND ip = ? AND mac <> ?",
                    (name, nic.network, nic.ip, nic.mac),
                ).fetchone()
                if holder is not None:
                    raise ConflictError(f"address {nic.ip} on {nic.network} is leased to {holder[0]}", driver="sim")
                ip = nic.ip
            else:
                ip = lease[0] if lease is not None else self._pick_address(connection, name, network, nic.mac)
            connection.execute(
                "INSERT INTO leases (host, network, mac, ip, vm_uuid, groups) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (host, network, mac) DO UPDATE SET ip = excluded.ip, groups = excluded.groups",
                (name, nic.network, nic.mac, ip, vm_uuid, json.dumps(list(nic.security_groups))),
            )

    @edge
    def post(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        name, _ = self.fleet.enter("network.post", host)
        with self.fleet.write() as connection:
            self._network(connection, name, nic.network)
            cursor = connection.execute(
                "UPDATE leases SET bound = 1 WHERE host = ? AND network = ? AND mac = ? AND vm_uuid = ?",
                (name, nic.network, nic.mac, vm_uuid),
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"NIC {nic.mac} of VM {vm_uuid} was not prepared on {nic.network}", driver="sim")

    @edge
    def clean(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        name, _ = self.fleet.enter("network.clean", host)
        with self.fleet.write() as connection:
            self._network(connection, name, nic.network)
            connection.execute(
                "DELETE FROM leases WHERE host = ? AND network = ? AND mac = ? AND vm_uuid = ?",
                (name, nic.network, nic.mac, vm_uuid),
            )

    @edge
    def update_sg(self, host: HostRef, group: SecurityGroupDefinition) -> None:
        name, _ = self.fleet.enter("network.update_sg", host)
        with self.fleet.write() as connection:
            connection.execute(
                "INSERT INTO security_groups VALUES (?, ?, ?, ?) ON CONFLICT (host, name) DO UPDATE SET "
                "rules = excluded.rules, owner = excluded.owner",
                (name, group.name, json.dumps(to_payload(group.rules)), owner_json(group.owner)),
            )

    @edge
    def delete_sg(self, host: HostRef, name: str) -> None:
        host_name, _ = self.fleet.enter("network.delete_sg", host)
        with self.fleet.write() as connection:
            if (
                connection.execute(
                    "SELECT 1 FROM security_groups WHERE host = ? AND name = ?", (host_name, name)
                ).fetchone()
                is None
            ):
                raise NotFoundError(f"no security group {name} on host {host_name}", driver="sim")
            in_use = connection.execute(
                "SELECT mac FROM leases WHERE host = ? AND groups LIKE ? LIMIT 1", (host_name, f'%"{name}"%')
            ).fetchone()
            if in_use is not None:
                raise ConflictError(f"security group {name} is bound to NIC {in_use[0]}", driver="sim")
            connection.execute("DELETE FROM security_groups WHERE host = ? AND name = ?", (host_name, name))

    @edge
    def monitor(self, host: HostRef) -> Mapping[str, NetworkStatus]:
        name, _ = self.fleet.enter("network.monitor", host)
        connection = self.fleet.store.read()
        leases: dict[str, dict[str, str]] = {}
        for network, mac, ip in connection.execute("SELECT network, mac, ip FROM leases WHERE host = ?", (name,)):
            leases.setdefault(network, {})[mac] = ip
        result: dict[str, NetworkStatus] = {}
        for network_name, definition, owner in connection.execute(
            "SELECT name, definition, owner FROM networks WHERE host = ?", (name,)
        ):
            bridge = json.loads(definition).get("bridge") or f"virbr-{network_name}"[:15]
            result[network_name] = NetworkStatus(
                name=network_name,
                active=True,
                bridge=bridge,
                leases=leases.get(network_name, {}),
                owner=owner_from(owner),
            )
        return result
