"""Pydantic models of every manifest kind (docs/manifests.md).

These models check what one document can check on its own: unknown fields, types, quantities, names, enums,
addresses, and the syntax of placement expressions. Checks across documents (references, duplicates, cycles,
a VM's static IP inside its network's range) belong to ``schemas.validation``. The field descriptions feed
the generated JSON Schemas (``nebctl schema``), so they are written for users.

Secrets (cloud-init data, hook environment values) are ``SecretStr``: they print as ``**********`` and are
serialised in clear only when the serialisation context asks for it (``{"reveal_secrets": True}``), which
only the database layer and the drivers do.
"""

from __future__ import annotations

import ipaddress
import weakref
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    SerializationInfo,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from nebctl.core.keys import DEFAULT_NAMESPACE, NAME_MAX_LENGTH, NAME_PATTERN, Kind
from nebctl.core.quantities import parse_duration, parse_quantity
from nebctl.schemas import expressions
from nebctl.schemas.instance_types import KNOWN as KNOWN_INSTANCE_TYPES

API_VERSION = "nebctl/v1"


def _reveal_secret(value: SecretStr, info: SerializationInfo) -> str:
    if isinstance(info.context, dict) and info.context.get("reveal_secrets"):
        return value.get_secret_value()
    return "**********"


Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH),
    Field(description="Lower-case letters, digits and '-', starting and ending with a letter or digit; 63 at most."),
]
Quantity = Annotated[
    int,
    BeforeValidator(parse_quantity),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([KMGTP]i?)?\s*$"},
            ],
            "description": "Bytes, or a number with a unit: Ki Mi Gi Ti (binary) or K M G T (decimal).",
        }
    ),
]
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
            ],
            "description": "Seconds, or a number with a unit: ms, s, m, h, d.",
        }
    ),
]
Secret = Annotated[
    SecretStr,
    PlainSerializer(_reveal_secret, return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "description": "Sensitive: never printed in plans, logs or events."}),
]
Labels = Annotated[
    dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$", max_length=253)],
        Annotated[str, StringConstraints(max_length=253)],
    ],
    Field(description="Free key/value pairs, usable in placement requirements as labels.KEY."),
]
Reference = Annotated[
    str,
    StringConstraints(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[A-Za-z]+/[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
    Field(description="A resource reference KIND/NAME, such as network/lan."),
]


# The sets of field names that validation records per model instance (``model_fields_set``), one object per
# distinct set: see ``StrictModel.model_post_init``.
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}


class CrossFieldError(ValueError):
    """A problem a model finds across its fields, about one of them (``field``): diagnostics place it at that
    field's line (``schemas.model_errors``) rather than at the model's."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class StrictModel(BaseModel):
    """Base of every manifest model: unknown fields are errors, values are immutable once loaded."""

    # defer_build: a model's validator is built when it is first used, not when its module is imported, so a
    # command pays only for the kinds its manifests hold (about 0.05 s of every start otherwise).
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=False, defer_build=True
    )

    def model_post_init(self, context: Any, /) -> None:
        """Make the validated instance light: 100,000 VM documents are most of a large plan's memory.

        - The set of the fields the document gave is shared with every other instance that gave the same ones.
          Pydantic keeps a set per instance, and a set costs 216 to 728 bytes: more than a third of a validated
          VirtualMachine, whose document holds eight models. The instances are frozen, so nothing adds to the
          set (``model_copy`` gives the copy a set of its own); the distinct sets are few (subsets of each
          model's field names).
        - Parts that documents repeat word for word (``SharedModel``: a disk, a NIC, placement rules...) are
          replaced by the equal instance an earlier document holds, if any.
        """
        fields_set = self.__pydantic_fields_set__
        key = frozenset(fields_set)
        shared = _FIELDS_SETS.get(key)
        if shared is None:
            shared = _FIELDS_SETS[key] = set(key)
        object.__setattr__(self, "__pydantic_fields_set__", shared)
        values = self.__dict__
        for name, value in values.items():
            if isinstance(value, SharedModel):
                values[name] = _shared(value)  # an existing key: the dict does not change size while iterated
            elif type(value) is list and value and isinstance(value[0], SharedModel):
                for index, item in enumerate(value):  # the list validation just made for this instance
                    value[index] = _shared(item)


# One instance per distinct value of the parts documents repeat, while some document holds it: see SharedModel.
_SHARED: weakref.WeakValueDictionary[int, SharedModel] = weakref.WeakValueDictionary()


class SharedModel(StrictModel):
    """A part of a spec that many documents repeat word for word (a disk, a NIC, placement rules, lifecycle
    settings): the model that holds it (its parent, once validated) takes the instance an earlier document
    already holds when the values and the fields given are the same, so a fleet of VMs made from a few templates
    holds a few of each. The instances are frozen, so sharing one is not visible but by identity; nothing
    changes a document's lists in place."""


def _shared(instance: SharedModel) -> SharedModel:
    """The instance with ``instance``'s class, values and fields given, if one is held, else ``instance`` (which
    is then the one held). Keyed by a hash, compared in full: a collision only misses a chance to share."""
    values = instance.__dict__
    fields_set = instance.__pydantic_fields_set__
    try:
        digest = hash(
            (type(instance), id(fields_set), *(tuple(v) if isinstance(v, list) else v for v in values.values()))
        )
    except TypeError:  # a value that cannot be hashed: keep the instance as it is
        return instance
    held = _SHARED.get(digest)
    if held is None:
        _SHARED[digest] = instance
        return instance
    if type(held) is not type(instance) or held.__pydantic_fields_set__ is not fields_set:
        return instance
    theirs = held.__dict__
    if theirs != values:
        return instance
    for name, mine in values.items():
        if type(mine) is not type(theirs[name]):  # 1 == 1.0 == True: the types must match too
            return instance
    return held


API_VERSION_DOC = "The version of nebctl's manifest format: nebctl/v1."
KIND_DOC = (
    "What the document declares: Host, Datastore, Marketplace, Image, Network, SecurityGroup, VirtualMachine or Hook."
)
METADATA_DOC = "The resource's name, namespace, labels and annotations."


class Metadata(StrictModel):
    name: Name = Field(description="The resource's name, unique per kind and namespace.")
    namespace: Name = Field(
        default=DEFAULT_NAMESPACE, description="Scope for access rules and quotas; ignored by cluster-wide kinds."
    )
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict, description="Free notes; not used by nebctl.")


# --- Host -------------------------------------------------------------------------------------------------


class HostDrivers(SharedModel):
    """Driver name per family; a family left out takes the default derived from the host's URI."""

    virtualization: str | None = Field(default=None, description="Virtualization driver (libvirt, sim, exec:NAME).")
    storage: str | None = Field(default=None, description="Storage driver.")
    network: str | None = Field(default=None, description="Network driver.")
    monitoring: str | None = Field(default=None, description="Monitoring driver.")


class Reserved(SharedModel):
    cpu: float = Field(default=0, ge=0, description="CPUs kept back from scheduling.")
    memory: Quantity = Field(default=0, description="Memory kept back from scheduling.")


class Overcommit(SharedModel):
    cpu: float = Field(default=1.0, gt=0, le=64, description="Ratio of schedulable vCPUs to physical CPUs.")
    memory: float = Field(default=1.0, gt=0, le=8, description="Ratio of schedulable memory to physical memory.")


class HostVirtualization(SharedModel):
    """How the host runs guests: settings the virtualization driver reads when it defines a VM there."""

    domainType: Literal["auto", "kvm", "qemu"] = Field(
        default="auto",
        description="Hypervisor of the VMs defined on this host: kvm (hardware virtualization), qemu (emulation,"
        " TCG: slow, but it boots guests where nested KVM cannot), or auto (kvm where the host offers it).",
    )


HOST_URI_SCHEMES = (
    "qemu",
    "qemu+ssh",
    "qemu+tcp",
    "qemu+tls",
    "qemu+unix",
    "test",
    "test+unix",
    "sim",
    "exec",
    "ec2",
)
CLOUD_URI_SCHEMES = ("ec2",)


class Cloud(SharedModel):
    """What a cloud host may run: instance types and how many of each. Credentials are never here."""

    capacity: dict[str, Annotated[int, Field(ge=0, le=1_000_000)]] = Field(
        min_length=1,
        description="Instance types and how many of each may run at once, e.g. {t3.small: 10, t3.large: 4};"
        " placement takes the smallest type left that fits a VM.",
    )

    @field_validator("capacity")
    @classmethod
    def _known_types(cls, capacity: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(capacity) - set(KNOWN_INSTANCE_TYPES))
        if unknown:
            raise ValueError(
                f"unknown instance type {', '.join(unknown)}: known are {', '.join(sorted(KNOWN_INSTANCE_TYPES))}"
            )
        return capacity


class HostSpec(StrictModel):
    uri: str = Field(
        description="Where the host is: a libvirt URI (qemu:///system, qemu+ssh://kvm1/system, test:///default), "
        "sim://NAME for the built-in simulated fleet (optionally ?cpus=16&memory=64Gi&disk=1Ti), or exec://NAME.",
        min_length=1,
    )
    drivers: HostDrivers = Field(
        default_factory=HostDrivers, description="Driver name per family; the URI decides those left out."
    )
    reserved: Reserved = Field(default_factory=Reserved, description="Capacity kept back from scheduling.")
    overcommit: Overcommit = Field(
        default_factory=Overcommit, description="How far scheduling may exceed the physical capacity."
    )
    virtualization: HostVirtualization | None = Field(
        default=None, description="How guests run on the host; omitted: as with domainType auto."
    )
    labels: Labels = Field(default_factory=dict)
    enabled: bool = Field(default=True, description="false drains the host: no new VMs are placed on it.")
    cloud: Cloud | None = Field(
        default=None, description="For a cloud host (ec2://REGION): the instance types it may run; required there."
    )
    tier: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Placement tries hosts of a lower tier first; default 0, and 1 for cloud hosts, so VMs burst"
        " to the cloud only when no local host fits.",
    )

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme not in HOST_URI_SCHEMES:
            raise ValueError(
                f"unsupported host URI {uri!r}: expected one of {', '.join(s + '://' for s in HOST_URI_SCHEMES)}"
            )
        if scheme in CLOUD_URI_SCHEMES and not rest.split("?", 1)[0].strip("/"):
            raise ValueError(f"cloud host URI {uri!r} needs a region: {scheme}://REGION[?endpoint=URL]")
        return uri

    @property
    def is_cloud(self) -> bool:
        return self.uri.partition("://")[0] in CLOUD_URI_SCHEMES

    @property
    def effective_tier(self) -> int:
        return self.tier if self.tier is not None else (1 if self.is_cloud else 0)

    @model_validator(mode="after")
    def _cloud_needs_capacity(self) -> HostSpec:
        if self.is_cloud and self.cloud is None:
            raise CrossFieldError(
                "uri", "a cloud host needs 'cloud.capacity': the instance types it may run and how many"
            )
        if not self.is_cloud and self.cloud is not None:
            raise CrossFieldError("cloud", "'cloud' is for cloud hosts (ec2://REGION) only")
        return self


