"""Plain values passed between the controller and the drivers: what to realise, and what was observed.

Everything here is a frozen dataclass of JSON-friendly fields, so a value can cross into an external program
(the ``exec`` driver serialises it with ``to_payload``), be journalled, and be compared in tests. The
controller builds the inputs from validated manifests; drivers return the outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nebctl.drivers.states import HostLiveState, VMLiveState


@dataclass(frozen=True)
class HostRef:
    """Which hypervisor an action is for: the Host resource's name and URI, and the hypervisor its VMs use
    (``domain_type``: auto, kvm or qemu, from the Host's ``virtualization.domainType``)."""

    name: str
    uri: str
    domain_type: str = "auto"


@dataclass(frozen=True)
class Ownership:
    """Who owns a live object; written on the object itself (libvirt ``<metadata>``, a sim row, the payload of
    an exec program) so records can be rebuilt (``drivers.ownership`` is the versioned format, docs/ownership.md).

    ``installation`` names the nebctl database that made the object: two installations sharing hosts never
    take each other's objects. ``spec`` is the spec applied with it, its secrets replaced by their keyed digest
    (``database.sealing``): enough to rebuild the record, never a secret. Both are empty on objects made before
    they were written (format 0) and on the bare ownership an action that only needs the owner passes."""

    stack: str
    kind: str
    namespace: str
    name: str
    incarnation: int = 0
    installation: str = ""
    spec: Mapping[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class OwnedObject:
    """A live object other than a VM, with its ownership (a monitoring driver's ``inventory``, listed
    per host in one call): ``kind`` is the owning resource's kind (a VM's disk volume is its VM's),
    ``object`` what it is (``network``, ``pool``, ``volume``, ``filter``), ``name`` its live name and
    ``details`` what recovery and drift read of it (a volume's ``format``, ``capacity`` and ``sha256``, a
    pool's ``capacity``, a network's ``bridge``). ``fingerprint`` is what drift compares with the applied spec
    (``drivers.fingerprints``: a network's address plan, a filter's rules); None where the driver cannot read it
    in its bulk listing, and then only the object's presence is judged."""

    object: str
    name: str
    owner: Ownership | None  # None: an object whose backend cannot carry one (listed for drift only)
    details: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: Mapping[str, str] | None = None


# --- storage ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatastoreDefinition:
    name: str  # live pool name, deterministic
    path: str
    type: str = "dir"
    owner: Ownership | None = None


@dataclass(frozen=True)
class ImageImport:
    """An image to bring into a datastore. ``source`` is a local path or an http(s)/file URL."""

    volume: str  # live volume name, deterministic
    source: str
    sha256: str | None = None
    format: str | None = None  # qcow2 | raw; detected when None
    owner: Ownership | None = None


@dataclass(frozen=True)
class VolumeDefinition:
    """A VM disk: a clone of ``backing`` (an image volume name) or, when ``backing`` is None, a blank disk."""

    volume: str
    size: int | None  # bytes; None keeps the image's size
    backing: str | None = None
    clone: str = "overlay"  # overlay (qcow2 backing file) | full (independent copy)
    format: str = "qcow2"
    owner: Ownership | None = None


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    path: str
    capacity: int  # virtual size in bytes
    allocation: int  # bytes used on disk
    format: str
    backing: str | None = None
    sha256: str | None = None
    owner: Ownership | None = None


@dataclass(frozen=True)
class DatastoreStatus:
    name: str
    total: int
    used: int
    free: int
    volumes: Mapping[str, VolumeInfo] = field(default_factory=dict)


# --- network ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkDefinition:
    name: str  # live network name, deterministic
    mode: str  # nat | isolated | bridge
    cidr: str
    gateway: str
    range_first: str
    range_last: str
    bridge: str | None = None
    dns: tuple[str, ...] = ()
    mtu: int | None = None
    owner: Ownership | None = None


@dataclass(frozen=True)
class SecurityRuleDefinition:
    direction: str  # in | out
    protocol: str  # tcp | udp | icmp | any
    ports: tuple[str, ...] = ()
    cidr: str = "0.0.0.0/0"


@dataclass(frozen=True)
class SecurityGroupDefinition:
    name: str  # live filter name, deterministic
    rules: tuple[SecurityRuleDefinition, ...] = ()
    owner: Ownership | None = None


@dataclass(frozen=True)
class NicDefinition:
    network: str  # live network name
    mac: str
    ip: str | None = None
    security_groups: tuple[str, ...] = ()  # live filter names


@dataclass(frozen=True)
class NetworkStatus:
    name: str
    active: bool
    bridge: str | None = None
    leases: Mapping[str, str] = field(default_factory=dict)  # mac -> ip
    owner: Ownership | None = None


# --- virtualization ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskAttachment:
    volume: str  # live volume name in the datastore
    datastore: str  # live pool name
    format: str = "qcow2"


@dataclass(frozen=True)
class CloudInitData:
    """Secrets inside: never log a value of this type. ``repr`` hides them."""

    user_data: str | None = field(default=None, repr=False)
    meta_data: str | None = field(default=None, repr=False)
    network_config: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class BootDefinition:
    """Direct kernel boot: paths of files on the host, and the kernel's command line."""

    kernel: str
    initrd: str | None = None
    cmdline: str | None = None


@dataclass(frozen=True)
class VMDefinition:
    """Everything a virtualization driver needs to define a VM. ``uuid`` is deterministic (see ``identity``)."""

    name: str  # live domain name, deterministic
    uuid: str
    vcpu: int
    memory: int  # bytes
    disks: tuple[DiskAttachment, ...] = ()
    nics: tuple[NicDefinition, ...] = ()
    cloud_init: CloudInitData | None = None
    owner: Ownership | None = None
    boot: BootDefinition | None = None
    # For cloud hosts: the machine image (an AMI) and the instance type placement chose; hypervisors ignore both.
    image: str | None = None
    instance_type: str | None = None


@dataclass(frozen=True)
class VMStatus:
    """One VM as a probe or a poll sees it."""

    uuid: str
    name: str
    state: VMLiveState
    vcpu: int = 0
    memory: int = 0  # bytes configured
    cpu_usage: float = 0.0  # share of one CPU, 0..vcpu
    memory_used: int = 0
    disk_read: int = 0
    disk_write: int = 0
    net_rx: int = 0
    net_tx: int = 0
    owner: Ownership | None = None
    # The MAC of each of its NICs, in the order of its definition: what ``nebctl import`` records of a VM
    # nebctl did not create, so its NICs keep their addresses. None: the driver cannot tell.
    macs: tuple[str, ...] | None = None


@dataclass(frozen=True)
class HostProbe:
    """A host's capacity and usage. ``custom`` holds the KEY=VALUE pairs of probe programs."""

    name: str
    state: HostLiveState
    cpus: int = 0
    memory: int = 0  # bytes
    free_memory: int = 0
    cpu_usage: float = 0.0  # share of the host's CPUs in use, 0..1
    load: float = 0.0
    disk_total: int = 0
    disk_free: int = 0
    custom: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None


# --- authorization, marketplace, hooks ----------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthorizationRequest:
    identity: Identity
    action: str  # get | diff | apply | delete
    kind: str
    namespace: str
    name: str | None = None


@dataclass(frozen=True)
class MarketplaceRef:
    name: str
    url: str | None = None
    path: str | None = None
    refresh: float = 3600.0  # seconds a downloaded index is used before it is read again


@dataclass(frozen=True)
class Appliance:
    """One version of a catalogue's appliance. ``problem`` says why it cannot be imported (it has no sha256,
    for one); such appliances are listed but refused by ``import_``."""

    name: str
    source: str  # URL or path of the image file
    sha256: str | None
    format: str | None = None
    size: int | None = None  # bytes of the file, when the catalogue says
    description: str = ""
    version: str = ""
    os: str = ""
    problem: str | None = None


@dataclass(frozen=True)
class HookProgram:
    name: str
    command: tuple[str, ...]
    timeout: float = 30.0
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # values may be secrets


@dataclass(frozen=True)
class HookResult:
    exit_code: int | None  # None when killed by the timeout
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False


def to_payload(value: Any) -> Any:
    """Convert dataclasses, enums, mappings and tuples to plain JSON data (for external programs, the journal)."""
    kind = type(value)
    if kind in _PLAIN:
        # The common leaves, by exact type: a ``str`` enum is a ``str`` too, but not of this type.
        return value
    names = _field_names(kind)
    if names is not None:
        return {name: to_payload(getattr(value, name)) for name in names}
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_payload(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_payload(v) for v in value]
    return value


_PLAIN = frozenset({str, int, float, bool, type(None)})


# The field names of each type ``to_payload`` met, None for a type that is not a dataclass.
_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(kind: type) -> tuple[str, ...] | None:
    """The field names of a dataclass type, None for any other type. A VM's definition is some fifty values
    deep; asking ``dataclasses`` for the fields of each was most of the conversion's time."""
    if kind not in _FIELD_NAMES:
        is_dataclass = dataclasses.is_dataclass(kind)
        _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(kind)) if is_dataclass else None
    return _FIELD_NAMES[kind]
