"""Cloud hosts in manifests: ec2://REGION needs a capacity map of known instance types; placement's burst and
instanceType are checked where they are written."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from nebctl.schemas.models import Host, Placement


def host(spec: dict[str, Any]) -> Host:
    return Host.model_validate({"apiVersion": "nebctl/v1", "kind": "Host", "metadata": {"name": "h"}, "spec": spec})


def test_a_cloud_host_with_its_capacity_map_ranks_after_local_hosts_by_default() -> None:
    cloud = host({"uri": "ec2://eu-west-1", "cloud": {"capacity": {"t3.small": 10, "t3.large": 4}}})
    assert cloud.spec.cloud is not None and dict(cloud.spec.cloud.capacity) == {"t3.small": 10, "t3.large": 4}
    assert (cloud.spec.is_cloud, cloud.spec.effective_tier) == (True, 1)
    assert host({"uri": "sim://kvm1"}).spec.effective_tier == 0
    assert host({"uri": "ec2://eu-west-1", "tier": 0, "cloud": {"capacity": {"t3.small": 1}}}).spec.effective_tier == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"uri": "ec2://eu-west-1"}, "a cloud host needs 'cloud.capacity'"),
        ({"uri": "ec2://", "cloud": {"capacity": {"t3.small": 1}}}, "needs a region"),
        ({"uri": "ec2://eu-west-1", "cloud": {"capacity": {"t9.huge": 1}}}, "unknown instance type t9.huge"),
        ({"uri": "ec2://eu-west-1", "cloud": {"capacity": {"t3.small": -1}}}, "greater than or equal to 0"),
        # Counts are bounded, so that a spec never holds an integer past what its record reads back exactly.
        ({"uri": "ec2://eu-west-1", "cloud": {"capacity": {"t3.small": 10**20}}}, "less than or equal to 1000000"),
        ({"uri": "ec2://eu-west-1", "cloud": {"capacity": {}}}, "at least 1 item"),
        ({"uri": "sim://kvm1", "cloud": {"capacity": {"t3.small": 1}}}, "'cloud' is for cloud hosts"),
        ({"uri": "ec2://eu-west-1", "cloud": {"capacity": {"t3.small": 1}, "accessKey": "x"}}, "Extra inputs"),
    ],
)
def test_bad_cloud_hosts_are_refused_saying_what(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        host(spec)
    assert message in str(raised.value)


def test_placement_burst_and_instance_type() -> None:
    assert Placement(burst="never").burst == "never"
    with pytest.raises(ValidationError, match=r"unknown instance type 'x1\.mega'"):
        Placement(instanceType="x1.mega")
    with pytest.raises(ValidationError):
        Placement(burst="sometimes")
