"""The EC2 entry of the shared contract suite (tests/contract/conftest.py imports it).

The EC2 drivers, built through the registry for a host ``ec2://eu-west-1?endpoint=...`` whose endpoint is
moto's EC2 server on loopback (tests/support/ec2.py), reset before each test. EC2 has no second host to
migrate to (the driver refuses migration by declaration) and no storage of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from nebctl.core.settings import Settings
from nebctl.drivers.registry import build_registry
from nebctl.drivers.types import HostRef
from tests.support.ec2 import CREDENTIALS, REGION, LocalEC2, start_local_ec2

if TYPE_CHECKING:
    from tests.contract.conftest import DriverSet

_ENDPOINT: list[LocalEC2] = []
_RUNNING: list[Iterator[LocalEC2]] = []


def local_ec2() -> LocalEC2:
    """The process's one local EC2 endpoint, started on first use (stopped when the interpreter exits)."""
    if not _ENDPOINT:
        generator = start_local_ec2()
        _ENDPOINT.append(next(generator))
        _RUNNING.append(generator)
    return _ENDPOINT[0]


def ec2_settings(**options: object) -> Settings:
    """The config file's drivers.ec2 for tests: moto's credentials, an AMI, quick polling."""
    return Settings(drivers={"ec2": {**CREDENTIALS, "ami": "ami-12c6146b", "poll_interval": 0.05, **options}})


@contextlib.contextmanager
def build_ec2(tmp_path: Path) -> Iterator[DriverSet]:
    from tests.contract.conftest import DriverSet

    endpoint = local_ec2()
    endpoint.reset()
    registry = build_registry(ec2_settings(), entry_points=False)
    host = HostRef("cloud", f"ec2://{REGION}?endpoint={endpoint.url}")
    drivers = registry.for_host(host)
    try:
        yield DriverSet(
            "ec2",
            host,
            drivers.virtualization,
            drivers.storage,
            drivers.network,
            drivers.monitoring,
            datastore_path=str(tmp_path / "pool"),
            second_host=None,
            no_second_host="",
        )
    finally:
        registry.close()


EC2_BUILDERS = {"ec2": build_ec2}
