"""What a plan may not do: destroy what ``lifecycle.preventDestroy`` protects, take away what a VM that stays still
uses (a backing image, a network, a host, a resource on its host), or take a namespace over its quota.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from nebctl.controller.planning.placing import vm_disk_total
from nebctl.controller.planning.request import PlanRequest
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import ChangeType, ResourceChange
from nebctl.core.quantities import format_quantity
from nebctl.reconcilers.base import RecordView, Removals
from nebctl.schemas.models import VirtualMachine, spec_document


def _prevents_destroy(spec: Mapping[str, Any] | None) -> bool:
    return bool(spec and spec.get("lifecycle", {}).get("preventDestroy"))


def check_deletions(
    changes: Sequence[ResourceChange],
    request: PlanRequest,
    own: Mapping[ResourceKey, RecordView],
    problems: list[str],
    specs: Mapping[ResourceKey, Mapping[str, Any]],
) -> None:
    going = {c.key for c in changes if c.type in (ChangeType.DELETE, ChangeType.REPLACE)}
    deleted = {c.key for c in changes if c.type is ChangeType.DELETE}
    for change in changes:
        if change.type not in (ChangeType.DELETE, ChangeType.REPLACE):
            continue
        document = request.documents.get(change.key)
        record = own.get(change.key)
        desired = spec_document(document) if document is not None else None
        if _prevents_destroy(desired) or _prevents_destroy(record.applied if record else None):
            verb = "destroy" if change.type is ChangeType.DELETE else "replace"
            problems.append(f"{change.key}: lifecycle.preventDestroy is set, and this plan would {verb} it")
    # Images still backing the disks of VMs that stay cannot go away; hosts with VMs that stay cannot either.
    # A disk that an update of this plan removes (the VM keeps fewer disks) is deleted before the image.
    updated = {c.key for c in changes if c.type is ChangeType.UPDATE}
    leaving: dict[str, set[ResourceKey]] = defaultdict(set)  # host -> spanned resources this plan removes there
    for change in changes:
        record = own.get(change.key)
        spec = specs.get(change.key)
        if change.type is ChangeType.UPDATE and record is not None and record.applied and spec and "hosts" in spec:
            for host in set(record.applied.get("hosts") or ()) - set(spec["hosts"]):
                leaving[str(host)].add(change.key)
    touched_paths = {c.key: [f.path for f in c.fields] for c in changes if c.type is ChangeType.UPDATE}
    if not going and not leaving:
        return  # nothing goes away anywhere (the usual re-plan): no VM can be left without what it uses
    removals = Removals(going=going, deleted=deleted, updated=updated, leaving=leaving, touched_paths=touched_paths)
    for key, record in own.items():
        if key in going or record.applied is None:
            continue
        # What a resource that stays still uses that this plan takes away: its kind's rule (a VM's disks,
        # NICs, host and what it uses on that host).
        problems.extend(
            request.reconcilers[key.kind].still_uses(key, record, request.documents.get(key), specs, removals)
        )


def check_quotas(request: PlanRequest, problems: list[str]) -> None:
    """Totals per namespace once the plan is applied (this stack's desired VMs plus every other stack's
    recorded ones) against the namespace's quota."""
    if not request.quotas:
        return
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])

    def add(namespace: str, vcpu: int, memory: int, disk: int) -> None:
        total = totals[namespace]
        total[0] += 1
        total[1] += vcpu
        total[2] += memory
        total[3] += disk

    for key, document in request.documents.items():
        if isinstance(document, VirtualMachine):
            add(key.namespace, document.spec.vcpu, document.spec.memory, vm_disk_total(document))
    for key, record in request.records.items():
        if key.kind is Kind.VIRTUAL_MACHINE and record.stack != request.stack and record.applied:
            applied = record.applied
            usage = request.reconcilers[key.kind].finished(applied).usage
            if usage is not None:
                add(key.namespace, usage.vcpu, usage.memory, usage.disk)
    for quota in request.quotas:
        vms, vcpu, memory, disk = totals.get(quota.namespace, [0, 0, 0, 0])
        for label, used, limit, show in (
            ("VMs", vms, quota.vms, str),
            ("vCPUs", vcpu, quota.vcpu, str),
            ("memory", memory, quota.memory, format_quantity),
            ("disk", disk, quota.disk, format_quantity),
        ):
            if limit is not None and used > limit:
                problems.append(
                    f"namespace {quota.namespace}: quota exceeded: {label} {show(used)} requested, "
                    f"{show(limit)} allowed"
                )
