"""Resource identity: kinds, their short names, and the (kind, namespace, name) key used everywhere.

A key prints the way users type references (``vm/web-1``, or ``team-a/vm/web-1`` outside the default
namespace). Used by the loader, the diff, the plan, the database layer and the CLI's ``--target`` options.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple


class Kind(StrEnum):
    """The kinds of manifest document, in the order their resources are usually created."""

    HOST = "Host"
    DATASTORE = "Datastore"
    MARKETPLACE = "Marketplace"
    IMAGE = "Image"
    NETWORK = "Network"
    SECURITY_GROUP = "SecurityGroup"
    VIRTUAL_MACHINE = "VirtualMachine"
    HOOK = "Hook"

    @property
    def short(self) -> str:
        """The lower-case short name used in references, plans and the CLI (``vm``, ``network``...)."""
        return SHORT_NAMES[self]

    @property
    def cluster_scoped(self) -> bool:
        """Whether resources of this kind live outside namespaces (infrastructure shared by everyone)."""
        return self in CLUSTER_SCOPED


SHORT_NAMES: dict[Kind, str] = {
    Kind.HOST: "host",
    Kind.DATASTORE: "datastore",
    Kind.MARKETPLACE: "marketplace",
    Kind.IMAGE: "image",
    Kind.NETWORK: "network",
    Kind.SECURITY_GROUP: "securitygroup",
    Kind.VIRTUAL_MACHINE: "vm",
    Kind.HOOK: "hook",
}

CLUSTER_SCOPED = frozenset({Kind.HOST, Kind.DATASTORE, Kind.MARKETPLACE})

DEFAULT_NAMESPACE = "default"

# Every spelling a user may type for a kind on the command line or in ``dependsOn``.
KIND_ALIASES: dict[str, Kind] = {
    **{kind.value.lower(): kind for kind in Kind},
    **{short: kind for kind, short in SHORT_NAMES.items()},
    "vms": Kind.VIRTUAL_MACHINE,
    "virtualmachines": Kind.VIRTUAL_MACHINE,
    "hosts": Kind.HOST,
    "images": Kind.IMAGE,
    "networks": Kind.NETWORK,
    "net": Kind.NETWORK,
    "sg": Kind.SECURITY_GROUP,
    "securitygroups": Kind.SECURITY_GROUP,
    "datastores": Kind.DATASTORE,
    "ds": Kind.DATASTORE,
    "hooks": Kind.HOOK,
    "marketplaces": Kind.MARKETPLACE,
}

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX_LENGTH = 63
_NAME = re.compile(NAME_PATTERN)


def is_valid_name(name: str) -> bool:
    """Whether ``name`` is a valid resource or namespace name (DNS label rules, as in the SPEC)."""
    return len(name) <= NAME_MAX_LENGTH and _NAME.match(name) is not None


# Separates a VM's name from an incarnation number (``web-1~2``): in live names, and in the name of the record
# that keeps an old VM deposed by a create-before-destroy replacement. No resource name contains it.
INCARNATION_SEPARATOR = "~"


def is_deposed_name(name: str) -> bool:
    """Whether ``name`` is a deposed VM record's name (``web-1~0``), which only nebctl makes."""
    base, separator, number = name.rpartition(INCARNATION_SEPARATOR)
    return bool(separator) and number.isdigit() and len(name) <= NAME_MAX_LENGTH and _NAME.match(base) is not None


def parse_kind(text: str) -> Kind:
    """The kind that ``text`` names, in any accepted spelling; ``ValueError`` lists the valid ones."""
    kind = KIND_ALIASES.get(text.strip().lower())
    if kind is None:
        valid = ", ".join(sorted(SHORT_NAMES.values()))
        raise ValueError(f"unknown kind {text!r}; expected one of {valid}")
    return kind


class ResourceKey(NamedTuple):
    """The identity of one resource. Cluster-scoped kinds always carry the default namespace."""

    kind: Kind
    namespace: str
    name: str

    @classmethod
    def of(cls, kind: Kind, name: str, namespace: str = DEFAULT_NAMESPACE) -> ResourceKey:
        """Build a key, folding the namespace of cluster-scoped kinds to the default one."""
        return cls(kind, DEFAULT_NAMESPACE if kind.cluster_scoped else namespace, name)

    @classmethod
    def parse(cls, text: str, *, namespace: str = DEFAULT_NAMESPACE) -> ResourceKey:
        """Parse ``KIND/NAME`` or ``NAMESPACE/KIND/NAME`` (as in ``dependsOn`` and ``--target``; a deposed VM
        record's name too, so that it can be shown and targeted)."""
        parts = text.strip().split("/")
        if len(parts) == 2:
            kind_text, name = parts
        elif len(parts) == 3:
            namespace, kind_text, name = parts
        else:
            raise ValueError(f"invalid reference {text!r}: expected KIND/NAME, such as network/lan")
        kind = parse_kind(kind_text)
        if not is_valid_name(name) and not is_deposed_name(name):
            raise ValueError(f"invalid reference {text!r}: {name!r} is not a valid name")
        return cls.of(kind, name, namespace)

    def __str__(self) -> str:
        prefix = "" if self.namespace == DEFAULT_NAMESPACE else f"{self.namespace}/"
        return f"{prefix}{self.kind.short}/{self.name}"


# The order resources are listed in a plan, and the tie-break among independent resources: kinds in the enum's
# order, then namespace and name.
_KIND_RANK = {kind: rank for rank, kind in enumerate(Kind)}


def sort_key(key: ResourceKey) -> tuple[int, str, str]:
    return (_KIND_RANK[key.kind], key.namespace, key.name)
