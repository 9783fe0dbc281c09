"""The reconciling and inspecting commands end to end, as users run them: real ``nebctl`` processes on the
simulated fleet with an SQLite database in a temporary directory.

Covers the exit codes of diff/apply/destroy, the refusal to apply without --yes off a terminal, get/describe/
events, adopting a live VM with ``import``, and that a secret never reaches any output or the event log.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nebctl.core.settings import Settings
from nebctl.drivers.registry import build_registry
from nebctl.drivers.sim.fleet import open_fleet
from nebctl.drivers.types import HostRef, NicDefinition, VMDefinition

REPO = Path(__file__).resolve().parents[3]
NEBCTL = [sys.executable, "-m", "nebctl"]
SECRET = "s3cr3t-token-never-printed"


class Env:
    """A private world: config (state_dir for the sim fleet), database, and a copy of the example manifests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifests = root / "examples"
        shutil.copytree(REPO / "manifests" / "examples", self.manifests)
        vms = self.manifests / "30-vms.yaml"
        vms.write_text(vms.read_text().replace("packages: [nginx]", f"packages: [nginx]\n      # {SECRET}"))
        self.config = root / "config.yaml"
        self.config.write_text(f"state_dir: {root}\n")
        self.db = f"sqlite:///{root / 'nebctl.db'}"

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*NEBCTL, "--db", self.db, "--config", str(self.config), *args],
            check=False,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )

    def fleet_vms(self) -> dict[str, str]:
        fleet = open_fleet(Settings(state_dir=self.root))
        try:
            return {vm["name"]: host for host, data in fleet.show()["hosts"].items() for vm in data["vms"]}
        finally:
            fleet.close()


