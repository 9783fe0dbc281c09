"""The ``serve`` section of the configuration file: the reconciliation service's intervals, modes and limits.

Part of ``core.settings.Settings`` (as ``settings.serve``); ``nebctl serve``'s options override it. Every
duration accepts the manifests' forms (``30s``, ``3m``, ``24h``) or seconds. docs/service.md lists each field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nebctl.core.quantities import parse_duration

_DURATIONS = (
    "interval",
    "debounce",
    "host_interval",
    "vm_interval",
    "probe_timeout",
    "backoff_initial",
    "backoff_max",
    "lock_wait",
    "request_poll",
    "raw_retention",
    "five_minute_retention",
    "hourly_retention",
    "housekeeping_interval",
    "lease",
    "lease_renew",
    "lease_retry",
)


class StackServeSettings(BaseModel):
    """Per-stack overrides of the service's behaviour."""

    model_config = ConfigDict(extra="forbid")

    self_heal: bool | None = Field(default=None, description="Correct drift (true) or only report it (false).")
    prune: bool | None = Field(default=None, description="Delete resources removed from the manifests.")


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    listen: str = Field(default="127.0.0.1:8470", description="HOST:PORT of the HTTP server.")
    interval: float = Field(default=180.0, gt=0, description="Resync interval: a full re-plan even without change.")
    jitter: float = Field(default=0.1, ge=0, le=1, description="Random share added to each resync interval.")
    debounce: float = Field(default=1.0, ge=0, description="Quiet time after a file change before re-planning.")
    self_heal: bool = Field(default=True, description="Correct drift (true) or only report it (false).")
    stacks: dict[str, StackServeSettings] = Field(default_factory=dict)
    host_interval: float = Field(default=60.0, gt=0, description="Host probes (and custom probe programs).")
    vm_interval: float = Field(default=10.0, gt=0, description="VM state probes (one bulk call per host).")
    probe_timeout: float = Field(default=10.0, gt=0, description="Timeout of each custom probe program.")
    monitor_parallelism: int = Field(default=16, ge=1, le=1024, description="Hosts probed at once.")
    host_error_after: int = Field(default=3, ge=1, description="Missed probes before a host is in error.")
    backoff_initial: float = Field(default=2.0, gt=0, description="Delay after a resource's first failed heal.")
    backoff_factor: float = Field(default=3.0, ge=1, description="Each further failure multiplies the delay.")
    backoff_max: float = Field(default=300.0, gt=0, description="Cap on the delay between heals.")
    degraded_after: int = Field(default=3, ge=1, description="Failed heals before a resource is degraded.")
    lock_wait: float = Field(default=30.0, ge=0, description="How long a sync waits for another writer.")
    request_poll: float = Field(default=1.0, gt=0, description="How often `nebctl sync` requests are looked for.")
    raw_retention: float = Field(default=86400.0, gt=0, description="Raw samples kept (then 5-minute means).")
    five_minute_retention: float = Field(default=30 * 86400.0, gt=0, description="5-minute means kept.")
    hourly_retention: float = Field(default=365 * 86400.0, gt=0, description="Hourly means kept.")
    housekeeping_interval: float = Field(default=600.0, gt=0, description="How often samples are downsampled.")
    lease: float = Field(default=15.0, gt=0, description="How long the leader lease of the replicas lasts.")
    lease_renew: float = Field(default=5.0, gt=0, description="How often the leader renews its lease.")
    lease_retry: float = Field(default=2.0, gt=0, description="How often a follower tries to take the lease.")
    replica: str | None = Field(
        default=None, max_length=128, description="This replica's name (default: HOST:PID); unique per stack."
    )

    @model_validator(mode="after")
    def _lease_timing(self) -> ServeSettings:
        # A renewal must land before the lease runs out, with room for one failed attempt.
        if self.lease_renew * 2 > self.lease:
            raise ValueError(
                f"serve.lease_renew ({self.lease_renew:g}s) must be at most half of serve.lease ({self.lease:g}s)"
            )
        if self.lease_retry > self.lease:
            raise ValueError(f"serve.lease_retry ({self.lease_retry:g}s) must not exceed serve.lease ({self.lease:g}s)")
        return self

    @field_validator(*_DURATIONS, mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    def self_heal_for(self, stack: str) -> bool:
        override = self.stacks.get(stack)
        return self.self_heal if override is None or override.self_heal is None else override.self_heal

    def prune_for(self, stack: str, default: bool) -> bool:
        override = self.stacks.get(stack)
        return default if override is None or override.prune is None else override.prune
