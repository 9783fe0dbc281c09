"""What a plan may not do: destroy what ``lifecycle.preventDestroy`` protects, take away what a VM that stays still
uses (a backing image, a network, a host, a resource on its host), or take a namespace over its quota.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nebctl.controller.planning.request import PlanRequest
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import ChangeType, ResourceChange
from nebctl.core.quantities import format_quantity
from nebctl.reconcilers.base import RecordView, Removals
from nebctl.schemas.models import VirtualMachine, spec_document, vm_disk_total


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
        if change.type is not ChangeType.UPDATE:
            continue  # (no record read: most of a plan from a kept trace is never even decoded)
        record = own.get(change.key)
        spec = specs.get(change.key)
        if record is not None and record.applied and spec and "hosts" in spec:
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
    """Quotas once the plan is applied. A namespace's: this stack's desired VMs in it plus every other stack's
    recorded ones. A group's (of the user who plans): this stack's desired VMs plus what the group's members
    hold elsewhere (given, as ``GroupQuota.used``). Each excess names the limit, the usage and the request."""
    if not request.quotas and not request.group_quotas:
        return
    requested: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # by namespace: this stack's VMs
    used: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # by namespace: other stacks' VMs

    def add(totals: dict[str, list[int]], namespace: str, vcpu: int, memory: int, disk: int) -> None:
        total = totals[namespace]
        total[0] += 1
        total[1] += vcpu
        total[2] += memory
        total[3] += disk

    for key, document in request.documents.items():
        if isinstance(document, VirtualMachine):
            add(requested, key.namespace, document.spec.vcpu, document.spec.memory, vm_disk_total(document))
    for key, record in request.records.items():
        if key.kind is Kind.VIRTUAL_MACHINE and record.stack != request.stack and record.applied:
            usage = request.reconcilers[key.kind].finished(record.applied).usage
            if usage is not None:
                add(used, key.namespace, usage.vcpu, usage.memory, usage.disk)
    for quota in request.quotas:
        limits = (quota.vms, quota.vcpu, quota.memory, quota.disk)
        _exceeded(
            f"namespace {quota.namespace}", limits, used[quota.namespace], requested[quota.namespace], request, problems
        )
    if request.group_quotas:
        mine = [sum(values) for values in zip(*requested.values(), strict=True)] if requested else [0, 0, 0, 0]
        for group in request.group_quotas:
            limits = (group.vms, group.vcpu, group.memory, group.disk)
            _exceeded(f"group {group.group}", limits, list(group.used), mine, request, problems)


def _exceeded(  # noqa: PLR0917 - the scope, its figures, and where to report
    scope: str,
    limits: tuple[int | None, ...],
    used: Sequence[int],
    requested: Sequence[int],
    request: PlanRequest,
    problems: list[str],
) -> None:
    shows: tuple[Callable[[int], str], ...] = (str, str, format_quantity, format_quantity)
    for label, limit, in_use, asked, show in zip(
        ("VMs", "vCPUs", "memory", "disk"), limits, used, requested, shows, strict=True
    ):
        if limit is not None and in_use + asked > limit:
            problems.append(
                f"{scope}: quota exceeded: {label}: limit {show(limit)}, in use {show(in_use)} by other stacks, "
                f"requested {show(asked)} by stack {request.stack}"
            )
