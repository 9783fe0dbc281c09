"""Change a simulated host's network, security group, datastore or volume behind nebctl's back.

``nebctl sim change-network`` and its siblings call these, for demos, drills and tests of drift: the next
``diff`` sees the object changed outside nebctl (its fingerprint, ``drivers.fingerprints``, no longer matches
what was applied) and ``apply`` repairs it. Each checks its input before it writes, and writes in one
transaction; an object that is not there is a ``NotFoundError``.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import sqlite3
from collections.abc import Sequence

from nebctl.drivers.errors import NotFoundError, PermanentError
from nebctl.drivers.sim.fleet import SimFleet
from nebctl.drivers.types import SecurityRuleDefinition, to_payload

NETWORK_MODES = ("nat", "isolated", "bridge")


class Unset(enum.Enum):
    """An argument not given (where None means something: an MTU back to the default)."""

    UNSET = "unset"


UNSET = Unset.UNSET
VOLUME_FORMATS = ("qcow2", "raw")


def change_network(
    fleet: SimFleet,
    host: str,
    name: str,
    *,
    mode: str | None = None,
    cidr: str | None = None,
    gateway: str | None = None,
    first: str | None = None,
    last: str | None = None,
    bridge: str | None = None,
    mtu: int | Unset | None = UNSET,
    dns: Sequence[str] | None = None,
) -> None:
    """Give network ``name`` on ``host`` another mode, address block, gateway, DHCP range, host bridge, MTU
    (None: the driver's default) or DNS servers (empty: none)."""
    _check_network(mode=mode, cidr=cidr, gateway=gateway, first=first, last=last)
    if bridge is not None and not 0 < len(bridge) <= 15:
        raise PermanentError(f"bridge {bridge!r}: a bridge name has 1 to 15 characters", driver="sim")
    if isinstance(mtu, int) and not 68 <= mtu <= 65535:
        raise PermanentError(f"mtu {mtu}: expected 68 to 65535", driver="sim")
    for server in dns or ():
        try:
            ipaddress.IPv4Address(server)
        except ValueError as error:
            raise PermanentError(f"dns server {server!r}: {error}", driver="sim") from error
    with fleet.store.write() as connection:
        row = _row(connection, "SELECT definition FROM networks WHERE host = ? AND name = ?", host, name, "network")
        definition = json.loads(row[0])
        if cidr is not None:
            definition["cidr"] = str(ipaddress.IPv4Network(cidr, strict=False))
        for field, value in (("mode", mode), ("gateway", gateway), ("range_first", first), ("range_last", last)):
            if value is not None:
                definition[field] = value
        if bridge is not None:
            definition["bridge"] = bridge
        if not isinstance(mtu, Unset):
            definition["mtu"] = mtu
        if dns is not None:
            definition["dns"] = list(dns)
        connection.execute(
            "UPDATE networks SET definition = ? WHERE host = ? AND name = ?", (json.dumps(definition), host, name)
        )


def _check_network(
    *, mode: str | None, cidr: str | None, gateway: str | None, first: str | None, last: str | None
) -> None:
    """A clear error for a mode or an address that is none."""
    if mode is not None and mode not in NETWORK_MODES:
        raise PermanentError(f"mode {mode!r}: expected one of {', '.join(NETWORK_MODES)}", driver="sim")
    for label, value, parse in (
        ("cidr", cidr, lambda text: ipaddress.IPv4Network(text, strict=False)),
        ("gateway", gateway, ipaddress.IPv4Address),
        ("range first", first, ipaddress.IPv4Address),
        ("range last", last, ipaddress.IPv4Address),
    ):
        if value is not None:
            try:
                parse(value)
            except ValueError as error:
                raise PermanentError(f"{label} {value!r}: {error}", driver="sim") from error


def change_security_group(fleet: SimFleet, host: str, name: str, rules: Sequence[SecurityRuleDefinition]) -> None:
    """Replace the rules of security group filter ``name`` on ``host``."""
    for rule in rules:
        try:
            ipaddress.IPv4Network(rule.cidr, strict=False)
        except ValueError as error:
            raise PermanentError(f"rule cidr {rule.cidr!r}: {error}", driver="sim") from error
    with fleet.store.write() as connection:
        _row(connection, "SELECT 1 FROM security_groups WHERE host = ? AND name = ?", host, name, "security group")
        connection.execute(
            "UPDATE security_groups SET rules = ? WHERE host = ? AND name = ?",
            (json.dumps(to_payload(tuple(rules))), host, name),
        )


def change_datastore(
    fleet: SimFleet,
    host: str,
    name: str,
    *,
    path: str | None = None,
    type: str | None = None,
) -> None:
    """Point datastore (pool) ``name`` on ``host`` at another path, or give it another type."""
    with fleet.store.write() as connection:
        _row(connection, "SELECT 1 FROM datastores WHERE host = ? AND name = ?", host, name, "datastore")
        if path is not None:
            connection.execute("UPDATE datastores SET path = ? WHERE host = ? AND name = ?", (path, host, name))
        if type is not None:
            connection.execute("UPDATE datastores SET type = ? WHERE host = ? AND name = ?", (type, host, name))


def change_volume(
    fleet: SimFleet,
    host: str,
    name: str,
    *,
    format: str | None = None,
    capacity: int | None = None,
) -> None:
    """Put another volume in the place of volume ``name`` on ``host``: another format or virtual size."""
    if format is not None and format not in VOLUME_FORMATS:
        raise PermanentError(f"format {format!r}: expected one of {', '.join(VOLUME_FORMATS)}", driver="sim")
    if capacity is not None and capacity <= 0:
        raise PermanentError(f"size {capacity}: a volume's size is positive", driver="sim")
    with fleet.store.write() as connection:
        _row(connection, "SELECT 1 FROM volumes WHERE host = ? AND name = ?", host, name, "volume")
        if format is not None:
            connection.execute("UPDATE volumes SET format = ? WHERE host = ? AND name = ?", (format, host, name))
        if capacity is not None:
            connection.execute(
                "UPDATE volumes SET capacity = ?, allocation = MIN(allocation, ?) WHERE host = ? AND name = ?",
                (capacity, capacity, host, name),
            )


def _row(connection: sqlite3.Connection, query: str, host: str, name: str, what: str) -> tuple[str, ...]:
    row = connection.execute(query, (host, name)).fetchone()
    if row is None:
        raise NotFoundError(f"no simulated {what} {name!r} on host {host!r}", driver="sim")
    return tuple(row)
