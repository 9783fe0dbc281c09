"""Drift of every kind, as a user causes it with ``nebctl sim`` and sees it with ``diff``: a network, a datastore,
an image volume and a security group deleted (or changed) behind nebctl's back on one host each are shown under
"Changed outside nebctl", ``apply`` creates exactly those again (or repairs them: one action each on that host,
or a delete and a create), and the next diff has nothing to do."""

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


# What is changed (the ``nebctl sim change-...`` arguments), and the sentence and actions each must give, written
# out by hand from manifests/examples. kvm-b2 runs no VM, so the network and the image volume can be deleted
# there to be created again; the datastore and the security group are repaired in place, where VMs run.
WEB_RULES = (
    "in icmp all 0.0.0.0/0, in tcp 22 10.0.0.0/8, in tcp 443 0.0.0.0/0, in tcp 80 0.0.0.0/0, out any all 0.0.0.0/0"
)
CHANGED = [
    (["change-network", "kvm-b2", "lan", "--cidr", "10.9.0.0/24", "--gateway", "10.9.0.1",
      "--range", "10.9.0.10-10.9.0.99"],
     "network/lan network lan was changed outside nebctl on kvm-b2: cidr 10.10.0.0/24 -> 10.9.0.0/24; "
     "gateway 10.10.0.1 -> 10.9.0.1; range 10.10.0.10-10.10.0.200 -> 10.9.0.10-10.9.0.99; "
     "it will be deleted and created again there",
     ["network/lan:delete:kvm-b2", "network/lan:create:kvm-b2"]),
    (["change-datastore", "kvm-a1", "local", "--path", "/srv/elsewhere"],
     "datastore/local pool local was changed outside nebctl on kvm-a1: "
     "path /var/lib/nebctl/datastores/local -> /srv/elsewhere; its pool will be defined again there",
     ["datastore/local:create_datastore:kvm-a1"]),
    (["change-volume", "kvm-b2", "image-debian-12", "--size", "3Gi"],
     "image/debian-12 volume image-debian-12 was changed outside nebctl on kvm-b2: size 2Gi -> 3Gi; "
     "it will be deleted and created again there",
     ["image/debian-12:delete:kvm-b2", "image/debian-12:import_image:kvm-b2"]),
    (["change-sg", "kvm-a2", "nebctl-sg-web", "--rule", "in tcp 2222"],
     "securitygroup/web filter nebctl-sg-web was changed outside nebctl on kvm-a2: "
     f"rules {WEB_RULES} -> in tcp 2222 0.0.0.0/0; its rules will be set again there",
     ["securitygroup/web:update_sg:kvm-a2"]),
]  # fmt: skip


def _succeeded(output: str) -> list[str]:
    return re.findall(r"\] +[\d.]+s (\S+) succeeded", output)


def _changed_outside(stdout: str) -> list[str]:
    """The lines of a diff's "Changed outside nebctl" section, stripped and sorted."""
    outside = stdout.split("Changed outside nebctl:", 1)[1].split("Plan:", 1)[0]
    return sorted(line.strip() for line in outside.strip().splitlines())


