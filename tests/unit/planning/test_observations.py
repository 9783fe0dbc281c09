"""``observations``: what a round of probes leaves to keep. A table of VMs in every situation, with what each must
give, written by hand: a row only where the VM differs from its record, in the planner's words; a row per probed
host; nothing for what was not probed or not created. And ``seen_as_recorded``, the reading side."""

from __future__ import annotations

from datetime import UTC, datetime

from nebctl.controller.observing import observations, seen_as_recorded
from nebctl.core.keys import Kind, ResourceKey
from nebctl.database import ObservationRecord, ResourceRecord
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import HostProbe, VMStatus
from nebctl.reconcilers.base import LiveView
from nebctl.reconcilers.identity import vm_uuid

GI = 1024**3
VM = Kind.VIRTUAL_MACHINE


def vm(name: str, host: str, state: str = "running", *, created: bool = True) -> ResourceRecord:
    applied = {"state": state, "vcpu": 2, "memory": 2 * GI, "host": host} if created else None
    return ResourceRecord(VM, "default", name, "s", applied=applied, host=host, status=state)


def host(name: str) -> ResourceRecord:
    return ResourceRecord(Kind.HOST, "default", name, "s", applied={"uri": f"sim://{name}"}, status="ready")


def seen(name: str, state: VMLiveState, *, vcpu: int = 2, memory: int = 2 * GI) -> VMStatus:
    return VMStatus(vm_uuid(ResourceKey(VM, "default", name)), name, state, vcpu=vcpu, memory=memory)


RECORDS = {
    record.key: record
    for record in [
        host("h1"),
        host("h2"),
        host("h3"),  # not probed
        vm("same", "h1"),
        vm("stopped-by-hand", "h1"),
        vm("deleted-by-hand", "h1"),
        vm("resized", "h1"),
        vm("moved", "h1"),
        vm("booting", "h1"),
        vm("kept-stopped", "h1", "stopped"),
        vm("crashed-while-stopped", "h1", "stopped"),
        vm("creating", "h1", created=False),
        vm("on-silent-host", "h2"),
        vm("on-unprobed-host", "h3"),
    ]
}
LIVE = LiveView(
    hosts={
        "h1": HostProbe("h1", HostLiveState.ONLINE, cpus=8, memory=32 * GI, free_memory=20 * GI, load=0.25),
        "h2": HostProbe("h2", HostLiveState.ERROR, error="host does not answer: down"),
    },
    vms={
        status.uuid: status
        for status in [
            seen("same", VMLiveState.RUNNING),
            seen("stopped-by-hand", VMLiveState.STOPPED),
            seen("resized", VMLiveState.RUNNING, memory=4 * GI),
            seen("moved", VMLiveState.RUNNING),
            seen("booting", VMLiveState.TRANSITIONING),
            seen("kept-stopped", VMLiveState.STOPPED),
            seen("crashed-while-stopped", VMLiveState.CRASHED),
        ]
    },
    vm_hosts={vm_uuid(ResourceKey(VM, "default", "moved")): "h9"}
    | {vm_uuid(ResourceKey(VM, "default", n)): "h1" for n in ("same", "stopped-by-hand", "resized", "booting")},
)

EXPECTED = {
    ("Host", "h1"): ("h1", "online", {"cpus": 8, "memory": 32 * GI, "free_memory": 20 * GI, "load": 0.25}),
    ("Host", "h2"): ("h2", "error", {"error": "host does not answer: down"}),
    ("VirtualMachine", "stopped-by-hand"): (
        "h1", "stopped", {"drift": ["was stopped"], "host": "h1", "vcpu": 2, "memory": 2 * GI},
    ),
    ("VirtualMachine", "deleted-by-hand"): ("h1", "absent", {"drift": ["was deleted outside nebctl"], "host": "h1"}),
    ("VirtualMachine", "resized"): (
        "h1", "running", {"drift": ["memory was changed to 4Gi"], "host": "h1", "vcpu": 2, "memory": 4 * GI},
    ),
    ("VirtualMachine", "moved"): (
        "h1", "running", {"drift": ["was moved to host h9"], "host": "h9", "vcpu": 2, "memory": 2 * GI},
    ),
    ("VirtualMachine", "booting"): ("h1", "transitioning", {"drift": [], "host": "h1", "vcpu": 2, "memory": 2 * GI}),
    ("VirtualMachine", "crashed-while-stopped"): (
        "h1", "crashed", {"drift": [], "host": "h1", "vcpu": 2, "memory": 2 * GI},
    ),
    ("VirtualMachine", "on-silent-host"): ("h2", "unknown", {"drift": [], "host": "h2"}),
}  # fmt: skip


def test_a_row_only_where_something_differs() -> None:
    found = {(o.kind.value, o.name): (o.host, o.state, o.details) for o in observations(RECORDS, LIVE)}
    assert found == EXPECTED
    assert all(o.observed_at is None for o in observations(RECORDS, LIVE))  # the store stamps them


def test_a_vm_without_a_row_was_seen_as_recorded_at_its_hosts_time() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    h1 = ObservationRecord(Kind.HOST, "default", "h1", "h1", "online", {}, moment)
    same = RECORDS[ResourceKey(VM, "default", "same")]
    assert seen_as_recorded(same, same.key, h1) == ObservationRecord(
        VM, "default", "same", "h1", "running", {"host": "h1", "vcpu": 2, "memory": 2 * GI, "drift": []}, moment
    )
    kept = RECORDS[ResourceKey(VM, "default", "kept-stopped")]
    assert seen_as_recorded(kept, kept.key, h1).state == "stopped"  # type: ignore[union-attr]
    # Not its host, a host in error, a VM not created yet: the host's row says nothing of it.
    other = RECORDS[ResourceKey(VM, "default", "on-unprobed-host")]
    assert seen_as_recorded(other, other.key, h1) is None
    down = ObservationRecord(Kind.HOST, "default", "h1", "h1", "error", {}, moment)
    assert seen_as_recorded(same, same.key, down) is None
    creating = RECORDS[ResourceKey(VM, "default", "creating")]
    assert seen_as_recorded(creating, creating.key, h1) is None
