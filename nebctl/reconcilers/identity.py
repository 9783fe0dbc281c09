"""Deterministic identities of everything nebctl creates: UUIDs, live names, volume names, MAC addresses.

Every live object's identity is a pure function of the resource key, so re-running an interrupted action
finds the object it created before instead of creating a second one. The planner, the reconcilers and the
drift detection all go through these functions; nothing else invents a live name.

A VM also has an incarnation, 0 at first. A replacement made with ``lifecycle.createBeforeDestroy`` runs the
new VM beside the old one, so the new one is the next incarnation, with a UUID, name, disks and MACs of its
own; meanwhile the old one is *deposed*: kept under a record of its own (``deposed_key``) until it is deleted.
Incarnation 0 has the identities nebctl always gave, so existing VMs keep theirs.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Container, Mapping
from typing import Any

from nebctl.core.keys import DEFAULT_NAMESPACE, INCARNATION_SEPARATOR, NAME_MAX_LENGTH, Kind, ResourceKey

# A fixed namespace for uuid5, so the same resource key gives the same UUID on every machine.
NEBCTL_UUID_NAMESPACE = uuid.UUID("6f0b3c8e-2a4d-5d1e-9b7a-4e0f1c2d3b5a")


def live_name(key: ResourceKey) -> str:
    """The name of the live object: the resource name, prefixed by its namespace outside the default one."""
    return key.name if key.namespace == DEFAULT_NAMESPACE else f"{key.namespace}.{key.name}"


def _incarnated(text: str, incarnation: int) -> str:
    # The separator cannot appear in a resource name, so "web-1~1" is never another VM's identity.
    return f"{text}{INCARNATION_SEPARATOR}{incarnation}" if incarnation else text


def vm_uuid(key: ResourceKey, incarnation: int = 0) -> str:
    name = f"nebctl:{key.kind.value}/{key.namespace}/{key.name}"
    return str(uuid.uuid5(NEBCTL_UUID_NAMESPACE, _incarnated(name, incarnation)))


def vm_name(key: ResourceKey, incarnation: int = 0) -> str:
    """The name of the VM's live domain (``web-1``; ``web-1~2`` for its third incarnation)."""
    return _incarnated(live_name(key), incarnation)


def disk_volume(key: ResourceKey, index: int, incarnation: int = 0) -> str:
    return f"{vm_name(key, incarnation)}-disk{index}"


@functools.lru_cache(maxsize=4096)  # one string per image for the clones of every VM of a plan, not one per clone
def image_volume(key: ResourceKey) -> str:
    return f"image-{live_name(key)}"


@functools.lru_cache(maxsize=4096)  # the same few groups in the NIC parameters of every VM of a plan
def security_group_filter(key: ResourceKey) -> str:
    return f"nebctl-sg-{live_name(key)}"


# Bits of the digest a MAC takes: all of what QEMU's 52:54:00 range leaves. Fewer are only useful to make
# collisions likely enough to be seen (the planner's width parameter, set by tests).
MAC_BITS = 24


@functools.lru_cache(maxsize=1 << 18)  # every NIC of every plan (100,000 VMs fit): a digest each time adds up
def mac_address(key: ResourceKey, nic_index: int, incarnation: int = 0, attempt: int = 0, bits: int = MAC_BITS) -> str:
    """A stable, locally administered MAC in QEMU's 52:54:00 range for (VM, NIC index, incarnation): the
    first ``bits`` bits of a digest. Different NICs may get the same one (24 bits: even odds among about 5,000
    NICs), so the planner, which knows every MAC in use, asks for the next ``attempt`` until one is free;
    attempt 0 is the MAC nebctl always gave, so existing VMs keep theirs."""
    text = _incarnated(f"{key.namespace}/{key.name}/{nic_index}", incarnation)
    if attempt:
        text += f"#{attempt}"  # '#' is never part of a name: no attempt is another NIC's first choice
    digest = hashlib.sha256(text.encode()).digest()
    value = int.from_bytes(digest[:3], "big") >> (MAC_BITS - bits)
    return "52:54:00:" + ":".join(f"{byte:02x}" for byte in value.to_bytes(3, "big"))


