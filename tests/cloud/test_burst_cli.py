"""manifests/examples-burst through the nebctl CLI, with its cloud host on moto's EC2 server on loopback: the
overflow VMs land on the cloud host as the plan says, booting from their Image's AMI for the region, their NIC
an interface in the network's subnet behind the security group's EC2 group (its rules as the manifest says);
showback prices them per instance-hour; a stop behind nebctl's back is drift; and a destroy leaves no instance,
security group or tag of nebctl's behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nebctl.accounting.usage import month_of
from nebctl.database import Store
from tests.support.ec2 import CREDENTIALS, LocalEC2

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "manifests" / "examples-burst"
IMAGE_AMI = "ami-0a1b2c3d4e5f60718"  # examples-burst's debian-12 in eu-west-1 (not the config's default AMI)
INSTANCE_HOUR = {"t3.large": 0.0832, "eu-west-1.t3.large": 0.0912}


def nebctl(tmp_path: Path, *args: str, codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would; ``codes`` are the exit codes that mean success (diff: 2 for changes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # only the config's credentials
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nebctl",
            "--db",
            f"sqlite:///{tmp_path / 'state.db'}",
            "--config",
            str(tmp_path / "config.yaml"),
            *args,
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    if result.returncode not in codes:
        raise AssertionError(f"nebctl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def live_instances(ec2: LocalEC2) -> dict[str, dict[str, Any]]:
    """nebctl's instances that are not terminated, by their nebctl:name tag."""
    reply = ec2.client().describe_instances()
    found = {}
    for reservation in reply["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            if instance["State"]["Name"] != "terminated" and "nebctl:name" in tags:
                found[tags["nebctl:name"]] = instance
    return found


@pytest.fixture
def configured(tmp_path: Path, ec2: LocalEC2) -> Path:
    config = {
        "state_dir": str(tmp_path / "sim"),
        "drivers": {"ec2": {"endpoint": ec2.url, **CREDENTIALS, "ami": "ami-12c6146b", "poll_interval": 0.05}},
        "pricing": {"vcpu_hour": 0.02, "memory_gib_hour": 0.01, "instance_hour": INSTANCE_HOUR},
    }
    (tmp_path / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    return tmp_path


def test_overflow_bursts_to_the_cloud_drift_is_seen_and_destroy_leaves_nothing(configured: Path, ec2: LocalEC2) -> None:
    tmp_path = configured
    plan = nebctl(tmp_path, "diff", "-f", str(EXAMPLE), codes=(2,)).stdout
    # Worked out by hand: onprem-1 has 8Gi; the two 3Gi workers first by name and the 1Gi database fill 7Gi, the
    # other two workers burst, each as t3.large (t3.small's 2Gi is too small for 3Gi).
    for name in ("worker-3", "worker-4"):
        assert (
            f"# vm/{name} will be created (instance type t3.large; bursting: no host of a lower tier than 1 has room"
            in plan
        )
    nebctl(tmp_path, "apply", "--yes", "-f", str(EXAMPLE))

    instances = live_instances(ec2)
    assert sorted(instances) == ["worker-3", "worker-4"]
    client = ec2.client()
    (subnet,) = [s for s in client.describe_subnets()["Subnets"] if s["CidrBlock"] == "10.0.10.0/24"]
    (group,) = [g for g in client.describe_security_groups()["SecurityGroups"] if _tags(g).get("nebctl:name") == "web"]
    for instance in instances.values():
        tags = _tags(instance)
        assert instance["InstanceType"] == "t3.large"
        assert instance["State"]["Name"] == "running"
        assert instance["ImageId"] == IMAGE_AMI
        assert (tags["nebctl:stack"], tags["nebctl:kind"], tags["nebctl:host"]) == (
            "examples-burst",
            "VirtualMachine",
            "aws-eu",
        )
        # The NIC on lan: one interface, in lan's subnet, with an address of lan's range, behind web's group.
        (interface,) = instance["NetworkInterfaces"]
        assert interface["SubnetId"] == subnet["SubnetId"]
        assert 10 <= int(interface["PrivateIpAddress"].rsplit(".", 1)[1]) <= 200
        assert interface["PrivateIpAddress"].startswith("10.0.10.")
        assert [g["GroupId"] for g in interface["Groups"]] == [group["GroupId"]]
    # web's rules, as the manifest states them: ssh from 10.0.0.0/8, http and https from anywhere.
    rules = sorted(
        (p["IpProtocol"], p["FromPort"], p["ToPort"], r["CidrIp"])
        for p in group["IpPermissions"]
        for r in p["IpRanges"]
    )
    assert rules == [("tcp", 22, 22, "10.0.0.0/8"), ("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0")]
    assert "onprem-1" in nebctl(tmp_path, "get", "vm", "worker-1").stdout

    # Showback: the cloud VMs per instance-hour of t3.large in eu-west-1 (0.0912), no memory cost; the local VMs
    # per vCPU-hour (0.02) and GiB-hour (0.01), as the config says.
    nebctl(tmp_path, "showback", "-o", "json")
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        priced = {row.name: row for row in store.list_showback(month_of(datetime.now(UTC)))}
    for name in ("worker-3", "worker-4"):
        row = priced[name]
        assert (row.host, row.instance_type, row.memory_cost) == ("aws-eu", "t3.large", 0.0)
        assert row.cpu_cost == pytest.approx((row.running_hours + row.stopped_hours) * 0.0912, rel=1e-12)
    for name in ("db", "worker-1", "worker-2"):
        row = priced[name]
        assert (row.host, row.instance_type) == ("onprem-1", None)
        memory_gib = 1 if name == "db" else 3
        assert row.cpu_cost == pytest.approx(row.running_hours * 1 * 0.02, rel=1e-12)
        assert row.memory_cost == pytest.approx(row.running_hours * memory_gib * 0.01, rel=1e-12)

    ec2.client().stop_instances(InstanceIds=[instances["worker-3"]["InstanceId"]])
    drift = nebctl(tmp_path, "diff", "-f", str(EXAMPLE), codes=(2,)).stdout
    assert "vm/worker-3 was stopped; it will be started" in drift
    nebctl(tmp_path, "apply", "--yes", "-f", str(EXAMPLE))
    assert live_instances(ec2)["worker-3"]["State"]["Name"] == "running"

    nebctl(tmp_path, "destroy", "--yes", "-f", str(EXAMPLE))
    assert live_instances(ec2) == {}
    # What is left in the region is the default VPC and its own objects: no group, subnet, interface or VPC
    # nebctl made, and no object with a nebctl tag. (moto keeps the tags of deleted objects in DescribeTags, so
    # the objects that exist are read.)
    existing = {
        "security-group": client.describe_security_groups()["SecurityGroups"],
        "subnet": client.describe_subnets()["Subnets"],
        "network-interface": client.describe_network_interfaces()["NetworkInterfaces"],
        "vpc": client.describe_vpcs()["Vpcs"],
        "instance": [i for r in client.describe_instances()["Reservations"] for i in r["Instances"]],
    }
    assert [g["GroupName"] for g in existing["security-group"]] == ["default"]
    assert [v["IsDefault"] for v in existing["vpc"]] == [True]
    assert existing["network-interface"] == []
    assert all(s["VpcId"] == existing["vpc"][0]["VpcId"] for s in existing["subnet"])
    tagged = {
        kind: [item for item in items if any(key.startswith("nebctl:") for key in _tags(item))]
        for kind, items in existing.items()
    }
    assert all(i["State"]["Name"] == "terminated" for i in tagged.pop("instance"))
    assert tagged == {"security-group": [], "subnet": [], "network-interface": [], "vpc": []}


def _tags(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def test_the_instance_type_placement_chose_is_the_one_launched(configured: Path, ec2: LocalEC2) -> None:
    """One t3.medium in the map: the first 3Gi VM (by name) takes it, the second the next type up, t3.large; the
    deploy launches what placement chose, not the map's smallest type again."""
    tmp_path = configured
    manifests = tmp_path / "burst"
    manifests.mkdir()
    documents = [
        "apiVersion: nebctl/v1\nkind: Host\nmetadata: {name: small}\nspec: {uri: 'sim://small?cpus=1&memory=1Gi'}\n",
        "apiVersion: nebctl/v1\nkind: Host\nmetadata: {name: cloud}\n"
        "spec: {uri: 'ec2://eu-west-1', cloud: {capacity: {t3.medium: 1, t3.large: 2}}}\n",
        *(
            f"apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {{name: {name}}}\nspec: {{vcpu: 1, memory: 3Gi}}\n"
            for name in ("a", "b")
        ),
    ]
    (manifests / "all.yaml").write_text("---\n".join(documents))
    nebctl(tmp_path, "apply", "--yes", "-f", str(manifests))
    assert {name: i["InstanceType"] for name, i in live_instances(ec2).items()} == {"a": "t3.medium", "b": "t3.large"}
    nebctl(tmp_path, "destroy", "--yes", "-f", str(manifests))
    assert live_instances(ec2) == {}
