"""The EC2 drivers beyond the contract: what lands on EC2 (types, tags, user data, rules), and how delays and
faults injected between boto3 and moto's EC2 server come out (pending instances, timeouts, throttling,
capacity, a bad AMI, an endpoint that does not answer)."""

from __future__ import annotations

import base64
import dataclasses
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nebctl.drivers import context
from nebctl.drivers.ec2.failures import convert
from nebctl.drivers.errors import (
    CapabilityError,
    DriverTimeoutError,
    NotFoundError,
    PermanentError,
    TemporaryError,
)
from nebctl.drivers.registry import build_registry
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import (
    CloudInitData,
    DatastoreDefinition,
    HostRef,
    SecurityGroupDefinition,
    SecurityRuleDefinition,
)
from tests.cloud.conftest import Cloud
from tests.cloud.contract_drivers import ec2_settings
from tests.contract.values import GiB, a_network, a_nic, a_vm
from tests.support.ec2 import Fault


def _instances(cloud: Cloud, uuid: str) -> list[dict[str, Any]]:
    reply = cloud.direct.describe_instances(Filters=[{"Name": "tag:nebctl:uuid", "Values": [uuid]}])
    return [i for r in reply["Reservations"] for i in r["Instances"] if i["State"]["Name"] != "terminated"]


def _tags(item: dict[str, object]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item["Tags"]}  # type: ignore[attr-defined]


# --- what lands on EC2 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vcpu", "memory", "expected"),
    [
        (1, GiB // 2, "t3.nano"),  # 2 vCPU, 0.5 GiB: the smallest of the table
        (1, GiB, "t3.micro"),
        (2, 3 * GiB, "c5.large"),  # 2 vCPU, 4 GiB like t3.medium: the name breaks the tie
        (4, 8 * GiB, "c5.xlarge"),  # 4 vCPU, 8 GiB: smaller than t3.xlarge's 16 GiB
        (3, 20 * GiB, "r5.xlarge"),  # 4 vCPU, 32 GiB; m5.2xlarge also fits but has 8 vCPU
    ],
)
def test_a_vm_without_a_type_gets_the_smallest_known_type_that_fits(
    cloud: Cloud, vcpu: int, memory: int, expected: str
) -> None:
    vm = a_vm(vcpu=vcpu, memory=memory)
    cloud.drivers.virtualization.deploy(cloud.host, vm)
    [instance] = _instances(cloud, vm.uuid)
    assert instance["InstanceType"] == expected


def test_placement_s_type_the_ami_user_data_and_ownership_tags_reach_the_instance(cloud: Cloud) -> None:
    vm = dataclasses.replace(
        a_vm(), instance_type="m5.large", image="ami-0abcdef1", cloud_init=CloudInitData(user_data="#cloud-config\n")
    )
    status = cloud.drivers.virtualization.deploy(cloud.host, vm)
    [instance] = _instances(cloud, vm.uuid)
    assert (instance["InstanceType"], instance["ImageId"]) == ("m5.large", "ami-0abcdef1")
    tags = _tags(instance)
    assert {k: tags[k] for k in tags if k.startswith("nebctl:")} == {
        "nebctl:host": "burst",
        "nebctl:installation": "test-install",
        "nebctl:stack": "contract",
        "nebctl:kind": "VirtualMachine",
        "nebctl:namespace": "default",
        "nebctl:name": "web-1",
        "nebctl:uuid": vm.uuid,
        "nebctl:vcpu": "1",
        "nebctl:memory": str(GiB),
    }
    assert tags["Name"] == vm.name
    user_data = cloud.direct.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    assert base64.b64decode(user_data["UserData"]["Value"]).decode() == "#cloud-config\n"
    assert status.owner is not None and status.owner.name == "web-1"


def test_nics_launch_on_their_subnet_with_their_address_and_security_groups(cloud: Cloud) -> None:
    net = cloud.drivers.network
    net.create(cloud.host, a_network())
    net.update_sg(
        cloud.host,
        SecurityGroupDefinition(
            name="web",
            rules=(
                SecurityRuleDefinition("in", "tcp", ("22", "8000-8080"), "10.0.0.0/8"),
                SecurityRuleDefinition("in", "icmp"),
            ),
        ),
    )
    vm = a_vm()
    nic = dataclasses.replace(a_nic(ip="10.20.0.33"), security_groups=("web",))
    vm = dataclasses.replace(vm, nics=(nic,))
    net.pre(cloud.host, vm.uuid, nic)
    cloud.drivers.virtualization.deploy(cloud.host, vm)
    [instance] = _instances(cloud, vm.uuid)
    [interface] = instance["NetworkInterfaces"]
    assert interface["PrivateIpAddress"] == "10.20.0.33"
    subnet = cloud.direct.describe_subnets(SubnetIds=[interface["SubnetId"]])["Subnets"][0]
    assert subnet["CidrBlock"] == "10.20.0.0/24"
    [group] = cloud.direct.describe_security_groups(GroupIds=[g["GroupId"] for g in interface["Groups"]])[
        "SecurityGroups"
    ]
    rules = sorted(
        (p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), p["IpRanges"][0]["CidrIp"])
        for p in group["IpPermissions"]
    )
    assert rules == [
        ("icmp", -1, -1, "0.0.0.0/0"),
        ("tcp", 22, 22, "10.0.0.0/8"),
        ("tcp", 8000, 8080, "10.0.0.0/8"),
    ]


def test_a_stop_behind_nebctls_back_shows_in_the_next_probe(cloud: Cloud) -> None:
    vm = a_vm()
    cloud.drivers.virtualization.deploy(cloud.host, vm)
    [instance] = _instances(cloud, vm.uuid)
    cloud.direct.stop_instances(InstanceIds=[instance["InstanceId"]])
    [status] = [s for s in cloud.drivers.monitoring.probe_vms(cloud.host) if s.uuid == vm.uuid]
    assert status.state is VMLiveState.STOPPED


