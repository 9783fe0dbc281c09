"""A third-party driver as a plugin would ship it, loaded through an entry point by test_registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from nebctl.core.families import Family
from nebctl.drivers.states import HostLiveState
from nebctl.drivers.types import HostProbe, HostRef, VMStatus


class EchoMonitoring:
    name: ClassVar[str] = "echo"
    family: ClassVar[Family] = Family.MONITORING
    capabilities: ClassVar[frozenset[str]] = frozenset({"probe_host"})

    def __init__(self, context: Any) -> None:
        self.options = dict(context.options)

    def probe_host(self, host: HostRef) -> HostProbe:
        return HostProbe(name=host.name, state=HostLiveState.ONLINE, cpus=int(self.options.get("cpus", 1)))

    def probe_vms(self, host: HostRef) -> Sequence[VMStatus]:
        return []


class Incomplete:
    name: ClassVar[str] = "half"
    family: ClassVar[Family] = Family.MONITORING
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def probe_host(self, host: HostRef) -> HostProbe:
        raise NotImplementedError
