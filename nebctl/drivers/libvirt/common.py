"""What the four libvirt family drivers share: their registered name, the connection cache, the state map,
and small helpers for looking objects up and reading ownership.

Only the libvirt driver package imports libvirt; this module is its foundation.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any, ClassVar, Self

import libvirt

from nebctl.drivers.libvirt.connections import Connections, default_connections
from nebctl.drivers.libvirt.failures import error_code
from nebctl.drivers.libvirt.xmlbuild.base import OwnerElement
from nebctl.drivers.libvirt.xmlbuild.filters import NIC_FILTER_BITS
from nebctl.drivers.states import VMLiveState
from nebctl.drivers.types import HostRef, Ownership

DRIVER_NAME = "libvirt"
SHARED_CONNECTIONS_KEY = "libvirt.connections"

# What a libvirt hypervisor driver (``virConnect.getType()``) does not implement, whatever the host: libvirt's
# test driver has no nwfilter and no volume resize (VIR_ERR_NO_SUPPORT, raised as CapabilityError).
MISSING_BY_HYPERVISOR: dict[str, frozenset[str]] = {"TEST": frozenset({"resize", "security-groups"})}


class LibvirtDriverBase:
    """Base of the libvirt family drivers: ``connections`` defaults to the process-wide cache, so drivers of
    every family built by the registry with no arguments share one connection per host URI."""

    name: ClassVar[str] = DRIVER_NAME

    def __init__(self, *, connections: Connections | None = None) -> None:
        self.connections = connections if connections is not None else default_connections()
        # Bits of the digest naming a NIC's combined filter (``nicfilters``): fewer only in tests of collisions.
        self.nic_filter_bits = NIC_FILTER_BITS

    @classmethod
    def from_context(cls, context: Any) -> Self:
        """Build from a ``registry.DriverContext`` (Any avoids an import cycle): the libvirt drivers of one
        registry share one ``Connections``, closed by ``Registry.close``. Options: keepalive_interval,
        keepalive_count, events, nic_filter_bits (the driver's section of the settings)."""
        options = dict(context.options or {})
        connections = context.shared.get(SHARED_CONNECTIONS_KEY)
        if connections is None:
            connections = Connections(
                keepalive_interval=int(options.get("keepalive_interval", 5)),
                keepalive_count=int(options.get("keepalive_count", 3)),
                events=bool(options.get("events", True)),
            )
            context.shared[SHARED_CONNECTIONS_KEY] = connections
        driver = cls(connections=connections)
        driver.nic_filter_bits = int(options.get("nic_filter_bits", NIC_FILTER_BITS))
        return driver

    def capabilities_on(self, host: HostRef) -> frozenset[str]:
        """What this driver can do on ``host``: its declared ``capabilities`` minus what the host's hypervisor
        driver lacks (those actions raise ``CapabilityError`` there)."""
        with self._using(host, "read the hypervisor type") as connection:
            hypervisor = str(connection.getType())
        declared: frozenset[str] = getattr(self, "capabilities", frozenset())
        return declared - MISSING_BY_HYPERVISOR.get(hypervisor, frozenset())

    @contextlib.contextmanager
    def _using(self, host: HostRef, action: str) -> Iterator[libvirt.virConnect]:
        with self.connections.use(host.uri, f"{action} on {host.name}") as connection:
            yield connection


def ignoring(*codes: int) -> contextlib.AbstractContextManager[None]:
    """Suppress libvirt errors of the given codes (an object already gone, a domain already stopped)."""
    return _Ignoring(frozenset(codes))


class _Ignoring(contextlib.AbstractContextManager[None]):
    def __init__(self, codes: frozenset[int]) -> None:
        self.codes = codes

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> bool:
        return isinstance(error, libvirt.libvirtError) and error_code(error) in self.codes


def domain_facts(domain: libvirt.virDomain) -> tuple[Ownership | None, tuple[str, ...]]:
    """What a domain's definition says that its stats do not: its owner and the MAC of each NIC, in order.
    One round trip (the XML), read once per domain by the monitoring driver: neither changes until the
    domain is defined again."""
    document = ET.fromstring(domain.XMLDesc(0))
    macs = tuple(
        str(mac.get("address")).lower() for mac in document.findall("./devices/interface/mac") if mac.get("address")
    )
    return OwnerElement.parse(document), macs


# --- states ----------------------------------------------------------------------------------------------

_PAUSED_IN_TRANSIT = frozenset(
    getattr(libvirt, reason)
    for reason in (
        "VIR_DOMAIN_PAUSED_MIGRATION",
        "VIR_DOMAIN_PAUSED_SAVE",
        "VIR_DOMAIN_PAUSED_DUMP",
        "VIR_DOMAIN_PAUSED_SHUTTING_DOWN",
        "VIR_DOMAIN_PAUSED_SNAPSHOT",
        "VIR_DOMAIN_PAUSED_STARTING_UP",
        "VIR_DOMAIN_PAUSED_POSTCOPY",
    )
    if hasattr(libvirt, reason)
)


def live_state(state: int, reason: int = 0) -> VMLiveState:
    """libvirt's (state, reason) as the project's state: the one place where the two vocabularies meet."""
    if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
        return VMLiveState.RUNNING
    if state == libvirt.VIR_DOMAIN_PAUSED:
        return VMLiveState.TRANSITIONING if reason in _PAUSED_IN_TRANSIT else VMLiveState.SUSPENDED
    if state == libvirt.VIR_DOMAIN_PMSUSPENDED:
        return VMLiveState.SUSPENDED
    if state == libvirt.VIR_DOMAIN_SHUTDOWN:
        return VMLiveState.TRANSITIONING
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        return VMLiveState.CRASHED if reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED else VMLiveState.STOPPED
    if state == libvirt.VIR_DOMAIN_CRASHED:
        return VMLiveState.CRASHED
    return VMLiveState.UNKNOWN


def pool_definition(pool: libvirt.virStoragePool) -> str:
    """A pool's XML as it is defined (what it will be when it next starts: a path defined again by hand while it
    runs shows here at once). The hypervisors that do not keep the two apart (libvirt's test driver refuses the
    flag) answer the one they have."""
    try:
        return str(pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE))
    except libvirt.libvirtError as error:
        if error_code(error) not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise
        return str(pool.XMLDesc(0))
