"""What the quotas of groups and namespaces are measured against: the VMs each holds now.

A namespace holds the VMs recorded in it (all stacks). A group holds the VMs placed by its members: the owner
of a placement (``accounting_history.owner``, the user whose apply placed the VM) is a member of the group.
``Controller.plan`` calls ``group_quotas`` for the user who plans (the API's identity, or the CLI's system user)
so that the planner (``planning.guards.check_quotas``) refuses a plan taking a group over its quota; ``nebctl
quota list`` shows ``usage`` beside the limits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from nebctl.controller.planning import GroupQuota
from nebctl.core.keys import Kind
from nebctl.database.store import Store
from nebctl.reconcilers.catalogue import RECONCILERS


@dataclass(frozen=True)
class Usage:
    vms: int = 0
    vcpu: int = 0
    memory: int = 0
    disk: int = 0

    def plus(self, vcpu: int, memory: int, disk: int) -> Usage:
        return Usage(self.vms + 1, self.vcpu + vcpu, self.memory + memory, self.disk + disk)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.vms, self.vcpu, self.memory, self.disk)


def members(store: Store) -> dict[str, set[str]]:
    """Each group's users."""
    groups: dict[str, set[str]] = defaultdict(set)
    for user in store.list_users():
        for group in user.groups:
            groups[group].add(user.name)
    return groups


def group_usage(store: Store, group_members: set[str], *, except_stack: str | None = None) -> Usage:
    """The VMs placed now (open placement records) by ``group_members``, outside ``except_stack``."""
    usage = Usage()
    for record in store.list_history():
        if record.ended_at is None and record.owner in group_members and record.stack != except_stack:
            usage = usage.plus(record.vcpu, record.memory, record.disk)
    return usage


def namespace_usage(store: Store) -> dict[str, Usage]:
    """The VMs recorded in each namespace, as their records hold them once applied."""
    usage: dict[str, Usage] = defaultdict(Usage)
    reconciler = RECONCILERS[Kind.VIRTUAL_MACHINE]
    for record in store.list_resources(kind=Kind.VIRTUAL_MACHINE):
        if record.applied:
            held = reconciler.finished(record.applied).usage
            if held is not None:
                usage[record.namespace] = usage[record.namespace].plus(held.vcpu, held.memory, held.disk)
    return usage


def group_quotas(store: Store, *, user: str, groups: Sequence[str] | None, stack: str) -> list[GroupQuota]:
    """The quotas of ``user``'s groups (``groups``, or the user's record's), with each group's usage outside
    ``stack``."""
    quotas = [q for q in store.list_quotas() if q.scope_type == "group"]
    if not quotas:
        return []
    if groups is None:
        record = store.get_user(user)
        groups = record.groups if record is not None else ()
    mine = [q for q in quotas if q.scope in groups]
    if not mine:
        return []
    everyone = members(store)
    return [
        GroupQuota(
            q.scope,
            group_usage(store, everyone.get(q.scope, set()) | {user}, except_stack=stack).as_tuple(),
            vms=q.vms,
            vcpu=q.vcpu,
            memory=q.memory,
            disk=q.disk,
        )
        for q in mine
    ]
