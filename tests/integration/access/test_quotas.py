"""Quotas of namespaces and groups, enforced when the CLI plans (the API's plans are tested in
tests/integration/api): the refusal names the limit, the usage by other stacks and the request, and changes
nothing; ``quota list`` shows usage beside the limits. Figures are worked out by hand from the manifests: each
VM of ``vm_manifest`` has 1 vCPU, 512Mi of memory and a 4Gi disk."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

from tests.support.drills import Workspace
from tests.support.serving import FLEET, vm_manifest, write_manifests

# Stack b's own fleet: other hosts, datastore, image and network (objects belong to one stack each).
RENAMES = (("h1", "h3"), ("h2", "h4"), ("local", "local-b"), ("base", "base-b"), ("lan", "lan-b"), ("10.70.", "10.72."))


def _renamed(text: str) -> str:
    for old, new in RENAMES:
        text = text.replace(old, new)
    return text


def _workspace(root: Path) -> Workspace:
    workspace = Workspace(root, manifests=root / "a", stack="a")
    write_manifests(root / "a", [vm_manifest("a-1"), vm_manifest("a-2")])
    (root / "b").mkdir()
    (root / "b" / "00-fleet.yaml").write_text(_renamed(FLEET))
    (root / "b" / "10-vms.yaml").write_text(_renamed(vm_manifest("b-1", memory="1Gi")))
    return workspace


def _apply(workspace: Workspace, stack: str) -> tuple[int, str]:
    result = workspace.run("apply", "-f", str(workspace.root / stack), "--stack", stack, "--yes")
    return result.returncode, result.stdout + result.stderr


def test_namespace_quota(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    assert workspace.run("quota", "set", "namespace", "default", "--vms", "2", "--memory", "1536Mi").returncode == 0
    code, output = _apply(workspace, "a")
    assert code == 0, output
    code, output = _apply(workspace, "b")
    assert code == 1
    assert "namespace default: quota exceeded: VMs: limit 2, in use 2 by other stacks, requested 1 by stack b" in output
    assert (
        "namespace default: quota exceeded: memory: limit 1536Mi, in use 1Gi by other stacks, requested 1Gi by stack b"
        in output
    )
    assert "vCPUs" not in output  # no vCPU limit was set
    with workspace.store() as store:
        assert not [r for r in store.list_resources(stack="b")]  # nothing of b was recorded
    listed = json.loads(workspace.run("quota", "list", "-o", "json").stdout)
    assert listed == [
        {
            "scope": "namespace",
            "name": "default",
            "vms": {"used": 2, "limit": 2},
            "vcpu": {"used": 2, "limit": None},
            "memory": {"used": 1024 * 2**20, "limit": 1536 * 2**20},
            "disk": {"used": 8 * 2**30, "limit": None},
        }
    ]
    table = workspace.run("quota", "list").stdout.splitlines()
    assert table[1].split() == ["namespace", "default", "2/2", "2/-", "1Gi/1.5Gi", "8Gi/-"]
    assert workspace.run("quota", "delete", "namespace", "default").returncode == 0
    assert _apply(workspace, "b")[0] == 0


def test_group_quota_counts_the_members_placements(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    me = getpass.getuser()  # the CLI plans as the system user, who owns the placements it makes
    assert workspace.run("user", "add", me, "--group", "ops", "--driver", "exec").returncode == 0
    assert workspace.run("quota", "set", "group", "ops", "--vcpu", "2", "--disk", "10Gi").returncode == 0
    assert workspace.run("quota", "set", "group", "other", "--vms", "0").returncode == 0  # not my group
    code, output = _apply(workspace, "a")
    assert code == 0, output
    code, output = _apply(workspace, "b")
    assert code == 1
    assert "group ops: quota exceeded: vCPUs: limit 2, in use 2 by other stacks, requested 1 by stack b" in output
    assert "group ops: quota exceeded: disk: limit 10Gi, in use 8Gi by other stacks, requested 4Gi by stack b" in output
    assert "group other" not in output
    listed = {q["name"]: q for q in json.loads(workspace.run("quota", "list", "-o", "json").stdout)}
    assert listed["ops"]["vcpu"] == {"used": 2, "limit": 2}
    assert listed["other"]["vms"] == {"used": 0, "limit": 0}
    # Re-planning stack a itself is within the quota: its own VMs are the request, not usage elsewhere.
    assert _apply(workspace, "a")[0] == 0


def test_bad_quota_input(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    for args, message in [
        (("set", "namespace", "x"), "give at least one limit"),
        (("set", "namespace", "x", "--memory", "lots"), "--memory"),
        (("set", "galaxy", "x", "--vms", "1"), "Invalid value"),
        (("delete", "group", "nobody"), "no quota of group nobody"),
    ]:
        result = workspace.run("quota", *args)
        assert result.returncode != 0 and message in result.stderr, result.stderr
    assert workspace.run("quota", "list").stdout.strip() == "No quotas."
