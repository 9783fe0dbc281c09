"""Deterministic identities of everything nebctl creates: UUIDs, live names, volume names, MAC addresses.

Every live object's identity is a pure function of the resource key, so re-running an interrupted action
finds the object it created before instead of creating a second one. The planner, the reconcilers and the
drift detection all go through these functions; nothing else invents a live name.
"""

from __future__ import annotations

import functools
import hashlib
import uuid

from nebctl.schemas.keys import DEFAULT_NAMESPACE, ResourceKey

# A fixed namespace for uuid5, so the same resource key gives the same UUID on every machine.
NEBCTL_UUID_NAMESPACE = uuid.UUID("6f0b3c8e-2a4d-5d1e-9b7a-4e0f1c2d3b5a")


def live_name(key: ResourceKey) -> str:
    """The name of the live object: the resource name, prefixed by its namespace outside the default one."""
    return key.name if key.namespace == DEFAULT_NAMESPACE else f"{key.namespace}.{key.name}"


def vm_uuid(key: ResourceKey) -> str:
    return str(uuid.uuid5(NEBCTL_UUID_NAMESPACE, f"nebctl:{key.kind.value}/{key.namespace}/{key.name}"))


def disk_volume(key: ResourceKey, index: int) -> str:
    return f"{live_name(key)}-disk{index}"


@functools.lru_cache(maxsize=4096)  # one string per image for the clones of every VM of a plan, not one per clone
def image_volume(key: ResourceKey) -> str:
    return f"image-{live_name(key)}"


@functools.lru_cache(maxsize=4096)  # the same few groups in the NIC parameters of every VM of a plan
def security_group_filter(key: ResourceKey) -> str:
    return f"nebctl-sg-{live_name(key)}"


@functools.lru_cache(maxsize=1 << 18)  # every NIC of every plan (100,000 VMs fit): a digest each time adds up
def mac_address(key: ResourceKey, nic_index: int) -> str:
    """A stable, locally administered MAC in QEMU's 52:54:00 range, unique per (VM, NIC index)."""
    digest = hashlib.sha256(f"{key.namespace}/{key.name}/{nic_index}".encode()).digest()
    return "52:54:00:" + ":".join(f"{byte:02x}" for byte in digest[:3])