class Host(StrictModel):
    apiVersion: Literal["nebctl/v1"] = Field(description=API_VERSION_DOC)
    kind: Literal["Host"] = Field(description=KIND_DOC)
    metadata: Metadata = Field(description=METADATA_DOC)
    spec: HostSpec = Field(description="What the host is and how it may be scheduled.")


# --- Datastore --------------------------------------------------------------------------------------------


class DatastoreSpec(StrictModel):
    type: Literal["dir"] = Field(default="dir", description="Storage pool type; 'dir' is a directory of files.")
    path: str = Field(description="Absolute directory of the pool on each host.", pattern=r"^/")
    hosts: list[Name] = Field(default_factory=list, description="Hosts that have this datastore; empty means all.")


class Datastore(StrictModel):
    apiVersion: Literal["nebctl/v1"] = Field(description=API_VERSION_DOC)
    kind: Literal["Datastore"] = Field(description=KIND_DOC)
    metadata: Metadata = Field(description=METADATA_DOC)
    spec: DatastoreSpec = Field(description="The storage pool and the hosts it is on.")


# --- Marketplace ------------------------------------------------------------------------------------------


class MarketplaceSpec(StrictModel):
    url: str | None = Field(default=None, pattern=r"^https?://", description="URL of the catalogue index.")
    path: str | None = Field(default=None, description="Local path of the catalogue index.")
    driver: str = Field(
        default="catalogue",
        pattern=r"^[a-z][-a-z0-9_]*(:[A-Za-z0-9][-A-Za-z0-9_.]*)?$",
        description="Marketplace driver: catalogue (reads the index at url or path), sim, or exec:NAME.",
    )
    refresh: Duration = Field(
        default=3600.0, description="How long a downloaded index is used before it is read again."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> MarketplaceSpec:
        if (self.url is None) == (self.path is None):
            raise ValueError("set exactly one of 'url' and 'path'")
        return self


class Marketplace(StrictModel):
    apiVersion: Literal["nebctl/v1"] = Field(description=API_VERSION_DOC)
    kind: Literal["Marketplace"] = Field(description=KIND_DOC)
    metadata: Metadata = Field(description=METADATA_DOC)
    spec: MarketplaceSpec = Field(description="Where the catalogue of appliances is.")


# --- Image ------------------------------------------------------------------------------------------------


class ImageFormat(StrEnum):
    QCOW2 = "qcow2"
    RAW = "raw"


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$"), Field(description="Hex SHA-256 digest.")]


class MarketplaceSource(SharedModel):
    marketplace: Annotated[
        str,
        StringConstraints(
            pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[A-Za-z0-9][-A-Za-z0-9_.]*(@[A-Za-z0-9][-A-Za-z0-9_.+]*)?$"
        ),
        Field(
            description="MARKETPLACE/APP or MARKETPLACE/APP@VERSION: an appliance of a Marketplace resource; "
            "without a version, the newest one the catalogue lists when the image is imported."
        ),
    ]


AmiId = Annotated[
    str,
    StringConstraints(pattern=r"^ami-[0-9a-f]{8,17}$"),
    Field(description="An Amazon Machine Image id, such as ami-0123456789abcdef0."),
]


class Ec2ImageSource(StrictModel):
    """The image as an AMI, for VMs on EC2 hosts. AMIs are regional: ``regions`` names one per region, ``ami`` the
    one for any other region."""

    ami: AmiId | None = Field(default=None, description="The AMI for a region that 'regions' does not name.")
    regions: dict[str, AmiId] = Field(
        default_factory=dict, description="The AMI of each region (eu-west-1: ami-...); wins over 'ami'."
    )

    @model_validator(mode="after")
    def _some_ami(self) -> Ec2ImageSource:
        if self.ami is None and not self.regions:
            raise ValueError("give 'ami', 'regions' or both")
        return self

    def ami_for(self, region: str | None) -> str | None:
        """The AMI of ``region``: its own, else the one for any region; None when neither is given."""
        return self.regions.get(region or "") or self.ami


class ImageCloudSources(StrictModel):
    ec2: Ec2ImageSource | None = Field(default=None, description="The image on EC2 hosts (ec2:// URIs): an AMI.")


class ImageSpec(StrictModel):
    source: str | MarketplaceSource = Field(
        description="A local file path, an http(s):// URL (needs sha256), or {marketplace: NAME/APP[@VERSION]}."
    )
    sha256: Sha256 | None = Field(default=None, description="Expected digest; required for URLs.")
    format: ImageFormat | None = Field(default=None, description="qcow2 or raw; detected when omitted.")
    datastore: Name = Field(description="The Datastore that holds the image.")
    cloud: ImageCloudSources | None = Field(
        default=None,
        description="The same image on cloud hosts, which keep no datastores: a VM placed there whose first disk "
        "clones this image boots from this source instead (ec2: an AMI per region).",
    )

    @model_validator(mode="after")
    def _url_needs_digest(self) -> ImageSpec:
        if isinstance(self.source, str):
            if not self.source.strip():
                raise CrossFieldError("source", "source must not be empty")
            if self.source.startswith(("http://", "https://")) and self.sha256 is None:
                raise CrossFieldError("source", "an http(s) source needs 'sha256' so the download can be verified")
            if "://" in self.source and not self.source.startswith(("http://", "https://", "file://")):
                raise CrossFieldError(
                    "source", f"unsupported image source {self.source!r}: use a path, http(s):// or file://"
                )
        return self


class Image(StrictModel):
    apiVersion: Literal["nebctl/v1"] = Field(description=API_VERSION_DOC)
    kind: Literal["Image"] = Field(description=KIND_DOC)
    metadata: Metadata = Field(description=METADATA_DOC)
    spec: ImageSpec = Field(description="Where the image comes from and where it is kept.")


# --- Network ----------------------------------------------------------------------------------------------


class NetworkMode(StrEnum):
    NAT = "nat"
    ISOLATED = "isolated"
    BRIDGE = "bridge"


class AddressRange(SharedModel):
    first: ipaddress.IPv4Address = Field(description="First leasable address.")
    last: ipaddress.IPv4Address = Field(description="Last leasable address.")

    @model_validator(mode="after")
    def _ordered(self) -> AddressRange:
        if self.first > self.last:
            raise CrossFieldError("first", f"range first {self.first} is after last {self.last}")
        return self


class NetworkSpec(StrictModel):
    mode: NetworkMode = Field(description="nat, isolated, or bridge (an existing host bridge).")
    bridge: str | None = Field(default=None, max_length=15, description="Host bridge name, for bridge mode.")
    cidr: ipaddress.IPv4Network = Field(description="The network's address block, such as 10.10.0.0/24.")
    gateway: ipaddress.IPv4Address | None = Field(default=None, description="Defaults to the first host address.")
    range: AddressRange | None = Field(default=None, description="Leasable addresses; defaults to the whole block.")
    dns: list[ipaddress.IPv4Address] = Field(default_factory=list, description="DNS servers handed to the VMs.")
    mtu: int | None = Field(
        default=None, ge=576, le=9216, description="Largest packet size; the driver's default if omitted."
    )
    hosts: list[Name] = Field(default_factory=list, description="Hosts that carry the network; empty means all.")

    @model_validator(mode="after")
    def _consistent(self) -> NetworkSpec:
        if self.mode is NetworkMode.BRIDGE and not self.bridge:
            raise CrossFieldError("mode", "mode 'bridge' needs 'bridge', the name of an existing host bridge")
        if self.mode is not NetworkMode.BRIDGE and self.bridge:
            raise CrossFieldError("bridge", f"'bridge' is only for mode 'bridge', not {self.mode.value!r}")
        if self.gateway is not None and self.gateway not in self.cidr:
            raise CrossFieldError("gateway", f"gateway {self.gateway} is outside {self.cidr}")
        if self.range is not None:
            for end in (self.range.first, self.range.last):
                if end not in self.cidr:
                    raise CrossFieldError("range", f"range address {end} is outside {self.cidr}")
        if self.cidr.num_addresses < 4:
            raise CrossFieldError("cidr", f"cidr {self.cidr} is too small: it needs room for a gateway and hosts")
        return self

    @property
    def effective_gateway(self) -> ipaddress.IPv4Address:
        return self.gateway or next(self.cidr.hosts())

    @property
    def effective_range(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
        """Leasable addresses; by default the block's host addresses, less the gateway when it is at one end.

        A gateway inside the range (set explicitly) is never leased: callers skip ``effective_gateway``.
        """
        if self.range is not None:
            return self.range.first, self.range.last
        first, last = self.cidr.network_address + 1, self.cidr.broadcast_address - 1
        gateway = self.effective_gateway
        if gateway == first:
            return first + 1, last
        if gateway == last:
            return first, last - 1
        return first, last

    @field_validator("cidr", mode="before")
    @classmethod
    def _strict_cidr(cls, value: Any) -> Any:
        if isinstance(value, str) and "/" in value:
            try:
                ipaddress.IPv4Network(value, strict=True)
            except ValueError as error:
                if "host bits set" in str(error):
                    network = ipaddress.IPv4Network(value, strict=False)
                    raise ValueError(f"{value} has host bits set; did you mean {network}?") from None
                raise
        return value


class Network(StrictModel):
    apiVersion: Literal["nebctl/v1"] = Field(description=API_VERSION_DOC)
    kind: Literal["Network"] = Field(description=KIND_DOC)
    metadata: Metadata = Field(description=METADATA_DOC)
    spec: NetworkSpec = Field(description="The network's mode, addresses and hosts.")


# --- SecurityGroup ----------------------------------------------------------------------------------------


PortSpec = Annotated[
    str,
    StringConstraints(pattern=r"^\d{1,5}(-\d{1,5})?$"),
    Field(description="A port (22) or an inclusive range (8000-8080)."),
]


class SecurityRule(SharedModel):
    direction: Literal["in", "out"] = Field(description="in: traffic to the VM; out: traffic from it.")
    protocol: Literal["tcp", "udp", "icmp", "any"] = Field(default="any", description="tcp, udp, icmp or any.")
    ports: list[PortSpec] = Field(default_factory=list, description="Ports for tcp/udp; empty means all.")
    cidr: ipaddress.IPv4Network = Field(
        default=ipaddress.IPv4Network("0.0.0.0/0"), description="Peer addresses the rule applies to."
    )

    @field_validator("ports", mode="before")
    @classmethod
    def _ports_as_strings(cls, value: Any) -> Any:
        if isinstance(value, int | str):
            value = [value]
        if isinstance(value, list):
            return [str(port) if isinstance(port, int) and not isinstance(port, bool) else port for port in value]
        return value

    @model_validator(mode="after")
    def _ports_valid(self) -> SecurityRule:
        if self.ports and self.protocol not in ("tcp", "udp"):
            raise CrossFieldError("ports", f"ports apply to tcp and udp only, not {self.protocol}")
        for spec in self.ports:
            low, _, high = spec.partition("-")
            first, last = int(low), int(high or low)
            if not 1 <= first <= last <= 65535:
                raise CrossFieldError("ports", f"invalid port range {spec!r}: ports go from 1 to 65535, low to high")
        return self


class SecurityGroupSpec(StrictModel):
    rules: list[SecurityRule] = Field(default_factory=list, description="Allowed traffic; the rest is dropped.")


class SecurityGroup(StrictModel):
    apiVersion: Literal["nebctl/v1"] = Field(description=API_VERSION_DOC)
    kind: Literal["SecurityGroup"] = Field(description=KIND_DOC)
    metadata: Metadata = Field(description=METADATA_DOC)
    spec: SecurityGroupSpec = Field(description="The traffic the group allows.")


# --- VirtualMachine ---------------------------------------------------------------------------------------


class VMState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    SUSPENDED = "suspended"


class PlacementPolicy(StrEnum):
    PACKING = "packing"
    STRIPING = "striping"
    LOAD = "load"


class BurstPolicy(StrEnum):
    LAST = "last"  # the default: cloud hosts after local ones (by tier)
    FIRST = "first"
    NEVER = "never"


class Disk(SharedModel):
    image: Name | None = Field(default=None, description="An Image to clone for this VM; omit for a blank disk.")
    size: Quantity | None = Field(default=None, description="Disk size; an image clone is grown, never shrunk.")
    clone: Literal["overlay", "full"] = Field(
        default="overlay", description="overlay: a qcow2 backed by the image; full: an independent copy."
    )
    datastore: Name | None = Field(default=None, description="Datastore of the disk; default: the image's.")

    @model_validator(mode="after")
    def _blank_needs_size(self) -> Disk:
        if self.image is None and self.size is None:
            raise CrossFieldError("size", "a blank disk (no 'image') needs a 'size'")
        if self.size is not None and self.size < 1024**2:
            raise CrossFieldError("size", "a disk must be at least 1Mi")
        return self


class Nic(SharedModel):
    network: Name = Field(description="The Network this NIC is attached to.")
    ip: ipaddress.IPv4Address | None = Field(default=None, description="Static address; leased when omitted.")
    securityGroups: list[Name] = Field(default_factory=list, description="SecurityGroups enforced on this NIC.")


class Placement(SharedModel):
    host: Name | None = Field(default=None, description="A fixed host; excludes requirements, rank and policy.")
    requirements: str | None = Field(
        default=None, description="Expression a host must satisfy, e.g. \"free_memory >= 4Gi and labels.zone == 'a'\"."
    )
    rank: str | None = Field(default=None, description="Expression to maximise among fitting hosts.")
    policy: PlacementPolicy | None = Field(
        default=None, description="packing (fullest first), striping (emptiest first) or load (least CPU load)."
    )
    burst: BurstPolicy | None = Field(
        default=None,
        description="Cloud hosts: last (the default: only when no local host fits), first (before local hosts)"
        " or never.",
    )
    instanceType: str | None = Field(
        default=None, description="On a cloud host, this instance type instead of the smallest one that fits."
    )

    @field_validator("instanceType")
    @classmethod
    def _known_type(cls, name: str | None) -> str | None:
        if name is not None and name not in KNOWN_INSTANCE_TYPES:
            raise ValueError(f"unknown instance type {name!r}: known are {', '.join(sorted(KNOWN_INSTANCE_TYPES))}")
        return name

    @field_validator("requirements", "rank")
    @classmethod
    def _parses(cls, text: str | None) -> str | None:
        if text is not None:
            expressions.parse(text)
        return text

    @model_validator(mode="after")
    def _host_or_rules(self) -> Placement:
        if self.host is not None and (self.requirements or self.rank or self.policy):
            raise CrossFieldError("host", "set either 'host' or 'requirements'/'rank'/'policy', not both")
        if self.rank is not None and self.policy is not None:
            raise CrossFieldError("rank", "set either 'rank' or 'policy', not both")
        return self


class CloudInit(StrictModel):
    userData: Secret | None = Field(default=None, description="cloud-init user data (sensitive).")
    metaData: Secret | None = Field(default=None, description="cloud-init meta data (sensitive).")
    networkConfig: Secret | None = Field(default=None, description="cloud-init network config (sensitive).")


class Boot(SharedModel):
    """Direct kernel boot: the hypervisor loads a kernel (and initrd) from files on the host, so the image needs
    no boot loader. The files must exist at these paths on every host the VM may run on or move to."""

    kernel: str = Field(description="Absolute path of the kernel on the host.", pattern=r"^/")
    initrd: str | None = Field(default=None, description="Absolute path of the initial ramdisk on the host.",
                               pattern=r"^/")  # fmt: skip
    cmdline: str | None = Field(default=None, description="Kernel command line, such as 'root=/dev/vda1'.")


class Lifecycle(SharedModel):
    preventDestroy: bool = Field(default=False, description="A plan that would destroy this resource fails.")
    ignoreChanges: list[str] = Field(
        default_factory=list, description="Spec fields whose changes are ignored (memory, disks[0].size...)."
    )
    createBeforeDestroy: bool = Field(
        default=False,
        description="On replacement, create and start the new VM (with its own UUID, name, disks, MACs and"
        " addresses) before the old one is destroyed.",
    )


VCPU_MAX = 512
MEMORY_MIN = 16 * 1024**2


class VirtualMachineSpec(StrictModel):
    state: VMState = Field(default=VMState.RUNNING, description="running, stopped or suspended.")
    vcpu: int = Field(default=1, ge=1, le=VCPU_MAX, description="Virtual CPUs.")
    memory: Quantity = Field(description="Memory, such as 2Gi.")
    disks: list[Disk] = Field(default_factory=list, max_length=64, description="The VM's disks, in order.")
    nics: list[Nic] = Field(default_factory=list, max_length=32, description="The VM's network interfaces, in order.")
    placement: Placement = Field(default_factory=Placement, description="Where the VM may go: a host, or rules.")
    cloudInit: CloudInit | None = Field(default=None, description="cloud-init data read at first boot (sensitive).")
    boot: Boot | None = Field(default=None, description="Direct kernel boot; omitted: boot from the first disk.")
    lifecycle: Lifecycle = Field(default_factory=Lifecycle, description="How nebctl changes and destroys the VM.")
    dependsOn: list[Reference] = Field(default_factory=list, description="Extra ordering, as KIND/NAME.")

    @field_validator("memory")
    @classmethod
    def _memory_floor(cls, memory: int) -> int:
        if memory < MEMORY_MIN:
            raise ValueError("memory must be at least 16Mi")
        return memory


class VirtualMachine(StrictModel):
    apiVersion: Literal["nebctl/v1"] = Field(description=API_VERSION_DOC)
    kind: Literal["VirtualMachine"] = Field(description=KIND_DOC)
    metadata: Metadata = Field(description=METADATA_DOC)
    spec: VirtualMachineSpec = Field(
        description="The VM wanted: state, size, disks, NICs, placement, cloud-init and lifecycle."
    )


def vm_disk_total(vm: VirtualMachine) -> int:
    """Disk a VM asks for (placement and quotas); a clone without a size counts as nothing extra."""
    return sum(disk.size or 0 for disk in vm.spec.disks)


PlacementInputs = tuple[int, int, int, Placement]
"""What placing a VM reads of its manifest: its vCPUs, memory, disk (``vm_disk_total``) and placement rules."""


def placement_inputs(vm: VirtualMachine) -> PlacementInputs:
    """What placing ``vm`` reads of it."""
    spec = vm.spec
    return spec.vcpu, spec.memory, vm_disk_total(vm), spec.placement


# --- Hook -------------------------------------------------------------------------------------------------

# Every event nebctl records about resources and applies (docs/manifests.md lists them with their meaning).
HOOK_EVENT_PATTERN = (
    r"^(vm\.(created|updated|replaced|deposed|imported|running|stopped|suspended|failed|deleted|unknown|migrated)"
    r"|(image|network|securitygroup|datastore|host|marketplace|hook)\.(created|updated|replaced|deleted|failed|error)"
    r"|apply\.(started|finished|failed|partial|interrupted)|drift\.detected|\*)$"
)


class HookSpec(StrictModel):
    on: list[Annotated[str, StringConstraints(pattern=HOOK_EVENT_PATTERN)]] = Field(
        min_length=1, description="Events that run the hook, such as vm.running, vm.failed, apply.finished."
    )
    command: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        min_length=1, description="Argument vector; never run through a shell."
    )
    timeout: Duration = Field(default=30.0, description="Killed after this long.")
    env: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Secret] = Field(
        default_factory=dict, description="Environment of the program (values are sensitive)."
    )

    @field_validator("command", mode="before")
    @classmethod
    def _argv_not_shell(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("command must be a list of arguments, e.g. [/usr/bin/notify, --channel, ops]")
        return value


class Hook(StrictModel):
    apiVersion: Literal["nebctl/v1"] = Field(description=API_VERSION_DOC)
    kind: Literal["Hook"] = Field(description=KIND_DOC)
    metadata: Metadata = Field(description=METADATA_DOC)
    spec: HookSpec = Field(description="The events that run the hook, and the program it runs.")


# --- The union --------------------------------------------------------------------------------------------

Manifest = Annotated[
    Host | Datastore | Marketplace | Image | Network | SecurityGroup | VirtualMachine | Hook,
    Field(discriminator="kind"),
]
"""Any manifest document, discriminated by ``kind``."""

MODEL_BY_KIND: dict[Kind, type[StrictModel]] = {
    Kind.HOST: Host,
    Kind.DATASTORE: Datastore,
    Kind.MARKETPLACE: Marketplace,
    Kind.IMAGE: Image,
    Kind.NETWORK: Network,
    Kind.SECURITY_GROUP: SecurityGroup,
    Kind.VIRTUAL_MACHINE: VirtualMachine,
    Kind.HOOK: Hook,
}

AnyManifest = Host | Datastore | Marketplace | Image | Network | SecurityGroup | VirtualMachine | Hook


def spec_document(manifest: AnyManifest) -> dict[str, Any]:
    """The spec as plain JSON data with secrets in clear: what is hashed, stored and handed to drivers."""
    return manifest.spec.model_dump(mode="json", context={"reveal_secrets": True})