def deposed_key(key: ResourceKey, incarnation: int, taken: Container[ResourceKey] = frozenset()) -> ResourceKey:
    """The key of the record that keeps incarnation ``incarnation`` of VM ``key`` once a create-before-destroy
    replacement has deposed it: ``web-1~0``. A name too long for the database's name column is shortened,
    with a digest of the whole name; two long names may still shorten alike (24 bits of digest), so the
    digest takes the next attempt until the key is none of ``taken`` (the records there are: the planner and
    the journal pass the same ones, and depose VMs in the same order, so both find the same key)."""
    suffix = f"{INCARNATION_SEPARATOR}{incarnation}"
    if len(key.name) + len(suffix) <= NAME_MAX_LENGTH:
        return ResourceKey(key.kind, key.namespace, key.name + suffix)  # unique: no name holds the separator
    attempt = 0
    while True:
        text = key.name + (f"#{attempt}" if attempt else "")  # attempt 0: the key nebctl always gave
        digest = hashlib.sha256(text.encode()).hexdigest()[:6]
        candidate = ResourceKey(
            key.kind, key.namespace, f"{key.name[: NAME_MAX_LENGTH - len(suffix) - 7]}-{digest}{suffix}"
        )
        if candidate not in taken:
            return candidate
        attempt += 1


def deposed_of(key: ResourceKey, live: Mapping[str, Any]) -> ResourceKey | None:
    """The VM whose old VM a deposed record keeps (its ``live`` part says so); None for any other record."""
    deposed = live.get("deposed")
    if key.kind is not Kind.VIRTUAL_MACHINE or not isinstance(deposed, Mapping):
        return None
    return ResourceKey(key.kind, key.namespace, str(deposed["of"]))


class VMIdentity:
    """Who a VM record's live VM is: the VM's own key (for a deposed record, the VM it belonged to), its
    incarnation, and its UUID and domain name (their own for a VM adopted with ``nebctl import``). The UUID and
    name are worked out when first asked: a plan of 100,000 VMs needs few of them."""

    __slots__ = ("_given", "_name", "_uuid", "incarnation", "key")

    def __init__(self, key: ResourceKey, incarnation: int = 0, uuid: str | None = None, name: str | None = None):
        self.key = key
        self.incarnation = incarnation
        self._given = (uuid, name)  # recorded ones (an adopted VM), else None: derived when first asked
        self._uuid = uuid
        self._name = name

    @classmethod
    def of(cls, key: ResourceKey, incarnation: int = 0) -> VMIdentity:
        return cls(key, incarnation)

    @classmethod
    def recorded(cls, key: ResourceKey, live: Mapping[str, Any]) -> VMIdentity:
        """The identity a record's ``live`` part describes. A recorded UUID or name wins (an adopted VM); it is
        dropped when the VM is undeployed, so a VM created again gets the deterministic ones."""
        owner = deposed_of(key, live)
        if owner is not None:
            key, incarnation = owner, int(live["deposed"]["incarnation"])
        else:
            incarnation = int(live.get("incarnation") or 0)
        uuid_, name = live.get("uuid"), live.get("name")
        return cls(key, incarnation, str(uuid_) if uuid_ else None, str(name) if name else None)

    @property
    def uuid(self) -> str:
        if self._uuid is None:
            self._uuid = vm_uuid(self.key, self.incarnation)
        return self._uuid

    @property
    def name(self) -> str:
        if self._name is None:
            self._name = vm_name(self.key, self.incarnation)
        return self._name

    def __eq__(self, other: object) -> bool:
        # What defines it (an adopted VM's own UUID or name included), without working out the derived ones.
        return isinstance(other, VMIdentity) and (self.key, self.incarnation, self._given) == (
            other.key,
            other.incarnation,
            other._given,
        )

    def __hash__(self) -> int:
        return hash((self.key, self.incarnation))

    def __repr__(self) -> str:
        return f"VMIdentity({self.key!r}, {self.incarnation}, uuid={self.uuid!r}, name={self.name!r})"

    def volume(self, index: int) -> str:
        return disk_volume(self.key, index, self.incarnation)

    def mac(self, nic_index: int) -> str:
        return mac_address(self.key, nic_index, self.incarnation)
