"""A cloud host's capacity map counts every VM running there, whatever its stack: the planner subtracts the
instances of VMs outside the plan (another stack's, by the type their deploy recorded, else the smallest type
that fits their size) before it places this stack's VMs. Worked by hand: the map is two t3.small (2 vCPU, 2Gi)
and one t3.large (2 vCPU, 8Gi)."""

from __future__ import annotations

from typing import Any

import pytest

from nebctl.controller.planning import PlanRequest, make_plan
from nebctl.controller.planning.request import PlanError
from nebctl.core.keys import Kind
from nebctl.database.records import ResourceRecord
from nebctl.drivers.states import HostLiveState
from nebctl.drivers.types import HostProbe
from nebctl.reconcilers.base import LiveView
from tests.unit.planning.world import documents

GiB = 1024**3

CLOUD = """
apiVersion: nebctl/v1
kind: Host
metadata: {name: aws}
spec:
  uri: ec2://eu-west-1
  cloud:
    capacity: {t3.small: 2, t3.large: 1}
"""


def vm(name: str, memory: str = "2Gi") -> str:
    return f"""
apiVersion: nebctl/v1
kind: VirtualMachine
metadata: {{name: {name}}}
spec: {{vcpu: 1, memory: {memory}}}
"""


def other_stack_vm(name: str, memory: int, live: dict[str, Any]) -> ResourceRecord:
    return ResourceRecord(
        kind=Kind.VIRTUAL_MACHINE,
        namespace="default",
        name=name,
        stack="other",
        applied={"vcpu": 1, "memory": memory, "disks": [], "nics": []},
        status="running",
        live={"uuid": f"00000000-0000-0000-0000-{len(name):012d}", **live},
        host="aws",
    )


def plan_types(records: list[ResourceRecord], *names: str) -> dict[str, str | None]:
    """Where and as what each VM of ``names`` goes: its instance type (every one goes to ``aws``)."""
    docs = documents(CLOUD, *(vm(name) for name in names))
    live = LiveView(hosts={"aws": HostProbe(name="aws", state=HostLiveState.ONLINE)})
    plan = make_plan(PlanRequest(stack="demo", documents=docs, records={r.key: r for r in records}, live=live))
    placed = {}
    for action in plan.actions:
        if action.operation == "deploy":
            placed[action.key.name] = action.params.get("instanceType")
    return placed


def test_without_other_stacks_two_small_vms_take_the_two_t3_small() -> None:
    assert plan_types([], "a", "b") == {"a": "t3.small", "b": "t3.small"}


def test_another_stacks_instance_takes_its_recorded_type() -> None:
    # The other stack holds a t3.small (recorded): one is left, so b takes the t3.large.
    records = [other_stack_vm("theirs", 2 * GiB, {"instanceType": "t3.small"})]
    assert plan_types(records, "a", "b") == {"a": "t3.small", "b": "t3.large"}


def test_another_stacks_instance_without_a_recorded_type_takes_the_smallest_that_fits() -> None:
    # 1 vCPU and 4Gi: the smallest type of the map that fits is the t3.large, so both t3.small are left.
    records = [other_stack_vm("theirs", 4 * GiB, {})]
    assert plan_types(records, "a", "b") == {"a": "t3.small", "b": "t3.small"}
    # ...and the t3.large is gone: a third VM finds no room.
    with pytest.raises(PlanError, match="no instance type of the capacity map left"):
        plan_types(records, "a", "b", "c")


def test_a_full_map_held_by_other_stacks_leaves_no_room() -> None:
    records = [
        other_stack_vm("x1", 2 * GiB, {"instanceType": "t3.small"}),
        other_stack_vm("x2", 2 * GiB, {"instanceType": "t3.small"}),
        other_stack_vm("x3", 8 * GiB, {"instanceType": "t3.large"}),
    ]
    with pytest.raises(PlanError, match="aws refuses it: no instance type of the capacity map left"):
        plan_types(records, "a")
