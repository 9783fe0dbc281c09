"""The ownership of libvirt storage pools, image volumes and network filters, kept in one ledger per stack and
installation on each host, since libvirt's XML for those objects has no ``<metadata>`` (domains and networks
carry theirs in it, ``xmlbuild.base.OwnerElement``).

The storage and network drivers write an entry when they create (or find and keep) an object for an owner, and
remove it when they delete the object; the monitoring driver's ``inventory`` reads every ledger of the host
with one call each and attaches each entry's ownership to its object. The format is docs/ownership.md's.

The carrier is an nwfilter named ``nebctl-owner-STACK-INSTALLATION`` that no NIC references, so libvirt never
instantiates it and it filters no traffic. It holds one ``<filterref filter='nebctl-owner-entry'>`` per entry,
whose ``ENTRY`` parameter is the entry's JSON in hex (libvirt keeps only alphanumeric parameter values, and drops
others without a word). An nwfilter, because defining one replaces it whole (libvirt writes its file
atomically): a writer killed mid-write leaves the old ledger or the new one, never a torn one; it is read in one
call over any URI (a remote host's too); and libvirt offers it on every host that has security groups.

An entry is bound to its object's identity as libvirt gives it: a pool's or filter's UUID (a pool defined again
by someone else has another), a volume's name in its pool of that UUID. An entry whose object is not there
is ignored, and dropped at the ledger's next write; an entry that does not read is ignored with a warning.
One ledger per stack and installation, because its writers are serialised by that installation's writers' lock
(one apply at a time): two installations or stacks never rewrite one ledger. Within a process a lock per
ledger orders the read-modify-write of concurrent actions on one host.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import libvirt

from nebctl.drivers import ownership
from nebctl.drivers.libvirt.failures import error_code
from nebctl.drivers.libvirt.xmlbuild.filters import filter_uuid
from nebctl.drivers.types import Ownership

log = logging.getLogger(__name__)

PREFIX = "nebctl-owner-"
ENTRY_FILTER = "nebctl-owner-entry"  # what each entry "references": nothing is ever defined under that name
ENTRY_PARAMETER = "ENTRY"
FORMAT = "nebctl-ledger/1"
OBJECTS = ("pool", "volume", "filter")
_PLAIN = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class Entry:
    """One object's ownership: ``uuid`` is the pool's or filter's (for a volume, its pool's), ``pool`` a
    volume's pool name; ``details`` what recovery reads of the object (a volume's format, capacity, sha256)."""

    object: str
    name: str
    uuid: str
    owner: Ownership
    pool: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def slot(self) -> tuple[str, str, str]:
        return (self.object, self.pool, self.name)

    def to_json(self) -> str:
        document = {
            "format": FORMAT,
            "object": self.object,
            "name": self.name,
            "uuid": self.uuid,
            "pool": self.pool,
            "owner": ownership.to_document(self.owner),
            "details": dict(self.details),
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Entry:
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} entry")
        if document.get("object") not in OBJECTS:
            raise ValueError(f"unknown object {document.get('object')!r}")
        details = document.get("details") or {}
        if not isinstance(details, dict):
            raise ValueError("details is not an object")
        return cls(
            object=str(document["object"]),
            name=str(document["name"]),
            uuid=str(document["uuid"]),
            owner=ownership.from_document(document["owner"]),
            pool=str(document.get("pool") or ""),
            details=details,
        )


def ledger_name(owner: Ownership) -> str:
    """The ledger of ``owner``'s stack and installation: readable when both names are plain, else a digest."""
    if _PLAIN.match(owner.stack) and _PLAIN.match(owner.installation or "none"):
        return f"{PREFIX}{owner.stack}-{owner.installation or 'none'}"
    digest = hashlib.sha256(f"{owner.stack}\0{owner.installation}".encode()).hexdigest()[:32]
    return f"{PREFIX}{digest}"


def is_ledger(name: str) -> bool:
    return name.startswith(PREFIX) and name != ENTRY_FILTER


