"""Diff and plan: from the desired state (manifests) and the observed state (records + monitoring) to a Plan.

``make_plan`` is pure: it takes values and returns a ``Plan`` (or raises ``PlanError`` listing every reason the
plan cannot be made), with no I/O, clock or randomness, so the same input always gives the same plan. It
decides, in this order (``planner``): which hosts each multi-host resource spans, where new VMs go (``placing``),
what each kind settles for the whole plan, such as the address and MAC of each NIC and the datastore of each disk
(its reconciler's ``resolve``), what changed for every resource
(manifest changes and drift, through the kind's reconciler: ``changes``), what may not happen (preventDestroy,
shrinking disks, immutable fields, images still in use, quotas: ``guards``), what ``--target``/``--exclude``
keep (``selection``), and finally the action graph with the order between resources (``graph``) and the
fingerprint of what the plan was made from (``fingerprint``).

A planner that lives on (the service's) hands each plan the trace of its last one (``plan_again``), and only the
resources that moved are planned again when nothing the installation shares moved with them (``incremental``).

A VM replaced with ``lifecycle.createBeforeDestroy`` is only known to be replaced once its changes are known,
after placement and leases; but its new VM must be placed beside the old one and lease other addresses. So
when a first pass finds such replacements, the plan is made again with the old VMs *deposed* (``replacement``):
each kept as a record of its own, deleted once its replacement runs, as the apply's journal will write it.

Every rule of a kind comes from its reconciler (``PlanRequest.reconcilers``): its references, what it resolves,
the paths it ignores, whether it creates first, what it still uses, its actions and their phases. Used by
``controller.applying`` (the apply loop), the CLI's ``diff`` and the benchmarks.
"""

from nebctl.controller.planning.fingerprint import fingerprint
from nebctl.controller.planning.incremental import PlanTrace, Replan, kept_trace, with_moved_records
from nebctl.controller.planning.planner import make_plan, plan_again, plan_with_specs
from nebctl.controller.planning.request import (
    KIND_ORDER,
    GroupQuota,
    PlanError,
    PlanRequest,
    QuotaLimit,
    own_records,
)

__all__ = [
    "KIND_ORDER",
    "GroupQuota",
    "PlanError",
    "PlanRequest",
    "PlanTrace",
    "QuotaLimit",
    "Replan",
    "fingerprint",
    "kept_trace",
    "make_plan",
    "own_records",
    "plan_again",
    "plan_with_specs",
    "with_moved_records",
]
