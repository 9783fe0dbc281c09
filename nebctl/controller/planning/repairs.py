"""What a plan does, host by host, about the objects of a multi-host resource deleted or changed outside nebctl.

A reconciler's ``detect_drift`` says what it found on each host and how it repairs it there; two things only the
planner knows change that. A host the manifests no longer put the resource on gets no repair: the object there
is deleted (changed) or left gone (deleted), and the drift says so. And an object that can only be repaired by
deleting it and creating it again (``Observed.rebuilt``: a network, an image volume) is not repaired while a VM
that stays on that host holds it (``Reconciler.holds``: a NIC attached to the network, a disk backed by the
image): libvirt and the sim refuse to delete a network under its NICs, and deleting a backing file would pull it
from under the disks. The apply would fail there, so the plan leaves that host alone and says why, which VMs, and
what the user can do; the rest of the plan still applies. A missing object is always created again: that needs
no VM to stop.

Pure; called by ``changes.resource_changes`` on each resource's ``Observed`` before it is compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from nebctl.controller.planning.request import PlanRequest, sort_key
from nebctl.core.keys import ResourceKey
from nebctl.core.plans import DriftItem
from nebctl.reconcilers.base import Observed, RecordView
from nebctl.reconcilers.identity import deposed_of

# The holders a refusal names one by one; more are counted.
NAMED_HOLDERS = 5


def settle_repairs(
    key: ResourceKey, observed: Observed, record: RecordView, request: PlanRequest, span: Sequence[str]
) -> tuple[Observed, list[DriftItem]]:
    """``observed`` with its drift worded for what the plan does on each host (``span``: the hosts the manifests
    put ``key`` on), less the repairs refused because VMs hold the object; and the refused drift items, which
    nebctl does not correct (the plan's own drift)."""
    if observed.spec is None or not any(item.host for item in observed.drift):
        return observed, []
    staying = set(span)
    refused: dict[str, str] = {}
    for host in observed.rebuilt:
        if host in staying and (holders := _holders(key, host, request)):
            refused[host] = _refusal(host, holders)
    drift: list[DriftItem] = []
    uncorrected: list[DriftItem] = []
    for item in observed.drift:
        if item.host is None:
            drift.append(item)
        elif item.host in refused:
            uncorrected.append(dataclasses.replace(item, correction=refused[item.host]))
        elif item.host not in staying:
            drift.append(dataclasses.replace(item, correction=_dropped(item.host, item.host in observed.changed)))
        else:
            drift.append(item)
    if not refused:
        return dataclasses.replace(observed, drift=tuple(drift)), []
    # A refused host is left as it is: taken to hold what was applied, so nothing is planned there.
    applied = record.applied or {}
    seen = {str(host) for host in observed.spec.get("hosts") or ()} | set(refused)
    hosts = [str(host) for host in applied.get("hosts") or () if str(host) in seen]
    settled = Observed(
        spec={**observed.spec, "hosts": hosts},
        drift=tuple(drift),
        unknown=observed.unknown,
        changed=tuple(host for host in observed.changed if host not in refused),
        rebuilt=tuple(host for host in observed.rebuilt if host not in refused),
    )
    return settled, uncorrected


def _dropped(host: str, changed: bool) -> str:
    if changed:
        return f"the manifests no longer put it on {host}: it will be deleted there, not repaired"
    return f"the manifests no longer put it on {host}: it is not created again there"


def _holders(key: ResourceKey, host: str, request: PlanRequest) -> list[tuple[ResourceKey, str]]:
    """The resources on ``host`` (of any stack) that hold the live object of ``key`` there and stay: a VM this
    plan deletes releases it first, so it holds nothing."""
    found = []
    for other, record in request.records.items():
        if record.host != host or record.applied is None or _deleted(other, record, request):
            continue
        how = request.reconcilers[other.kind].holds(other, record, key)
        if how is not None:
            found.append((other, how))
    return sorted(found, key=lambda pair: sort_key(pair[0]))


def _deleted(key: ResourceKey, record: RecordView, request: PlanRequest) -> bool:
    """Whether this plan deletes ``key``'s record (as ``changes.resource_changes`` decides it)."""
    if record.stack != request.stack or key in request.documents:
        return False
    return request.prune or record.status == "deleting" or deposed_of(key, record.live) is not None


def _refusal(host: str, holders: Sequence[tuple[ResourceKey, str]]) -> str:
    named = ", ".join(f"{key} {how}" for key, how in holders[:NAMED_HOLDERS])
    if len(holders) > NAMED_HOLDERS:
        named += f" and {len(holders) - NAMED_HOLDERS} more"
    them, it = ("that VM", "it") if len(holders) == 1 else ("those VMs", "them")
    return (
        f"nebctl cannot repair it there while {named}: it would have to be deleted and created again. Put it "
        f"back as applied by hand, or move {them} off {host} (or delete {it}), then apply again"
    )
