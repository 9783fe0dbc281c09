"""manifests/examples-burst through the nebctl CLI, with its cloud host on moto's EC2 server on loopback: the
overflow VMs land on the cloud host as the plan says, a stop behind nebctl's back is drift, and a destroy leaves
no instance, security group or tag of nebctl's behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.ec2 import CREDENTIALS, LocalEC2

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "manifests" / "examples-burst"


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
    for instance in instances.values():
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert instance["InstanceType"] == "t3.large"
        assert instance["State"]["Name"] == "running"
        assert (tags["nebctl:stack"], tags["nebctl:kind"], tags["nebctl:host"]) == (
            "examples-burst",
            "VirtualMachine",
            "aws-eu",
        )
    assert "onprem-1" in nebctl(tmp_path, "get", "vm", "worker-1").stdout

    ec2.client().stop_instances(InstanceIds=[instances["worker-3"]["InstanceId"]])
    drift = nebctl(tmp_path, "diff", "-f", str(EXAMPLE), codes=(2,)).stdout
    assert "vm/worker-3 was stopped; it will be started" in drift
    nebctl(tmp_path, "apply", "--yes", "-f", str(EXAMPLE))
    assert live_instances(ec2)["worker-3"]["State"]["Name"] == "running"

    nebctl(tmp_path, "destroy", "--yes", "-f", str(EXAMPLE))
    client = ec2.client()
    assert live_instances(ec2) == {}
    groups = [g for g in client.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"]
    assert [g for g in groups if any(t["Key"].startswith("nebctl:") for t in g.get("Tags", []))] == []
    tags = client.describe_tags()["Tags"]
    terminated = {i["InstanceId"] for r in client.describe_instances()["Reservations"] for i in r["Instances"]}
    assert [t for t in tags if t["Key"].startswith("nebctl:") and t["ResourceId"] not in terminated] == []


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
