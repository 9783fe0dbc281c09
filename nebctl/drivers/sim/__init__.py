"""The ``sim`` driver: a simulated fleet of hosts in a local SQLite file, implementing every driver family.

It is the embedded default (hosts with ``sim://NAME`` URIs), the test bed of the controller and the ground of
the benchmarks and fault drills. The registry registers ``DRIVER_CLASSES``; tests and ``nebctl sim`` use
``SimFleet`` (through ``open_fleet``) to cause drift and to set latency and faults (``Fault``, ``Latency``).
"""

from __future__ import annotations

from nebctl.drivers.sim.behaviour import Distribution, Fault, FaultKind, Latency
from nebctl.drivers.sim.compute import SimMonitoring, SimVirtualization
from nebctl.drivers.sim.fleet import SimFleet, fleet_path, host_shape, open_fleet
from nebctl.drivers.sim.networking import SimNetwork
from nebctl.drivers.sim.services import SimAuthorization, SimHooks, SimMarketplace
from nebctl.drivers.sim.storage import SimStorage

DRIVER_CLASSES: tuple[type[object], ...] = (
    SimVirtualization,
    SimStorage,
    SimNetwork,
    SimMonitoring,
    SimAuthorization,
    SimMarketplace,
    SimHooks,
)

__all__ = [
    "DRIVER_CLASSES",
    "Distribution",
    "Fault",
    "FaultKind",
    "Latency",
    "SimAuthorization",
    "SimFleet",
    "SimHooks",
    "SimMarketplace",
    "SimMonitoring",
    "SimNetwork",
    "SimStorage",
    "SimVirtualization",
    "fleet_path",
    "host_shape",
    "open_fleet",
]
