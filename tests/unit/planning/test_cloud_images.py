"""A VM on a cloud host boots from its first disk's Image as the cloud has it: the Image's ``cloud.ec2`` AMI for
the host's region (else its AMI for any region). Cloud hosts keep no datastores, so no datastore, image import
or disk clone is planned there; a local host beside it gets them as before."""

from __future__ import annotations

import pytest

from nebctl.controller.planning import PlanRequest, make_plan
from nebctl.controller.planning.request import PlanError
from nebctl.core.plans import Plan
from nebctl.drivers.states import HostLiveState
from nebctl.reconcilers.base import LiveView
from nebctl.schemas.diagnostics import ManifestError
from tests.unit.planning.world import documents, probe

HOSTS = """
apiVersion: nebctl/v1
kind: Host
metadata: {name: aws}
spec:
  uri: ec2://eu-west-1
  cloud:
    capacity: {t3.small: 4}
---
apiVersion: nebctl/v1
kind: Host
metadata: {name: onprem}
spec: {uri: "sim://onprem"}
---
apiVersion: nebctl/v1
kind: Datastore
metadata: {name: local}
spec: {type: dir, path: /var/lib/ds/local}
"""

IMAGE = """
apiVersion: nebctl/v1
kind: Image
metadata: {{name: debian}}
spec:
  source: /images/debian.qcow2
  format: qcow2
  datastore: local
  {cloud}
"""


def vm(name: str, host: str, disks: int = 1) -> str:
    listed = ", ".join("{image: debian, size: 10Gi}" if i == 0 else "{size: 1Gi}" for i in range(disks))
    return f"""
apiVersion: nebctl/v1
kind: VirtualMachine
metadata: {{name: {name}}}
spec: {{vcpu: 1, memory: 1Gi, disks: [{listed}], placement: {{host: {host}}}}}
"""


def plan(cloud: str, *vms: str) -> Plan:
    docs = documents(HOSTS, IMAGE.format(cloud=cloud), *vms)
    live = LiveView(hosts={"aws": probe("aws", HostLiveState.ONLINE), "onprem": probe("onprem")})
    return make_plan(PlanRequest(stack="demo", documents=docs, records={}, live=live))


REGIONAL = "cloud: {ec2: {ami: ami-0123456789abcdef0, regions: {eu-west-1: ami-0aaaaaaaaaaaaaaaa}}}"


def test_a_cloud_vm_boots_from_the_regional_ami_and_nothing_is_stored_on_the_cloud() -> None:
    result = plan(REGIONAL, vm("burst", "aws"), vm("local", "onprem"))
    by_id = {action.id: action for action in result.actions}
    assert by_id["vm/burst:deploy"].params["image"] == "ami-0aaaaaaaaaaaaaaaa"
    assert by_id["vm/burst:deploy"].params["disks"] == []
    # Storage only on the local host: the datastore, the image import and the local VM's clone.
    storage = sorted((action.id, action.host) for action in result.actions if action.family.value == "storage")
    assert storage == [
        ("datastore/local:create_datastore:onprem", "onprem"),
        ("image/debian:import_image:onprem", "onprem"),
        ("vm/local:disk0:clone", "onprem"),
    ]
    assert "image" not in by_id["vm/local:deploy"].params


def test_a_region_without_its_own_ami_takes_the_one_for_any_region() -> None:
    result = plan(
        "cloud: {ec2: {ami: ami-0123456789abcdef0, regions: {us-east-1: ami-0bbbbbbbbbbbbbbbb}}}", vm("b", "aws")
    )
    deploy = next(action for action in result.actions if action.id == "vm/b:deploy")
    assert deploy.params["image"] == "ami-0123456789abcdef0"


def test_an_image_without_a_cloud_source_leaves_the_ami_to_the_drivers_default() -> None:
    result = plan("", vm("b", "aws"))
    deploy = next(action for action in result.actions if action.id == "vm/b:deploy")
    assert "image" not in deploy.params


def test_a_cloud_vm_with_a_second_disk_is_refused() -> None:
    with pytest.raises(
        PlanError, match="placed on cloud host aws, which keeps no datastores: a VM there has at most one disk"
    ):
        plan(REGIONAL, vm("b", "aws", disks=2))


@pytest.mark.parametrize(
    ("cloud", "message"),
    [
        ("cloud: {ec2: {}}", "Image/debian: spec.cloud.ec2: give 'ami', 'regions' or both"),
        ("cloud: {ec2: {ami: ubuntu}}", "Image/debian: spec.cloud.ec2.ami: invalid value 'ubuntu'"),
        (
            "cloud: {ec2: {regions: {eu-west-1: ami-1}}}",
            r"Image/debian: spec.cloud.ec2.regions.eu-west-1: invalid value",
        ),
    ],
)
def test_a_bad_cloud_source_is_an_error_naming_the_field(cloud: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        documents(HOSTS, IMAGE.format(cloud=cloud))
