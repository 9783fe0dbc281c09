"""MAC addresses in plans: never one MAC for two NICs, a recorded or prepared MAC kept, and collisions of the
derived MACs resolved the same way on every plan, a resumed one included.

A MAC is 24 bits of a digest, so collisions are rare but certain at scale: a plan of 100,000 VMs on one network
would have hundreds. The property test makes them common instead, with the planner's digest width narrowed to a
few bits, and checks what must hold whatever the width.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace as dataclass_replace
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nebctl.controller.planning import PlanError, PlanRequest, plan_with_specs
from nebctl.core.keys import Kind, ResourceKey
from nebctl.database.records import ResourceRecord
from nebctl.drivers.states import HostLiveState
from nebctl.drivers.types import HostProbe
from nebctl.reconcilers.base import LiveView
from nebctl.reconcilers.identity import mac_address
from nebctl.schemas.models import MODEL_BY_KIND, AnyManifest

STACK = "macs"
GiB = 1024**3
MiB = 1024**2


def fleet(vms: int, *, hosts: int = 4, nics: int = 1, cidr: str = "10.0.0.0/14") -> dict[ResourceKey, AnyManifest]:
    """``hosts`` hosts, one network and ``vms`` VMs with ``nics`` NICs each on it, as validated documents."""
    raw: list[dict[str, Any]] = []

    def add(kind: str, name: str, spec: dict[str, Any]) -> None:
        raw.append({"apiVersion": "nebctl/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})

    for index in range(hosts):
        add("Host", f"h{index:03d}", {"uri": f"sim://h{index:03d}"})
    add("Network", "lan", {"mode": "nat", "cidr": cidr})
    for index in range(vms):
        spec = {
            "vcpu": 1,
            "memory": 256 * MiB,
            "nics": [{"network": "lan"} for _ in range(nics)],
            "placement": {"host": f"h{index % hosts:03d}"},
        }
        add("VirtualMachine", f"vm{index:06d}", spec)
    result: dict[ResourceKey, AnyManifest] = {}
    for document in raw:
        kind = Kind(document["kind"])
        result[ResourceKey.of(kind, document["metadata"]["name"])] = cast(
            AnyManifest, MODEL_BY_KIND[kind].model_validate(document)
        )
    return result


def live(documents: Mapping[ResourceKey, AnyManifest]) -> LiveView:
    names = [key.name for key in documents if key.kind is Kind.HOST]
    return LiveView(
        hosts={
            name: HostProbe(
                name=name,
                state=HostLiveState.ONLINE,
                cpus=1 << 20,
                memory=1 << 50,
                disk_total=1 << 50,
                disk_free=1 << 50,
            )
            for name in names
        }
    )


def planned_macs(request: PlanRequest) -> dict[tuple[ResourceKey, int], str]:
    """(VM, NIC index) -> MAC, as the plan's actions prepare them (the ``pre`` step of each new NIC)."""
    plan, _ = plan_with_specs(request)
    return {
        (action.key, int(action.params["nic"])): str(action.params["mac"])
        for action in plan.actions
        if action.operation == "pre"
    }


def duplicates(macs: Mapping[Any, str]) -> list[str]:
    return [mac for mac, count in Counter(macs.values()).items() if count > 1]


@pytest.mark.slow
def test_a_plan_of_100000_vms_on_one_network_gives_every_nic_its_own_mac() -> None:
    documents = fleet(100_000, hosts=100)
    macs = planned_macs(PlanRequest(stack=STACK, documents=documents, records={}, live=live(documents)))
    assert len(macs) == 100_000
    assert duplicates(macs) == []


