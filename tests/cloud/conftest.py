"""Fixtures of the EC2 tests: the local EC2 endpoint (moto on loopback behind the fault proxy), reset per test,
and the EC2 drivers built through the registry for a host on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from nebctl.drivers.registry import HostDriverSet, build_registry
from nebctl.drivers.types import HostRef
from tests.cloud.contract_drivers import ec2_settings, local_ec2
from tests.support.ec2 import REGION, LocalEC2


@pytest.fixture
def ec2() -> LocalEC2:
    endpoint = local_ec2()
    endpoint.reset()
    return endpoint


@dataclass
class Cloud:
    endpoint: LocalEC2
    host: HostRef
    drivers: HostDriverSet

    @property
    def direct(self) -> Any:
        """boto3 straight to moto: the tests' own view, and someone acting behind nebctl's back."""
        return self.endpoint.client()


@pytest.fixture
def cloud(ec2: LocalEC2) -> Iterator[Cloud]:
    registry = build_registry(ec2_settings(installation="test-install"), entry_points=False)
    host = HostRef("burst", f"ec2://{REGION}?endpoint={ec2.url}")
    try:
        yield Cloud(ec2, host, registry.for_host(host))
    finally:
        registry.close()