def test_monitoring_is_one_describe_instances_per_host(cloud: Cloud) -> None:
    for name in ("a", "b", "c"):
        cloud.drivers.virtualization.deploy(cloud.host, a_vm(name))
    cloud.endpoint.proxy.clear()
    statuses = cloud.drivers.monitoring.probe_vms(cloud.host)
    assert len(statuses) == 3
    assert cloud.endpoint.proxy.calls == ["DescribeInstances"]


def test_another_host_in_the_same_region_sees_only_its_own_instances(cloud: Cloud) -> None:
    vm = a_vm()
    cloud.drivers.virtualization.deploy(cloud.host, vm)
    other = HostRef("burst-2", cloud.host.uri)
    assert list(cloud.drivers.monitoring.probe_vms(other)) == []
    with pytest.raises(NotFoundError):
        cloud.drivers.virtualization.poll(other, vm.uuid)


def test_a_cloud_host_keeps_no_datastores(cloud: Cloud) -> None:
    with pytest.raises(CapabilityError):
        cloud.drivers.storage.create_datastore(cloud.host, DatastoreDefinition(name="pool", path="/var/pool"))


# --- injected delays and faults -----------------------------------------------------------------------------


def test_deploy_waits_through_pending_until_running(cloud: Cloud) -> None:
    cloud.endpoint.proxy.inject(Fault("DescribeInstances", times=4, pending=True))
    vm = a_vm()
    status = cloud.drivers.virtualization.deploy(cloud.host, vm)
    assert status.state is VMLiveState.RUNNING
    # Four looks saw it pending (the lookup before launch, then three waits), the fifth saw it running.
    assert cloud.endpoint.proxy.calls.count("DescribeInstances") >= 5


def test_a_deploy_past_its_deadline_times_out_and_the_next_deploy_finishes_without_a_second_instance(
    cloud: Cloud,
) -> None:
    cloud.endpoint.proxy.inject(Fault("DescribeInstances", times=10_000, pending=True))
    vm = a_vm()
    with (
        context.calling(context.CallContext(deadline=time.monotonic() + 0.5)),
        pytest.raises(DriverTimeoutError) as raised,
    ):
        cloud.drivers.virtualization.deploy(cloud.host, vm)
    assert raised.value.temporary
    assert len(_instances(cloud, vm.uuid)) == 1  # launched, not yet seen running
    cloud.endpoint.proxy.clear()
    assert cloud.drivers.virtualization.deploy(cloud.host, vm).state is VMLiveState.RUNNING
    assert len(_instances(cloud, vm.uuid)) == 1


@pytest.mark.parametrize(
    ("code", "status"),
    [("RequestLimitExceeded", 503), ("Throttling", 400), ("InsufficientInstanceCapacity", 500)],
)
def test_throttling_and_capacity_are_temporary_and_launch_nothing(cloud: Cloud, code: str, status: int) -> None:
    cloud.endpoint.proxy.inject(Fault("RunInstances", times=1, code=code, status=status))
    vm = a_vm()
    with pytest.raises(TemporaryError) as raised:
        cloud.drivers.virtualization.deploy(cloud.host, vm)
    assert code in str(raised.value)
    assert isinstance(raised.value.__cause__, ClientError)
    assert _instances(cloud, vm.uuid) == []
    # The retry the executor makes for a temporary error succeeds once the fault is gone.
    assert cloud.drivers.virtualization.deploy(cloud.host, vm).state is VMLiveState.RUNNING


@pytest.mark.parametrize("code", ["InvalidAMIID.NotFound", "InvalidAMIID.Malformed"])
def test_a_bad_ami_is_permanent_not_a_missing_vm(cloud: Cloud, code: str) -> None:
    cloud.endpoint.proxy.inject(Fault("RunInstances", times=1, code=code))
    with pytest.raises(PermanentError) as raised:
        cloud.drivers.virtualization.deploy(cloud.host, a_vm())
    assert not raised.value.temporary
    assert not isinstance(raised.value, NotFoundError)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("RequestLimitExceeded", "temporary"),
        ("InsufficientInstanceCapacity", "temporary"),
        ("VcpuLimitExceeded", "temporary"),
        ("InvalidAMIID.NotFound", "permanent"),
        ("InvalidParameterValue", "permanent"),
        ("UnauthorizedOperation", "permanent"),
        ("InvalidInstanceID.NotFound", "not found"),
        ("InvalidGroup.NotFound", "not found"),
        ("IncorrectInstanceState", "conflict"),
        ("DependencyViolation", "conflict"),
    ],
)
def test_error_codes_map_to_typed_errors(code: str, kind: str) -> None:
    error = convert(ClientError({"Error": {"Code": code, "Message": "m"}}, "RunInstances"))
    got = (
        "not found"
        if isinstance(error, NotFoundError)
        else "conflict"
        if type(error).__name__ == "ConflictError"
        else "temporary"
        if error.temporary
        else "permanent"
    )
    assert got == kind


def test_an_endpoint_that_does_not_answer_is_an_error_probe_and_a_temporary_error() -> None:
    registry = build_registry(ec2_settings(), entry_points=False)
    host = HostRef("gone", "ec2://eu-west-1?endpoint=http://127.0.0.1:9")  # the discard port: nothing listens
    try:
        drivers = registry.for_host(host)
        probe = drivers.monitoring.probe_host(host)
        assert probe.state is HostLiveState.ERROR
        assert probe.error and "cannot reach" in probe.error
        with pytest.raises(TemporaryError):
            drivers.virtualization.poll(host, "any")
    finally:
        registry.close()