@pytest.fixture()
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_diff_apply_destroy_exit_codes_and_convergence(env: Env) -> None:
    first = env.run("diff", "-f", str(env.manifests))
    assert first.returncode == 2, first.stderr
    assert "Plan: 18 to add, 0 to change, 0 to destroy." in first.stdout

    refused = env.run("apply", "-f", str(env.manifests))
    assert refused.returncode == 1
    assert "refusing to apply these changes without --yes" in refused.stderr
    assert env.fleet_vms() == {}, "a refused apply must change nothing"

    applied = env.run("apply", "-f", str(env.manifests), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Apply complete!" in applied.stdout
    vms = env.fleet_vms()
    assert sorted(vms) == ["batch-1", "cache-1", "db-1", "lb-1", "web-1", "web-2", "web-3"]

    again = env.run("diff", "-f", str(env.manifests))
    assert again.returncode == 0, again.stdout
    assert "No changes." in again.stdout

    # db-1 has lifecycle.preventDestroy: the whole destroy is refused before anything is touched.
    protected = env.run("destroy", "--stack", "examples", "--yes")
    assert protected.returncode == 1
    assert "vm/db-1: lifecycle.preventDestroy is set, and this plan would destroy it" in protected.stderr
    assert sorted(env.fleet_vms()) == sorted(vms)

    vms_file = env.manifests / "30-vms.yaml"
    vms_file.write_text(vms_file.read_text().replace("preventDestroy: true", "preventDestroy: false"))
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    destroyed = env.run("destroy", "--stack", "examples", "--yes")
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert env.fleet_vms() == {}
    listing = env.run("get", "-o", "json")
    assert json.loads(listing.stdout) == []


def test_invalid_manifests_change_nothing(env: Env) -> None:
    bad = env.manifests / "99-bad.yaml"
    bad.write_text("apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {name: broken}\nspec: {memroy: 1Gi}\n")
    result = env.run("apply", "-f", str(env.manifests), "--yes")
    assert result.returncode == 1
    assert "99-bad.yaml:4:" in result.stderr and "memroy" in result.stderr
    assert env.fleet_vms() == {}


def test_get_describe_events(env: Env) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    vms = json.loads(env.run("get", "vm", "-o", "json").stdout)
    assert {vm["name"] for vm in vms} == {"batch-1", "cache-1", "db-1", "lb-1", "web-1", "web-2", "web-3"}
    web1 = next(vm for vm in vms if vm["name"] == "web-1")
    assert web1["status"] == "running" and web1["host"] and web1["spec"]["nics"][0]["ip"].startswith("10.10.0.")
    assert env.run("get", "vm", "nope").returncode == 1

    described = env.run("describe", "vm/web-1")
    assert described.returncode == 0, described.stderr
    assert "vm/web-1:deploy succeeded" in described.stdout
    assert "vm.created" in described.stdout
    assert env.run("describe", "vm/nope").returncode == 1

    events = [json.loads(line) for line in env.run("events", "-o", "json", "-n", "500").stdout.splitlines()]
    types = {event["type"] for event in events}
    assert {"vm.created", "vm.running", "apply.finished"} <= types


def test_a_label_change_is_planned_recorded_and_shown_without_touching_the_vm(env: Env) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    before = env.fleet_vms()
    vms_file = env.manifests / "30-vms.yaml"
    relabelled = vms_file.read_text().replace("labels: {app: shop, tier: edge}", "labels: {app: shop, tier: lb}")
    vms_file.write_text(relabelled)

    diff = env.run("diff", "-f", str(env.manifests))
    assert diff.returncode == 2, diff.stdout + diff.stderr
    assert "vm/lb-1 will be updated in-place" in diff.stdout
    assert 'metadata.labels.tier = "edge" -> "lb"' in " ".join(diff.stdout.split())
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in diff.stdout
    planned = json.loads(env.run("diff", "-f", str(env.manifests), "-o", "json").stdout)
    # No driver acts on the VM: only its ownership is written again (what ``recover`` rebuilds the record from).
    assert [(a["id"], a["family"]) for a in planned["actions"] if a["resource"] == "vm/lb-1"] == [
        ("vm/lb-1:own", "monitoring")
    ]

    applied = env.run("apply", "-f", str(env.manifests), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert env.fleet_vms() == before
    assert env.run("diff", "-f", str(env.manifests)).returncode == 0
    described = json.loads(env.run("get", "vm", "lb-1", "-o", "json").stdout)
    record = described[0] if isinstance(described, list) else described
    assert record["labels"] == {"app": "shop", "tier": "lb"}
    assert "metadata" not in record["spec"]


def test_secret_never_printed_or_logged(env: Env) -> None:
    outputs = [
        env.run("diff", "-f", str(env.manifests)),
        env.run("diff", "-f", str(env.manifests), "-o", "json"),
        env.run("-v", "--log-format", "json", "apply", "-f", str(env.manifests), "--yes"),
        env.run("get", "-o", "yaml"),
        env.run("describe", "vm/web-1"),
        env.run("events", "-o", "json", "-n", "1000"),
    ]
    for result in outputs:
        assert SECRET not in result.stdout and SECRET not in result.stderr
    assert "(sensitive)" in outputs[0].stdout


def test_import_adopts_a_live_vm_and_prune_removes_it(env: Env) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    registry = build_registry(Settings(state_dir=env.root))
    host = HostRef("kvm-a1", "sim://kvm-a1?cpus=32&memory=128Gi&disk=2Ti")
    try:
        registry.for_host(host).virtualization.deploy(
            host, VMDefinition(name="legacy-box", uuid="11111111-2222-3333-4444-555555555555", vcpu=1, memory=2**29)
        )
    finally:
        registry.close()
    imported = env.run("import", "vm/legacy", "--id", "legacy-box", "-f", str(env.manifests))
    assert imported.returncode == 0, imported.stderr
    assert "Imported vm/legacy" in imported.stdout
    again = env.run("import", "vm/legacy", "--id", "legacy-box", "-f", str(env.manifests))
    assert again.returncode == 1 and "already managed" in again.stderr
    missing = env.run("import", "vm/ghost", "--id", "no-such-vm", "-f", str(env.manifests))
    assert missing.returncode == 1 and "no VM with id or name" in missing.stderr

    kept = env.run("diff", "-f", str(env.manifests))
    assert kept.returncode == 0 and "vm/legacy is no longer in the manifests; it is kept" in kept.stdout
    pruned = env.run("apply", "-f", str(env.manifests), "--prune", "--yes")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert "legacy-box" not in env.fleet_vms(), "prune must remove the adopted VM itself, by its own UUID"


LEGACY_VM = """\
apiVersion: nebctl/v1
kind: VirtualMachine
metadata: {name: legacy}
spec:
  vcpu: 1
  memory: 512Mi
  nics: [{network: lan}, {network: backend}]
  placement: {host: kvm-a1}
"""


def test_an_imported_vm_keeps_the_mac_its_nic_has(env: Env) -> None:
    """The live VM has one NIC, with a MAC nebctl would never derive; the manifest gives it two. Import records
    the live MAC (not a derived one) and leaves out the NIC the VM lacks; the apply that follows keeps the live
    MAC and adds the second NIC with a MAC of its own."""
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    (env.manifests / "50-legacy.yaml").write_text(LEGACY_VM)
    live_mac = "52:54:00:ab:cd:ef"
    registry = build_registry(Settings(state_dir=env.root))
    host = HostRef("kvm-a1", "sim://kvm-a1?cpus=16&memory=64Gi&disk=1Ti")
    uuid = "11111111-2222-3333-4444-666666666666"
    try:
        registry.for_host(host).virtualization.deploy(
            host,
            VMDefinition(
                name="legacy-box", uuid=uuid, vcpu=1, memory=2**29, nics=(NicDefinition(network="lan", mac=live_mac),)
            ),
        )
    finally:
        registry.close()
    imported = env.run("import", "vm/legacy", "--id", "legacy-box", "-f", str(env.manifests))
    assert imported.returncode == 0, imported.stderr
    [record] = json.loads(env.run("get", "vm", "legacy", "-o", "json").stdout)
    assert [nic["mac"] for nic in record["spec"]["nics"]] == [live_mac]

    applied = env.run("apply", "-f", str(env.manifests), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    registry = build_registry(Settings(state_dir=env.root))
    try:
        [status] = [s for s in registry.for_host(host).monitoring.probe_vms(host) if s.uuid == uuid]
    finally:
        registry.close()
    assert status.macs is not None and len(status.macs) == 2
    assert status.macs[0] == live_mac
    assert status.macs[1] != live_mac
    [record] = json.loads(env.run("get", "vm", "legacy", "-o", "json").stdout)
    assert [nic["mac"] for nic in record["spec"]["nics"]] == list(status.macs)
    assert env.run("diff", "-f", str(env.manifests)).returncode == 0


def test_drift_is_shown_and_healed(env: Env) -> None:
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    fleet = open_fleet(Settings(state_dir=env.root))
    try:
        fleet.stop_vm("lb-1")
        fleet.delete_vm("cache-1")
    finally:
        fleet.close()
    diff = env.run("diff", "-f", str(env.manifests))
    assert diff.returncode == 2
    assert "vm/lb-1 was stopped; it will be started" in diff.stdout
    assert "vm/cache-1 was deleted outside nebctl; it will be created again" in diff.stdout
    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    assert env.run("diff", "-f", str(env.manifests)).returncode == 0
    assert {"lb-1", "cache-1"} <= set(env.fleet_vms())


def test_a_live_vm_nebctl_does_not_own_is_never_touched(env: Env) -> None:
    from nebctl.core.keys import Kind, ResourceKey
    from nebctl.reconcilers.identity import vm_uuid

    squatter = vm_uuid(ResourceKey.of(Kind.VIRTUAL_MACHINE, "web-1"))
    registry = build_registry(Settings(state_dir=env.root))
    host = HostRef("kvm-b2", "sim://kvm-b2?cpus=16&memory=64Gi&disk=1Ti")
    try:
        registry.for_host(host).virtualization.deploy(
            host, VMDefinition(name="someone-elses", uuid=squatter, vcpu=1, memory=2**29)
        )
    finally:
        registry.close()
    result = env.run("apply", "-f", str(env.manifests), "--yes")
    assert result.returncode == 1
    assert f"vm/web-1: a live VM with its UUID {squatter} exists and is not owned by nebctl" in result.stderr
    assert env.fleet_vms() == {"someone-elses": "kvm-b2"}, "nothing may be created or changed"


def test_diff_prints_the_same_with_and_without_the_manifest_cache(env: Env) -> None:
    """``diff`` keeps the checked files under state_dir/cache; what it prints is the same as with the cache
    turned off, for an unchanged set served from the cache, an edited file and a file with a problem."""
    uncached = env.root / "uncached.yaml"
    uncached.write_text(f"state_dir: {env.root}\nmanifest_cache: false\n")

    def both() -> tuple[tuple[int, str, str], tuple[int, str, str]]:
        with_cache = env.run("diff", "-f", str(env.manifests))
        without = subprocess.run(
            [*NEBCTL, "--db", env.db, "--config", str(uncached), "diff", "-f", str(env.manifests)],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        return (with_cache.returncode, with_cache.stdout, with_cache.stderr), (
            without.returncode,
            without.stdout,
            without.stderr,
        )

    assert env.run("apply", "-f", str(env.manifests), "--yes").returncode == 0
    cache = env.root / "cache" / "manifests"
    entries = set(cache.glob("*/*"))
    # Each file, the set, and the entries of the set these files last made.
    assert len(entries) == len(list(env.manifests.glob("*.yaml"))) + 2
    cached, plain = both()
    assert cached == plain and cached[0] == 0
    assert set(cache.glob("*/*")) == entries  # served from the cache: nothing written

    vms = env.manifests / "30-vms.yaml"
    vms.write_text(vms.read_text().replace("memory: 2Gi", "memory: 3Gi", 1))
    cached, plain = both()
    assert cached == plain and cached[0] == 2 and "to change" in cached[1]

    vms.write_text(vms.read_text().replace("memory: 3Gi", "memory: lots", 1))
    cached, plain = both()
    assert cached == plain and cached[0] == 1 and "memory" in cached[2]