def parse(name: str, xml: str) -> list[Entry]:
    """The entries of the ledger ``name`` (its XML); one that does not read is left out, with a warning."""
    entries: list[Entry] = []
    for reference in ET.fromstring(xml).findall("./filterref"):
        if reference.get("filter") != ENTRY_FILTER:
            continue
        for parameter in reference.findall("./parameter"):
            if parameter.get("name") != ENTRY_PARAMETER:
                continue
            try:
                entries.append(Entry.from_json(bytes.fromhex(parameter.get("value", "")).decode()))
            except (ValueError, KeyError, TypeError, UnicodeDecodeError, ownership.OwnershipFormatError) as error:
                log.warning("ownership ledger %s: an entry that does not read is ignored: %s", name, error)
    return entries


def to_xml(name: str, entries: Iterable[Entry]) -> str:
    element = ET.Element("filter", {"name": name, "chain": "root"})
    ET.SubElement(element, "uuid").text = filter_uuid(name)  # libvirt redefines a filter only under its uuid
    for entry in sorted(entries, key=lambda e: e.slot):
        reference = ET.SubElement(element, "filterref", {"filter": ENTRY_FILTER})
        ET.SubElement(reference, "parameter", {"name": ENTRY_PARAMETER, "value": entry.to_json().encode().hex()})
    ET.indent(element, space="  ")
    return ET.tostring(element, encoding="unicode") + "\n"


def read_all(connection: libvirt.virConnect, filters: Sequence[libvirt.virNWFilter] | None = None) -> list[Entry]:
    """Every entry of every ledger on the host: one call per ledger (and one listing, unless ``filters`` is
    the listing already made). A host without nwfilters (libvirt's test driver) has none."""
    if filters is None:
        filters = _list_filters(connection)
    entries: list[Entry] = []
    for handle in filters:
        name = handle.name()
        if not is_ledger(name):
            continue
        try:
            entries += parse(name, handle.XMLDesc(0))
        except libvirt.libvirtError as error:
            if error_code(error) != libvirt.VIR_ERR_NO_NWFILTER:  # removed since the listing
                raise
        except ET.ParseError as error:
            log.warning("ownership ledger %s does not read; ignored: %s", name, error)
    return entries


def record(connection: libvirt.virConnect, uri: str, entry: Entry) -> None:
    """Keep ``entry`` in its owner's ledger, replacing the object's previous entry there."""
    name = ledger_name(entry.owner)
    with _lock(uri, name):
        current = _read_one(connection, name)
        if current is None and not _has_filters(connection):
            return  # no nwfilter on this hypervisor: nowhere to keep it (it has no security groups either)
        kept = {e.slot: e for e in _live(connection, current or [])}
        before = kept.get(entry.slot)
        # An ownership compares without its spec: an entry whose spec alone changed is written too.
        if before == entry and before is not None and before.owner.spec == entry.owner.spec:
            return
        kept[entry.slot] = entry
        _write(connection, name, kept.values())


def restamp(connection: libvirt.virConnect, uri: str, object_: str, name: str, *, pool: str, owner: Ownership) -> bool:
    """Write ``owner`` in the entry its ledger holds for the object (``pool``: a volume's), keeping what the entry
    says of the object itself; False when that ledger holds none."""
    ledger = ledger_name(owner)
    with _lock(uri, ledger):
        entries = _read_one(connection, ledger) or []
        slot = (object_, pool, name)
        if not any(entry.slot == slot for entry in entries):
            return False
        _write(connection, ledger, [replace(e, owner=owner) if e.slot == slot else e for e in entries])
        return True


def forget(connection: libvirt.virConnect, uri: str, object_: str, name: str, pool: str = "") -> None:
    """Remove the entries of an object being deleted (``pool``: a volume's pool; for a pool, its volumes'
    entries go too), from every ledger of the host that holds one: the object is gone, whoever claimed it."""
    for handle in _list_filters(connection):
        ledger = handle.name()
        if not is_ledger(ledger):
            continue
        with _lock(uri, ledger):
            entries = _read_one(connection, ledger)
            if entries is None:
                continue
            remaining = [e for e in entries if not _matches(e, object_, name, pool)]
            if len(remaining) != len(entries):
                _write(connection, ledger, _live(connection, remaining))