def record(key: ResourceKey, *, applied: Mapping[str, Any] | None, nic_live: Mapping[int, str]) -> ResourceRecord:
    """A VM record: finished (``applied`` holds its NICs and their MACs), or an interrupted create whose NICs
    in ``nic_live`` were prepared (the ``pre`` step records the MAC it used)."""
    live_part: dict[str, Any] = {f"nic.{index}": {"network": "lan", "mac": mac} for index, mac in nic_live.items()}
    return ResourceRecord(
        kind=key.kind,
        namespace=key.namespace,
        name=key.name,
        stack=STACK,
        applied=dict(applied) if applied is not None else None,
        status="running" if applied is not None else "creating",
        live=live_part,
        host=str(applied["host"]) if applied is not None else None,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    vms=st.integers(2, 40),
    nics=st.integers(1, 2),
    bits=st.integers(3, 7),
    seed=st.integers(0, 2**32 - 1),
)
def test_forced_collisions_resolve_the_same_way_on_every_plan_and_after_a_resumed_apply(
    vms: int, nics: int, bits: int, seed: int
) -> None:
    if vms * nics > (1 << bits):
        bits = (vms * nics).bit_length() + 1  # room for every NIC: the test is about collisions, not a full range
    rng = random.Random(seed)
    documents = fleet(vms, hosts=2, nics=nics, cidr="10.0.0.0/20")
    request = PlanRequest(stack=STACK, documents=documents, records={}, live=live(documents), mac_bits=bits)
    first = planned_macs(request)
    assert len(first) == vms * nics
    assert duplicates(first) == []
    # Narrowed, the derived MACs of this many NICs do collide (so the rest is not vacuous) in most examples.
    derived = {(key, index): mac_address(key, index, 0, 0, bits) for key, index in first}
    forced = len(duplicates(derived)) > 0

    # The same plan again, from the documents in another order: the same MACs.
    shuffled = list(documents.items())
    rng.shuffle(shuffled)
    assert (
        planned_macs(
            PlanRequest(stack=STACK, documents=dict(shuffled), records={}, live=live(documents), mac_bits=bits)
        )
        == first
    )

    # An apply stopped partway: some VMs finished, some with only some NICs prepared, the rest untouched.
    _, specs = plan_with_specs(request)
    records: dict[ResourceKey, ResourceRecord] = {}
    for key in sorted(k for k in documents if k.kind is Kind.VIRTUAL_MACHINE):
        fate = rng.choice(["finished", "prepared", "untouched"])
        if fate == "finished":
            records[key] = record(key, applied=specs[key], nic_live={i: first[(key, i)] for i in range(nics)})
        elif fate == "prepared":
            prepared = {i: first[(key, i)] for i in range(nics) if rng.random() < 0.5}
            records[key] = record(key, applied=None, nic_live=prepared)
    resumed = PlanRequest(stack=STACK, documents=documents, records=records, live=live(documents), mac_bits=bits)
    _, resumed_specs = plan_with_specs(resumed)
    again = {
        (key, index): str(nic["mac"])
        for key, spec in resumed_specs.items()
        if key.kind is Kind.VIRTUAL_MACHINE
        for index, nic in enumerate(spec["nics"])
    }
    assert again == first, forced


def test_new_nics_take_the_first_free_derived_mac_in_key_order() -> None:
    # 4 bits: 16 MACs for 12 NICs, so the derived MACs collide. The simpler model: VMs in name order, each NIC
    # tries its derived MACs (attempt 0, 1, 2...) and takes the first no earlier NIC took.
    bits = 4
    documents = fleet(12, hosts=1, cidr="10.0.0.0/24")
    macs = planned_macs(PlanRequest(stack=STACK, documents=documents, records={}, live=live(documents), mac_bits=bits))
    taken: set[str] = set()
    expected = {}
    for key in sorted(k for k in documents if k.kind is Kind.VIRTUAL_MACHINE):
        attempt = 0
        while mac_address(key, 0, 0, attempt, bits) in taken:
            attempt += 1
        expected[(key, 0)] = mac_address(key, 0, 0, attempt, bits)
        taken.add(expected[(key, 0)])
    assert macs == expected
    assert len({mac_address(key, 0, 0, 0, bits) for key, _ in expected}) < 12  # collisions were there to resolve


def test_a_recorded_mac_is_kept_and_another_stacks_mac_is_avoided() -> None:
    documents = fleet(2, hosts=1, cidr="10.0.0.0/24")
    first, second = sorted(k for k in documents if k.kind is Kind.VIRTUAL_MACHINE)
    _, specs = plan_with_specs(PlanRequest(stack=STACK, documents=documents, records={}, live=live(documents)))
    # vm000000 was created with a MAC of its own choosing (say, adopted); another stack's VM has the MAC
    # vm000001 would derive first.
    own_spec = {**specs[first], "nics": [{**specs[first]["nics"][0], "mac": "52:54:00:aa:bb:cc"}]}
    other = ResourceKey.of(Kind.VIRTUAL_MACHINE, "elsewhere")
    other_spec = {**specs[second], "nics": [{**specs[second]["nics"][0], "mac": mac_address(second, 0)}]}
    records = {
        first: record(first, applied=own_spec, nic_live={}),
        other: dataclass_replace(record(other, applied=other_spec, nic_live={}), stack="another"),
    }
    _, resolved = plan_with_specs(PlanRequest(stack=STACK, documents=documents, records=records, live=live(documents)))
    assert resolved[first]["nics"][0]["mac"] == "52:54:00:aa:bb:cc"
    assert resolved[second]["nics"][0]["mac"] == mac_address(second, 0, 0, 1)


def test_a_full_range_gives_every_mac_once_and_one_nic_more_is_refused() -> None:
    # 3 bits: 8 MACs. Eight NICs take all of them, whatever the derived ones missed; a ninth cannot have one.
    documents = fleet(8, hosts=1, cidr="10.0.0.0/24")
    macs = planned_macs(PlanRequest(stack=STACK, documents=documents, records={}, live=live(documents), mac_bits=3))
    assert sorted(macs.values()) == [f"52:54:00:00:00:{value:02x}" for value in range(8)]
    documents = fleet(9, hosts=1, cidr="10.0.0.0/24")
    with pytest.raises(PlanError, match=r"vm/vm000008: nics\[0\]: no free MAC address left"):
        plan_with_specs(PlanRequest(stack=STACK, documents=documents, records={}, live=live(documents), mac_bits=3))
