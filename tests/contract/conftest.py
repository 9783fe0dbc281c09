"""The driver set every contract test runs against: one parametrised fixture over every driver.

The contract suite (this directory) checks what each driver action *means*, whatever the backend: deploying
twice gives one VM, actions on a missing object raise ``NotFoundError``, state transitions are the documented
ones, a host probe returns every VM of the host in one call, storage and network actions behave alike.

How to add a driver (the libvirt one, EC2, a plugin): write a builder, a context manager taking the test's
``tmp_path`` and yielding a ``DriverSet`` (the four host-family drivers, the ``HostRef`` they act on, and a
``second_host`` to migrate to: migration is part of the contract), then add one ``pytest.param`` to
``DRIVER_PARAMS`` naming it (with ``marks=`` for what it needs, e.g. ``pytest.mark.libvirt``). Build the drivers
through the registry when you can, as the builders below do, so the suite also checks the registry wiring.
Nothing else changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nebctl.core.settings import Settings
from nebctl.drivers.registry import build_registry
from nebctl.drivers.types import HostRef

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DRIVERS = REPO_ROOT / "examples" / "exec-drivers"


@dataclass
class DriverSet:
    name: str
    host: HostRef
    virtualization: Any
    storage: Any
    network: Any
    monitoring: Any
    datastore_path: str  # an absolute directory the storage driver may use for a datastore
    second_host: HostRef | None = None  # a migration target: the migration contract fails without one...
    no_second_host: str = ""  # ...unless this says why (a daemon that could not start), then it skips outside CI


def capabilities_on(driver: Any, host: HostRef) -> frozenset[str]:
    """What ``driver`` declares it can do on ``host``: its per-host answer where it gives one (a libvirt backend
    may lack what the driver implements, e.g. the test hypervisor's missing nwfilter), else its class's."""
    per_host = getattr(driver, "capabilities_on", None)
    return frozenset(per_host(host) if per_host is not None else driver.capabilities)


@contextlib.contextmanager
def build_sim(tmp_path: Path) -> Iterator[DriverSet]:
    registry = build_registry(Settings(state_dir=tmp_path / "state"), entry_points=False)
    host = HostRef("kvm1", "sim://kvm1?cpus=8&memory=32Gi&disk=500Gi")
    drivers = registry.for_host(host)
    try:
        yield DriverSet(
            "sim",
            host,
            drivers.virtualization,
            drivers.storage,
            drivers.network,
            drivers.monitoring,
            datastore_path=str(tmp_path / "pool"),
            second_host=HostRef("kvm2", "sim://kvm2"),
        )
    finally:
        registry.close()


@contextlib.contextmanager
def build_exec(tmp_path: Path) -> Iterator[DriverSet]:
    settings = Settings(
        driver_dir=EXAMPLE_DRIVERS,
        drivers={"exec": {"env": {"NEBCTL_EXAMPLE_STATE": str(tmp_path / "example-state")}, "timeout": 20}},
    )
    registry = build_registry(settings, entry_points=False)
    host = HostRef("node1", "exec://example")
    drivers = registry.for_host(host)
    try:
        yield DriverSet(
            "exec",
            host,
            drivers.virtualization,
            drivers.storage,
            drivers.network,
            drivers.monitoring,
            datastore_path=str(tmp_path / "pool"),
            second_host=HostRef("node2", "exec://example"),  # the same programs, another state file
        )
    finally:
        registry.close()


BUILDERS: dict[str, Callable[[Path], contextlib.AbstractContextManager[DriverSet]]] = {
    "sim": build_sim,
    "exec": build_exec,
}

DRIVER_PARAMS = [pytest.param("sim"), pytest.param("exec")]

with contextlib.suppress(ImportError):  # libvirt-python missing: the libvirt sets are simply not there
    from tests.libvirt.contract_drivers import LIBVIRT_BUILDERS, LIBVIRT_PARAMS

    BUILDERS.update(LIBVIRT_BUILDERS)
    DRIVER_PARAMS += LIBVIRT_PARAMS

# The EC2 drivers against moto's EC2 server on loopback (a dev dependency, so always there).
from tests.cloud.contract_drivers import EC2_BUILDERS  # noqa: E402  # after the libvirt sets, like them optional

BUILDERS.update(EC2_BUILDERS)
DRIVER_PARAMS += [pytest.param("ec2")]

# Sets whose host keeps no datastores (a cloud VM's disk comes from its machine image): the storage contract is
# not theirs, and their storage driver refuses every action with CapabilityError (tests/cloud checks that).
WITHOUT_STORAGE = frozenset({"ec2"})
STORAGE_PARAMS = [param for param in DRIVER_PARAMS if param.values[0] not in WITHOUT_STORAGE]
# Sets whose VMs' NICs take the MACs nebctl gives them, which their statuses report (an EC2 instance's network
# interfaces have the cloud's own MACs, and its status does not list them).
WITHOUT_NIC_MACS = frozenset({"ec2"})
NIC_MAC_PARAMS = [param for param in DRIVER_PARAMS if param.values[0] not in WITHOUT_NIC_MACS]


@pytest.fixture(params=DRIVER_PARAMS)
def drivers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DriverSet]:
    with BUILDERS[request.param](tmp_path) as driver_set:
        yield driver_set
