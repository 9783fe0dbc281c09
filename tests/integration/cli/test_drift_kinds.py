"""Drift of every kind, as a user causes it with ``nebctl sim`` and sees it with ``diff``: a network, a datastore,
an image volume and a security group deleted behind nebctl's back on one host each are shown under "Changed
outside nebctl", ``apply`` creates exactly those again (one action each, on that host), and the next diff has
nothing to do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nebctl.core.keys import Kind, ResourceKey
from tests.integration.cli.test_commands import Env
from tests.support.drills import Workspace, fleet_manifests

# What is deleted, on which host, and the sentence and action each must give (written out by hand).
DELETED = [
    ("network", "kvm-a1", "lan", "network/lan network lan was deleted outside nebctl on kvm-a1",
     "network/lan:create:kvm-a1"),
    ("datastore", "kvm-b2", "local", "datastore/local pool local was deleted outside nebctl on kvm-b2",
     "datastore/local:create_datastore:kvm-b2"),
    ("volume", "kvm-b1", "image-debian-12",
     "image/debian-12 volume image-debian-12 was deleted outside nebctl on kvm-b1",
     "image/debian-12:import_image:kvm-b1"),
    ("sg", "kvm-a2", "nebctl-sg-web", "securitygroup/web filter nebctl-sg-web was deleted outside nebctl on kvm-a2",
     "securitygroup/web:update_sg:kvm-a2"),
]  # fmt: skip


@pytest.fixture()
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_each_kind_deleted_outside_is_shown_and_repaired(env: Env) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    for what, host, name, _, _ in DELETED:
        result = env.run("sim", f"delete-{what}", host, name)
        assert result.returncode == 0, result.stderr
    diff = env.run("diff", "-f", str(env.manifests))
    assert diff.returncode == 2, diff.stdout + diff.stderr
    outside = diff.stdout.split("Changed outside nebctl:")[1]
    for _, _, _, sentence, _ in DELETED:
        assert f"# {sentence}; it will be created again" in outside
    assert "Plan: 0 to add, 4 to change, 0 to destroy." in diff.stdout
    applied = env.run("apply", "-f", str(env.manifests), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    ran = sorted(re.findall(r"\] +[\d.]+s (\S+) succeeded", applied.stdout))
    assert ran == sorted(action for *_, action in DELETED)
    again = env.run("diff", "-f", str(env.manifests))
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_kind_deleted_on_every_host_is_created_again(env: Env) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    for host in ("kvm-a1", "kvm-a2", "kvm-b1", "kvm-b2"):
        assert env.run("sim", "delete-sg", host, "nebctl-sg-web").returncode == 0
    diff = env.run("diff", "-f", str(env.manifests))
    assert diff.returncode == 2
    assert "# securitygroup/web will be created" in diff.stdout
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    assert env.run("diff", "-f", str(env.manifests)).returncode == 0


def test_objects_deleted_outside_on_the_hosts_the_manifests_drop_change_only_the_records(tmp_path: Path) -> None:
    # The network, the datastore and the image are already gone from h01 and h02 when the manifests drop those
    # hosts: the live objects are as declared, so the apply runs no action for them and writes their records. A
    # record still listing the dropped hosts would make every later plan act on hosts nebctl no longer knows.
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "fleet.yaml").write_text(fleet_manifests(vms=0, hosts=3), encoding="utf-8")
    workspace = Workspace(tmp_path / "ws", manifests=manifests, stack="fleet")
    assert workspace.apply().returncode == 0
    for host in ("h01", "h02"):
        assert workspace.run("sim", "delete-network", host, "lan").returncode == 0
        assert workspace.run("sim", "delete-datastore", host, "local").returncode == 0
        assert workspace.run("sim", "delete-volume", host, "image-base").returncode == 0
    (manifests / "fleet.yaml").write_text(fleet_manifests(vms=0, hosts=1), encoding="utf-8")

    diff = workspace.diff()
    assert diff.returncode == 2, diff.stdout + diff.stderr
    assert "# network/lan will be updated in-place (already as declared; the record is brought up to date)" in (
        diff.stdout
    )
    assert (
        "# network/lan network lan was deleted outside nebctl on h01; as the manifests declare; only the "
        "record changes" in diff.stdout
    )
    applied = workspace.apply("--prune")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert re.findall(r"\] +[\d.]+s (\S+) succeeded", applied.stdout) == []
    with workspace.store() as store:
        records = {record.key: record for record in store.list_resources(stack="fleet")}
    for name in ("network/lan", "datastore/local", "image/base"):
        record = records[ResourceKey.parse(name)]
        assert record.applied is not None and record.applied["hosts"] == ["h00"], name
        assert record.status == "ready", name
    assert {str(key) for key in records if key.kind is Kind.HOST} == {"host/h00"}
    again = workspace.diff()
    assert again.returncode == 0, again.stdout + again.stderr