def _matches(entry: Entry, object_: str, name: str, pool: str) -> bool:
    if object_ == "pool":
        return (entry.object == "pool" and entry.name == name) or (entry.object == "volume" and entry.pool == name)
    return entry.object == object_ and entry.name == name and entry.pool == pool


def _lock(uri: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((uri, name), threading.Lock())


def _list_filters(connection: libvirt.virConnect) -> list[libvirt.virNWFilter]:
    try:
        return list(connection.listAllNWFilters(0))
    except libvirt.libvirtError as error:
        if error_code(error) == libvirt.VIR_ERR_NO_SUPPORT:
            return []
        raise


def _has_filters(connection: libvirt.virConnect) -> bool:
    try:
        connection.listAllNWFilters(0)
    except libvirt.libvirtError as error:
        if error_code(error) == libvirt.VIR_ERR_NO_SUPPORT:
            return False
        raise
    return True


def _read_one(connection: libvirt.virConnect, name: str) -> list[Entry] | None:
    """The entries of ledger ``name``; None when there is no such ledger (or no nwfilter at all)."""
    try:
        return parse(name, connection.nwfilterLookupByName(name).XMLDesc(0))
    except libvirt.libvirtError as error:
        if error_code(error) in (libvirt.VIR_ERR_NO_NWFILTER, libvirt.VIR_ERR_NO_SUPPORT):
            return None
        raise
    except ET.ParseError as error:
        log.warning("ownership ledger %s does not read; it is written again: %s", name, error)
        return []


def _write(connection: libvirt.virConnect, name: str, entries: Iterable[Entry]) -> None:
    """Define the ledger whole (libvirt replaces it atomically), or remove it when nothing is left in it."""
    entries = list(entries)
    if entries:
        connection.nwfilterDefineXML(to_xml(name, entries))
        return
    try:
        connection.nwfilterLookupByName(name).undefine()
    except libvirt.libvirtError as error:
        if error_code(error) != libvirt.VIR_ERR_NO_NWFILTER:
            raise


def _live(connection: libvirt.virConnect, entries: Iterable[Entry]) -> list[Entry]:
    """The entries whose objects are still there, as they were when the entry was written (one listing of the
    pools, of the filters, and of the volumes of each pool an entry names)."""
    entries = list(entries)
    if not entries:
        return []
    pools = {pool.name(): pool for pool in connection.listAllStoragePools(0)}
    filters = {handle.name(): handle.UUIDString() for handle in _list_filters(connection)}
    volumes: dict[str, set[str] | None] = {}
    kept: list[Entry] = []
    for entry in entries:
        if entry.object == "filter":
            if filters.get(entry.name) == entry.uuid:
                kept.append(entry)
            continue
        pool = pools.get(entry.pool if entry.object == "volume" else entry.name)
        if pool is None or pool.UUIDString() != entry.uuid:
            continue
        if entry.object == "pool":
            kept.append(entry)
            continue
        if entry.pool not in volumes:
            volumes[entry.pool] = {v.name() for v in pool.listAllVolumes(0)} if pool.isActive() else None
        names = volumes[entry.pool]
        if names is None or entry.name in names:  # an inactive pool's volumes cannot be listed: kept
            kept.append(entry)
    return kept


def owners(entries: Iterable[Entry]) -> dict[tuple[str, str, str, str], list[Entry]]:
    """The entries by the object they claim: (object, pool, name, uuid)."""
    claims: dict[tuple[str, str, str, str], list[Entry]] = {}
    for entry in entries:
        claims.setdefault((entry.object, entry.pool, entry.name, entry.uuid), []).append(entry)
    return claims
