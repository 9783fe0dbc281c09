"""What a plan is asked for and how it fails: the request (desired documents, every record, the live view,
the options and the reconcilers), the error listing every reason a plan cannot be made, and the helpers every
planning step shares (the order of kinds, the references of a resource as its reconciler reads them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from nebctl.core.keys import Kind, ResourceKey, sort_key
from nebctl.reconcilers.base import LiveView, Reconciler, RecordView
from nebctl.reconcilers.catalogue import RECONCILERS
from nebctl.reconcilers.identity import MAC_BITS
from nebctl.schemas.models import AnyManifest

# The order resources are listed in a plan, and the tie-break among independent resources (``core.keys.sort_key``).
KIND_ORDER = list(Kind)  # the enum lists the kinds in that order

__all__ = ["KIND_ORDER", "PlanError", "PlanRequest", "QuotaLimit", "own_records", "references", "sort_key"]


class PlanError(Exception):
    """The plan cannot be made; ``problems`` lists every reason, each naming the resource. ``details`` says more
    where a problem is a summary (every host's reason for a VM that fits on no host), for ``-v``."""

    def __init__(self, problems: Sequence[str], details: Sequence[str] = ()) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)
        self.details = list(details)


@dataclass(frozen=True)
class QuotaLimit:
    """Most a namespace may hold, all stacks together; None means no limit on that dimension."""

    namespace: str
    vms: int | None = None
    vcpu: int | None = None
    memory: int | None = None
    disk: int | None = None


@dataclass(frozen=True)
class GroupQuota:
    """Most the VMs of a group's members may hold, all stacks together, and what they hold outside the stack
    being planned (VMs, vCPUs, memory bytes, disk bytes); None means no limit on that dimension."""

    group: str
    used: tuple[int, int, int, int] = (0, 0, 0, 0)
    vms: int | None = None
    vcpu: int | None = None
    memory: int | None = None
    disk: int | None = None


@dataclass(frozen=True)
class PlanRequest:
    stack: str
    documents: Mapping[ResourceKey, AnyManifest]
    records: Mapping[ResourceKey, RecordView]  # every record of the database, all stacks
    live: LiveView
    prune: bool = False
    targets: frozenset[ResourceKey] = frozenset()
    excludes: frozenset[ResourceKey] = frozenset()
    quotas: Sequence[QuotaLimit] = ()
    group_quotas: Sequence[GroupQuota] = ()  # of the groups of the user who plans
    mac_bits: int = MAC_BITS  # of the digest a derived MAC takes (``identity.mac_address``)
    # Each kind's reconciler: every rule of a kind the planner follows is its reconciler's.
    reconcilers: Mapping[Kind, Reconciler] = field(default_factory=lambda: RECONCILERS)


Record = TypeVar("Record", bound=RecordView)
Held_co = TypeVar("Held_co", bound=RecordView, covariant=True)


@runtime_checkable
class ByStack(Protocol[Held_co]):
    """Records that tell their stack's own without reading every record (``database.record_rows.RecordRows``)."""

    def of_stack(self, stack: str) -> Mapping[ResourceKey, Held_co]: ...


@runtime_checkable
class RecordSummaries(Protocol):
    """Records that tell each one's stack, the digest of its applied spec and its status without reading it
    (``database.record_rows.RecordRows``): what a plan's fingerprint is made of."""

    def summary(self, key: ResourceKey) -> tuple[str, str | None, str]: ...


def own_records(records: Mapping[ResourceKey, Record], stack: str) -> Mapping[ResourceKey, Record]:
    """The records of ``stack``: through the records' own view when they have one (``ByStack``), which a plan made
    from a kept trace needs, since it reads only a few records; otherwise a dict of them."""
    if isinstance(records, ByStack):
        return cast("Mapping[ResourceKey, Record]", records.of_stack(stack))
    return {key: record for key, record in records.items() if record.stack == stack}


def references(request: PlanRequest, key: ResourceKey, spec: Mapping[str, Any] | None) -> set[ResourceKey]:
    """The resources ``key`` refers to in ``spec`` (manifest references, resolved hosts, dependsOn), as its kind's
    reconciler reads them."""
    if not spec:
        return set()
    return {reference.target for reference in request.reconcilers[key.kind].references(key, spec)}