def test_each_kind_changed_outside_is_shown_and_repaired_on_its_host(env: Env) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    for arguments, _, _ in CHANGED:
        result = env.run("sim", *arguments)
        assert result.returncode == 0, result.stderr
    diff = env.run("diff", "-f", str(env.manifests))
    assert diff.returncode == 2, diff.stdout + diff.stderr
    assert _changed_outside(diff.stdout) == sorted(f"# {sentence}" for _, sentence, _ in CHANGED)
    assert "Plan: 0 to add, 4 to change, 0 to destroy." in diff.stdout
    applied = env.run("apply", "-f", str(env.manifests), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    ran = _succeeded(applied.stdout)
    assert sorted(ran) == sorted(action for *_, actions in CHANGED for action in actions)
    # A deleted object is created again only after its changed copy is gone.
    for first, then in (("network/lan:delete:kvm-b2", "network/lan:create:kvm-b2"),
                        ("image/debian-12:delete:kvm-b2", "image/debian-12:import_image:kvm-b2")):  # fmt: skip
        assert ran.index(first) < ran.index(then)
    again = env.run("diff", "-f", str(env.manifests))
    assert again.returncode == 0, again.stdout + again.stderr


# A network's MTU and DNS servers changed by hand (manifests/examples: lan declares mtu 1500 and dns 10.10.0.1,
# backend neither, so it holds the driver's default MTU and no DNS server). On kvm-b2, where no VM runs.
MTU_AND_DNS = [
    (["change-network", "kvm-b2", "lan", "--mtu", "default", "--dns", "none"],
     "network/lan network lan was changed outside nebctl on kvm-b2: dns 10.10.0.1 -> none; mtu 1500 -> default; "
     "it will be deleted and created again there"),
    (["change-network", "kvm-b2", "backend", "--mtu", "9000", "--dns", "1.1.1.1,9.9.9.9"],
     "network/backend network backend was changed outside nebctl on kvm-b2: dns none -> 1.1.1.1, 9.9.9.9; "
     "mtu default -> 9000; it will be deleted and created again there"),
]  # fmt: skip


def test_a_network_s_mtu_and_dns_changed_outside_are_shown_and_repaired(env: Env) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    for arguments, _ in MTU_AND_DNS:
        result = env.run("sim", *arguments)
        assert result.returncode == 0, result.stderr
    diff = env.run("diff", "-f", str(env.manifests))
    assert diff.returncode == 2, diff.stdout + diff.stderr
    assert _changed_outside(diff.stdout) == sorted(f"# {sentence}" for _, sentence in MTU_AND_DNS)
    applied = env.run("apply", "-f", str(env.manifests), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert sorted(_succeeded(applied.stdout)) == sorted(
        f"network/{name}:{step}:kvm-b2" for name in ("lan", "backend") for step in ("delete", "create")
    )
    again = env.run("diff", "-f", str(env.manifests))
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_changed_object_on_a_host_that_does_not_answer_is_left_alone(env: Env) -> None:
    # The host cannot be listed: it is taken to hold what was applied, as for a deletion.
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    assert env.run("sim", "change-sg", "kvm-b2", "nebctl-sg-web", "--no-rules").returncode == 0
    assert env.run("sim", "host-down", "kvm-b2").returncode == 0
    diff = env.run("diff", "-f", str(env.manifests))
    assert "nebctl-sg-web was changed" not in diff.stdout, diff.stdout
    assert env.run("sim", "host-up", "kvm-b2").returncode == 0
    diff = env.run("diff", "-f", str(env.manifests))
    assert "filter nebctl-sg-web was changed outside nebctl on kvm-b2: rules " in diff.stdout, diff.stdout
    assert f"{WEB_RULES} -> none; its rules will be set again there" in diff.stdout


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (["change-network", "kvm-a1", "lan"], "nothing to change: give --mode, --cidr, --gateway, --range, --bridge"),
        (["change-network", "kvm-a1", "lan", "--mtu", "big"], "--mtu 'big': expected a number of bytes"),
        (["change-network", "kvm-a1", "lan", "--mtu", "20"], "mtu 20: expected 68 to 65535"),
        (["change-network", "kvm-a1", "lan", "--dns", "1.1.1.1,nine"], "dns server 'nine'"),
        (["change-network", "kvm-a1", "lan", "--bridge", "a-bridge-name-too-long"], "bridge 'a-bridge-name-too-long'"),
        (["change-network", "kvm-a1", "lan", "--cidr", "10.9.0.0/33"], "cidr '10.9.0.0/33'"),
        (["change-network", "kvm-a1", "lan", "--range", "10.9.0.10"], "--range '10.9.0.10': expected FIRST-LAST"),
        (["change-network", "kvm-a1", "nosuch", "--cidr", "10.9.0.0/24"], "no simulated network 'nosuch'"),
        (["change-sg", "kvm-a1", "nebctl-sg-web"], "give the new rules (--rule, repeatable) or --no-rules"),
        (["change-sg", "kvm-a1", "nebctl-sg-web", "--rule", "sideways tcp"], "--rule 'sideways tcp': expected"),
        (["change-volume", "kvm-a1", "image-debian-12", "--size", "lots"], "--size 'lots'"),
        (["change-datastore", "kvm-a1", "local"], "nothing to change: give --path or --type"),
    ],
)
def test_bad_changes_are_refused_and_change_nothing(env: Env, arguments: list[str], error: str) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    result = env.run("sim", *arguments)
    assert result.returncode != 0
    assert error in result.stderr, result.stderr
    again = env.run("diff", "-f", str(env.manifests))
    assert again.returncode == 0, again.stdout + again.stderr


# Changed where VMs use them (the placements of manifests/examples on the sim: lb-1 on kvm-a1 with its NIC on lan,
# web-1 on kvm-a2 with its disk backed by debian-12): only deleting and creating them again would repair them, which
# the drivers refuse under a NIC (libvirt and the sim) or would pull a backing file from under a disk. The diff says
# so, names the VMs and what to do, written out by hand; the apply leaves them and repairs the rest.
REFUSED = [
    "# network/lan network lan was changed outside nebctl on kvm-a1: cidr 10.10.0.0/24 -> 10.9.0.0/24; "
    "gateway 10.10.0.1 -> 10.9.0.1; range 10.10.0.10-10.10.0.200 -> 10.9.0.10-10.9.0.99; nebctl cannot repair it "
    "there while vm/lb-1 is attached to it (nics[0]): it would have to be deleted and created again. Put it back as "
    "applied by hand, or move that VM off kvm-a1 (or delete it), then apply again",
    "# image/debian-12 volume image-debian-12 was changed outside nebctl on kvm-a2: size 2Gi -> 3Gi; nebctl cannot "
    "repair it there while vm/web-1 uses it as the backing file of disks[0]: it would have to be deleted and created "
    "again. Put it back as applied by hand, or move that VM off kvm-a2 (or delete it), then apply again",
]
LAN_CHANGE = ["change-network", "kvm-a1", "lan", "--cidr", "10.9.0.0/24", "--gateway", "10.9.0.1",
              "--range", "10.9.0.10-10.9.0.99"]  # fmt: skip


