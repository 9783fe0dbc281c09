"""Drift of objects changed outside nebctl on a host of the exec driver (the example programs of
examples/exec-drivers, whose ``list`` gives each object's attributes), through the CLI: the example's state file
is edited as a person would edit the backend, ``diff`` shows each change under "Changed outside nebctl" with the
sentence written out below, ``apply`` repairs exactly those objects on that host, and the next diff has nothing
to do."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.contract.conftest import EXAMPLE_DRIVERS
from tests.support.drills import Workspace

MANIFESTS = """\
apiVersion: nebctl/v1
kind: Host
metadata: {name: node1}
spec: {uri: "exec://example"}
---
apiVersion: nebctl/v1
kind: Datastore
metadata: {name: local}
spec: {type: dir, path: /srv/local}
---
apiVersion: nebctl/v1
kind: Image
metadata: {name: debian}
spec: {source: SOURCE, format: qcow2, datastore: local}
---
apiVersion: nebctl/v1
kind: Network
metadata: {name: lan}
spec: {mode: nat, cidr: 10.30.0.0/24, range: {first: 10.30.0.10, last: 10.30.0.20}}
---
apiVersion: nebctl/v1
kind: SecurityGroup
metadata: {name: web}
spec:
  rules:
    - {direction: in, protocol: tcp, ports: [22]}
"""

EXPECTED = [
    "# datastore/local pool local was changed outside nebctl on node1: path /srv/local -> /srv/moved; "
    "its pool will be defined again there",
    "# image/debian volume image-debian was changed outside nebctl on node1: format qcow2 -> raw; "
    "it will be deleted and created again there",
    "# network/lan network lan was changed outside nebctl on node1: range 10.30.0.10-10.30.0.20 -> "
    "10.30.0.10-10.30.0.99; it will be deleted and created again there",
    "# securitygroup/web filter nebctl-sg-web was changed outside nebctl on node1: rules in tcp 22 0.0.0.0/0 -> "
    "in tcp 22 0.0.0.0/0, in tcp 80 0.0.0.0/0; its rules will be set again there",
]
REPAIRS = [
    "datastore/local:create_datastore:node1",
    "image/debian:delete:node1",
    "image/debian:import_image:node1",
    "network/lan:create:node1",
    "network/lan:delete:node1",
    "securitygroup/web:update_sg:node1",
]


def test_objects_changed_on_an_exec_host_are_shown_and_repaired(tmp_path: Path) -> None:
    source = tmp_path / "debian.qcow2"
    source.write_bytes(b"QFI\xfb" + b"\0" * 1024)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "all.yaml").write_text(MANIFESTS.replace("SOURCE", str(source)), encoding="utf-8")
    state = tmp_path / "example-state"
    workspace = Workspace(
        tmp_path / "ws",
        manifests=manifests,
        stack="exec",
        settings_overrides={
            "driver_dir": str(EXAMPLE_DRIVERS),
            "drivers": {"exec": {"env": {"NEBCTL_EXAMPLE_STATE": str(state)}, "timeout": 30}},
        },
    )
    applied = workspace.apply()
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert workspace.diff().returncode == 0

    host_file = state / "node1.json"
    held = json.loads(host_file.read_text())
    held["networks"]["lan"]["range_last"] = "10.30.0.99"
    held["groups"]["nebctl-sg-web"].append({"direction": "in", "protocol": "tcp", "ports": ["80"], "cidr": "0.0.0.0/0"})
    held["datastores"]["local"]["path"] = "/srv/moved"
    held["volumes"]["local/image-debian"]["format"] = "raw"
    host_file.write_text(json.dumps(held))

    diff = workspace.diff()
    assert diff.returncode == 2, diff.stdout + diff.stderr
    outside = diff.stdout.split("Changed outside nebctl:")[1].split("Plan:")[0]
    assert sorted(line.strip() for line in outside.strip().splitlines()) == EXPECTED
    repaired = workspace.apply()
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert sorted(re.findall(r"\] +[\d.]+s (\S+) succeeded", repaired.stdout)) == REPAIRS
    again = workspace.diff()
    assert again.returncode == 0, again.stdout + again.stderr
