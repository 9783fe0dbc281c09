"""``controller.sampling.samples_of``: the rows of one observation, one per probed host and one per VM nebctl owns;
of a few hosts when asked (those an observation probed again), without building the other hosts' VMs of a view
read back in chunks."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

from nebctl.controller.sampling import samples_of
from nebctl.core.deferred import DeferredChunks
from nebctl.database.records import HostSampleRecord, VMSampleRecord
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import HostProbe, Ownership, VMStatus
from nebctl.reconcilers.base import LiveView

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _vm(name: str, *, owned: bool = True) -> VMStatus:
    owner = Ownership("s", "VirtualMachine", "default", name, 0, "install") if owned else None
    return VMStatus(uuid=f"u-{name}", name=name, state=VMLiveState.RUNNING, vcpu=1, memory=2**30, owner=owner)


def _view(chunked: bool) -> LiveView:
    hosts = {name: HostProbe(name=name, state=HostLiveState.ONLINE, cpus=4, memory=2**33) for name in ("h1", "h2")}
    where = {"u-a": "h1", "u-b": "h2", "u-c": "h2", "u-stray": "h1"}
    vms = {uuid: _vm(uuid[2:], owned=uuid != "u-stray") for uuid in where}
    if chunked:  # as a kept observation reads back: its VMs in chunks by host, none built yet
        vms = pickle.loads(pickle.dumps(DeferredChunks(vms, where.get)))
    return LiveView(hosts=hosts, vms=vms, vm_hosts=where)


def _names(samples: tuple[list[HostSampleRecord], list[VMSampleRecord]]) -> tuple[list[str], list[tuple[str, str]]]:
    hosts, vms = samples
    return [h.host for h in hosts], sorted((v.name, v.host) for v in vms)


def test_every_host_and_owned_vm_or_those_of_the_hosts_asked() -> None:
    live = _view(chunked=False)
    assert _names(samples_of(live, {}, AT)) == (["h1", "h2"], [("a", "h1"), ("b", "h2"), ("c", "h2")])
    assert _names(samples_of(live, {}, AT, only=["h2"])) == (["h2"], [("b", "h2"), ("c", "h2")])
    assert _names(samples_of(live, {}, AT, only=[])) == ([], [])
    [sample] = samples_of(live, {}, AT, only=["h1"])[1]
    assert (sample.namespace, sample.name, sample.time, sample.state) == ("default", "a", AT, "running")


def test_the_vms_of_the_hosts_not_asked_are_not_built() -> None:
    live = _view(chunked=True)
    assert isinstance(live.vms, DeferredChunks)
    assert _names(samples_of(live, {}, AT, only=["h1"])) == (["h1"], [("a", "h1")])
    assert live.vms.chunks_read == 1  # h1's
