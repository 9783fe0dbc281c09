"""Each resource's health and each stack's sync status, worked out from what the last sync saw and did.

Pure: ``syncing`` hands in the facts (drift reported or waiting for a heal, failed heals, failed actions, hosts
in error) and stores what comes out; ``nebctl status`` and the metrics read it back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nebctl.core.keys import ResourceKey
from nebctl.database.records import Health, SyncStatus


@dataclass(frozen=True)
class HealthFacts:
    """What one sync knows about the stack's resources."""

    resources: Iterable[ResourceKey]
    hosts: Mapping[ResourceKey, str | None]  # where each resource is, when it is on one host
    degraded: Mapping[ResourceKey, str]  # resource -> why (heals that keep failing)
    backing_off: Mapping[ResourceKey, str]  # resource -> why (a failed heal; the next one waits)
    reported: Mapping[ResourceKey, str]  # drift only reported (report-only mode) -> what changed
    unknown: Iterable[ResourceKey] = ()  # drift nebctl cannot see through (its host does not answer)
    failed: Mapping[ResourceKey, str] | None = None  # resource -> the error of its failed action
    pending: Iterable[ResourceKey] = ()  # changes not applied yet (or not at all: an interrupted sync)
    hosts_in_error: frozenset[str] = frozenset()


def resource_health(facts: HealthFacts) -> dict[ResourceKey, tuple[Health, str | None]]:
    """Each resource's health and why, in this order of precedence: degraded, unknown (its host does not
    answer: it may be fine), out of sync (drift waiting for a heal or only reported, a change not applied),
    healthy."""
    unknown = set(facts.unknown)
    pending = set(facts.pending)
    failed = facts.failed or {}
    result: dict[ResourceKey, tuple[Health, str | None]] = {}
    for key in facts.resources:
        host = facts.hosts.get(key)
        if key in facts.degraded:
            result[key] = (Health.DEGRADED, facts.degraded[key])
        elif key in failed:
            result[key] = (Health.DEGRADED, failed[key])
        elif key in unknown or (host is not None and host in facts.hosts_in_error):
            result[key] = (Health.UNKNOWN, f"host {host} does not answer its probes" if host else "not observed")
        elif key in facts.backing_off:
            result[key] = (Health.OUT_OF_SYNC, facts.backing_off[key])
        elif key in facts.reported:
            result[key] = (Health.OUT_OF_SYNC, facts.reported[key])
        elif key in pending:
            result[key] = (Health.OUT_OF_SYNC, "a change is not applied yet")
        else:
            result[key] = (Health.HEALTHY, None)
    return result


def stack_status(health: Iterable[Health], *, invalid: bool = False) -> SyncStatus:
    """A stack's sync status from its resources' health: unknown when its manifests are invalid (nothing can be
    compared), else the worst of its resources (degraded, out of sync, unknown), else synced."""
    if invalid:
        return SyncStatus.UNKNOWN
    seen = set(health)
    if Health.DEGRADED in seen:
        return SyncStatus.DEGRADED
    if Health.OUT_OF_SYNC in seen:
        return SyncStatus.OUT_OF_SYNC
    if Health.UNKNOWN in seen:
        return SyncStatus.UNKNOWN
    return SyncStatus.SYNCED
