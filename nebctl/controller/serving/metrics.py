"""The service's Prometheus metrics, in a registry of their own (so that two services in one process, as in
tests, do not clash, and nothing else of the process leaks into ``/metrics``).

``syncing`` counts syncs and times reconciliations and driver actions, ``monitoring`` sets each host's
``up``, ``service`` publishes each stack's drift and status, ``leading`` the replica's role and the lease's
term; ``nebctl.api`` serves ``render()`` at ``/metrics``.
docs/service.md lists every metric.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

_ACTION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_RECONCILE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.sync_total = Counter(
            "nebctl_sync_total", "Syncs of a stack, by result.", ["stack", "result"], registry=self.registry
        )
        self.plans_total = Counter(
            "nebctl_plans_total",
            "Plans made of a stack: whole, or from the last plan's trace (only what moved planned again).",
            ["stack", "how"],
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "nebctl_reconcile_duration_seconds",
            "Time of one reconciliation of a stack: load, observe, plan and apply.",
            buckets=_RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self.action_duration = Histogram(
            "nebctl_action_duration_seconds",
            "Time of one driver action, from its start to its end.",
            ["family", "action", "result"],
            buckets=_ACTION_BUCKETS,
            registry=self.registry,
        )
        self.drift_resources = Gauge(
            "nebctl_drift_resources",
            "Resources of a stack changed outside nebctl at the last sync, by kind.",
            ["stack", "kind"],
            registry=self.registry,
        )
        self.host_up = Gauge(
            "nebctl_host_up",
            "1 when the host answers its probes, 0 when it is in error.",
            ["host"],
            registry=self.registry,
        )
        self.stack_info = Gauge(
            "nebctl_stack_info",
            "Always 1; the labels carry the stack's sync status and revision.",
            ["stack", "sync_status", "revision"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "nebctl_leader",
            "1 while this replica leads (holds the leader lease and acts), else 0.",
            ["replica"],
            registry=self.registry,
        )
        self.lease_term = Gauge(
            "nebctl_lease_term", "The leader lease's term, as this replica last saw it.", registry=self.registry
        )
        self.leader_changes = Counter(
            "nebctl_leader_changes",
            "Changes of leader (new terms of the lease) this replica has seen.",
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._info: dict[str, tuple[str, str]] = {}
        self._drift_kinds: dict[str, set[str]] = {}

    def set_stack_info(self, stack: str, sync_status: str, revision: str | None) -> None:
        labels = (sync_status, revision or "")
        with self._lock:
            previous = self._info.get(stack)
            if previous == labels:
                return
            if previous is not None:
                self.stack_info.remove(stack, *previous)
            self.stack_info.labels(stack, *labels).set(1)
            self._info[stack] = labels

    def set_drift(self, stack: str, counts: dict[str, int]) -> None:
        with self._lock:
            for kind in self._drift_kinds.get(stack, set()) - set(counts):
                self.drift_resources.labels(stack, kind).set(0)
            for kind, count in counts.items():
                self.drift_resources.labels(stack, kind).set(count)
            self._drift_kinds[stack] = self._drift_kinds.get(stack, set()) | set(counts)

    def render(self) -> bytes:
        return generate_latest(self.registry)
