"""``nebctl destroy`` and ``apply --prune`` that stop partway, on the simulated fleet: the next run finishes
the job and leaves nothing, neither on the fleet nor in the records. A host's record (deleted with no driver
action) stays as long as an action on that host still has to run.
"""

from __future__ import annotations

from pathlib import Path

from nebctl.core.keys import Kind
from nebctl.drivers.sim import Fault, FaultKind
from tests.support.drills import Workspace, audit, audit_destroyed, fleet_manifests


def _workspace(root: Path, vms: int) -> Workspace:
    manifests = root / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "fleet.yaml").write_text(fleet_manifests(vms=vms, hosts=3), encoding="utf-8")
    return Workspace(root / "ws", manifests=manifests, stack="fleet")


def test_a_destroy_with_a_failed_undeploy_is_finished_by_the_next_destroy(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, vms=6)
    assert workspace.apply().returncode == 0
    with workspace.store() as store:
        victim = next(r for r in store.list_resources(stack="fleet") if r.key.kind is Kind.VIRTUAL_MACHINE)
    with workspace.fleet() as fleet:
        fault = Fault("virtualization.undeploy", FaultKind.PERMANENT, host=victim.host, count=1, message="stuck")
        fleet.set_fault(fault)
    first = workspace.destroy()
    assert first.returncode == 1, first.stdout + first.stderr
    assert "stuck" in first.stdout + first.stderr
    with workspace.store() as store:
        left = {r.key for r in store.list_resources(stack="fleet")}
    # The host of the VM that failed is still recorded: the next destroy reaches the VM through it.
    assert any(key.kind is Kind.HOST and key.name == victim.host for key in left), left

    second = workspace.destroy()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "neither in the manifests nor recorded" not in second.stdout + second.stderr
    assert audit_destroyed(workspace) == []


def test_an_apply_with_prune_that_failed_is_finished_by_the_next_one(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, vms=4)
    assert workspace.apply().returncode == 0
    # Every VM and two of the three hosts go; the datastore, image and network shrink to the host left.
    (workspace.manifests / "fleet.yaml").write_text(fleet_manifests(vms=0, hosts=1), encoding="utf-8")
    with workspace.fleet() as fleet:
        fleet.set_fault(Fault("storage.delete", FaultKind.PERMANENT, host="h01", count=1, message="busy"))
    first = workspace.apply("--prune")
    assert first.returncode == 1, first.stdout + first.stderr
    second = workspace.apply("--prune")
    assert second.returncode == 0, second.stdout + second.stderr
    assert audit(workspace) == []