def _outside(output: str) -> list[str]:
    """The lines of the "Changed outside nebctl" section, sorted."""
    section = output.split("Changed outside nebctl:\n", maxsplit=1)[1]
    return sorted(line.strip() for line in section.split("\n\n", maxsplit=1)[0].splitlines())


def test_objects_changed_under_vms_are_refused_at_plan_time_and_the_rest_applies(env: Env) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    placed = env.fleet_vms()
    assert (placed["lb-1"], placed["web-1"]) == ("kvm-a1", "kvm-a2")  # what REFUSED is written for
    for arguments in (LAN_CHANGE, ["change-volume", "kvm-a2", "image-debian-12", "--size", "3Gi"],
                      ["change-sg", "kvm-a2", "nebctl-sg-web", "--rule", "in tcp 2222"]):  # fmt: skip
        assert env.run("sim", *arguments).returncode == 0
    diff = env.run("diff", "-f", str(env.manifests))
    assert diff.returncode == 2, diff.stdout + diff.stderr
    assert _outside(diff.stdout) == sorted(
        [
            *REFUSED,
            f"# securitygroup/web filter nebctl-sg-web was changed outside nebctl on kvm-a2: rules {WEB_RULES} "
            "-> in tcp 2222 0.0.0.0/0; its rules will be set again there",
        ]
    )
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in diff.stdout  # the security group only
    applied = env.run("apply", "-f", str(env.manifests), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert _succeeded(applied.stdout) == ["securitygroup/web:update_sg:kvm-a2"]
    # Nothing left to do, but the refused drift is still shown, with what to do about it.
    again = env.run("diff", "-f", str(env.manifests))
    assert again.returncode == 0, again.stdout + again.stderr
    assert _outside(again.stdout) == sorted(REFUSED)
    assert "No changes." in again.stdout

    # The user deletes the VM that holds the network: the same plan deletes it first, then repairs the network.
    vms = env.manifests / "30-vms.yaml"
    vms.write_text("\n---\n".join(d for d in vms.read_text().split("\n---\n") if "name: lb-1\n" not in d))
    pruned = env.run("apply", "-f", str(env.manifests), "--yes", "--prune")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    ran = _succeeded(pruned.stdout)
    assert ran[-2:] == ["network/lan:delete:kvm-a1", "network/lan:create:kvm-a1"], ran
    assert "vm/lb-1:undeploy" in ran
    last = env.run("diff", "-f", str(env.manifests))
    assert _outside(last.stdout) == [REFUSED[1]], last.stdout


def test_an_object_deleted_under_vms_is_created_again(env: Env) -> None:
    # A missing network needs no VM to stop: it is created again where lb-1's NIC still holds its lease.
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    assert env.run("sim", "delete-network", "kvm-a1", "lan").returncode == 0
    diff = env.run("diff", "-f", str(env.manifests))
    assert _outside(diff.stdout) == ["# network/lan network lan was deleted outside nebctl on kvm-a1; it will be "
                                     "created again"]  # fmt: skip
    applied = env.run("apply", "-f", str(env.manifests), "--yes")
    assert _succeeded(applied.stdout) == ["network/lan:create:kvm-a1"], applied.stdout + applied.stderr
    assert env.run("diff", "-f", str(env.manifests)).returncode == 0


def test_objects_changed_or_deleted_outside_on_the_hosts_the_manifests_drop_are_worded_as_the_plan_acts(
    tmp_path: Path,
) -> None:
    # The network is deleted on h01 and changed on h02 when the manifests drop both hosts: the plan neither
    # creates it again on h01 nor repairs it on h02, it deletes it there, and the drift says so.
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "fleet.yaml").write_text(fleet_manifests(vms=0, hosts=3), encoding="utf-8")
    workspace = Workspace(tmp_path / "ws", manifests=manifests, stack="fleet")
    assert workspace.apply().returncode == 0
    assert workspace.run("sim", "delete-network", "h01", "lan").returncode == 0
    assert workspace.run("sim", "change-network", "h02", "lan", "--mode", "isolated").returncode == 0
    (manifests / "fleet.yaml").write_text(fleet_manifests(vms=0, hosts=1), encoding="utf-8")

    diff = workspace.diff()
    assert diff.returncode == 2, diff.stdout + diff.stderr
    assert _outside(diff.stdout) == [
        "# network/lan network lan was changed outside nebctl on h02: mode nat -> isolated; the manifests no "
        "longer put it on h02: it will be deleted there, not repaired",
        "# network/lan network lan was deleted outside nebctl on h01; the manifests no longer put it on h01: it "
        "is not created again there",
    ]
    applied = workspace.apply("--prune")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert [action for action in _succeeded(applied.stdout) if action.startswith("network/")] == [
        "network/lan:delete:h02"
    ]
    assert workspace.diff().returncode == 0
