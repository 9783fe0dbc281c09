"""The configuration file (``--config``, default ``$XDG_CONFIG_HOME/nebctl/config.yaml``) as a typed model.

Settings are read once by the CLI or the service and passed down; nothing reads the environment or the file at
import time. Every field has a default, so an absent file means the embedded defaults.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nebctl.core.quantities import QuantityError, parse_duration, parse_quantity
from nebctl.core.service import ServeSettings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetryPolicy(_Strict):
    """How the executor retries an action after a temporary error: the ``retry`` section of the settings."""

    attempts: int = Field(default=5, ge=1, le=100, description="Attempts per action for temporary errors.")
    initial_delay: float = Field(default=0.2, ge=0, description="Seconds before the first retry.")
    max_delay: float = Field(default=30.0, ge=0, description="Cap on the backoff delay.")
    multiplier: float = Field(default=2.0, ge=1)
    jitter: float = Field(default=0.2, ge=0, le=1, description="Random share added to or taken from each delay.")

    def delay(self, attempt: int, suggested: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if suggested is not None:
            return max(0.0, min(self.max_delay, suggested))
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        # The cap applies after the jitter too: max_delay is the longest any action waits between attempts.
        return max(0.0, min(self.max_delay, base * (1 + self.jitter * (2 * rng.random() - 1))))


class ImageCacheSettings(_Strict):
    dir: Path | None = Field(default=None, description="Where downloaded images are kept (default: STATE_DIR/images).")
    limit: int = Field(default=20 * 1024**3, ge=0, description="Largest total size of the cache (a quantity: 20Gi).")

    @field_validator("limit", mode="before")
    @classmethod
    def _quantity(cls, value: object) -> int:
        return parse_quantity(value)

    def root(self, state_dir: Path | None) -> Path | None:
        """The cache's directory, or None when neither it nor a state directory is configured."""
        return self.dir if self.dir is not None else state_dir / "images" if state_dir is not None else None


class PriceOverride(_Strict):
    """Prices for one host, or for the hosts carrying all the given labels; unset prices keep the base ones."""

    host: str | None = Field(default=None, description="The Host resource these prices apply to.")
    labels: dict[str, str] = Field(default_factory=dict, description="Hosts carrying all these labels.")
    vcpu_hour: float | None = Field(default=None, ge=0)
    memory_gib_hour: float | None = Field(default=None, ge=0)
    disk_gib_hour: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_target(self) -> PriceOverride:
        if (self.host is None) == (not self.labels):
            raise ValueError("a price override names either a host or labels (exactly one of them)")
        if self.vcpu_hour is None and self.memory_gib_hour is None and self.disk_gib_hour is None:
            raise ValueError("a price override sets at least one of vcpu_hour, memory_gib_hour, disk_gib_hour")
        return self


class PricingSettings(_Strict):
    """The price book of ``nebctl showback`` (docs/accounting.md)."""

    currency: str = Field(default="EUR", min_length=1, max_length=16, description="Shown with every cost.")
    vcpu_hour: float = Field(default=0.0, ge=0, description="Price of one vCPU for one hour.")
    memory_gib_hour: float = Field(default=0.0, ge=0, description="Price of one GiB of memory for one hour.")
    disk_gib_hour: float = Field(default=0.0, ge=0, description="Price of one GiB of disk for one hour.")
    only_running: bool = Field(
        default=False, description="Charge CPU and memory only while VMs run (disk is always charged)."
    )
    overrides: list[PriceOverride] = Field(default_factory=list, description="Per-host or per-label prices.")
    instance_hour: dict[str, float] = Field(
        default_factory=dict,
        description="Cloud hosts: price of one instance-hour by TYPE or REGION.TYPE (controller/cloudprices.py).",
    )


class DatabaseSettings(_Strict):
    """Timeouts of the state database, in seconds (durations such as ``30s`` are accepted)."""

    connect_timeout: float = Field(default=10.0, gt=0, description="Servers: to connect and log in.")
    read_timeout: float = Field(default=60.0, gt=0, description="Servers: to answer one statement.")
    write_timeout: float = Field(default=60.0, gt=0, description="Servers: to accept what is sent.")
    busy_timeout: float = Field(default=30.0, ge=0, description="SQLite: for another writer to finish.")


class PasswordHashing(_Strict):
    """argon2id's cost of the built-in authentication driver. The defaults are OWASP's recommended minimum
    (19 MiB, 2 passes, 1 lane); a stored hash made with other parameters is rehashed at the next good login."""

    memory_cost: int = Field(default=19456, ge=8, description="KiB of memory per hash.")
    time_cost: int = Field(default=2, ge=1, description="Passes over the memory.")
    parallelism: int = Field(default=1, ge=1, le=64, description="Lanes.")


class AccessSettings(_Strict):
    """Authentication and authorization of the HTTP API (docs/api.md)."""

    passwords: PasswordHashing = Field(default_factory=PasswordHashing)
    exec_program: Path | None = Field(
        default=None, description="The exec authentication driver's program (JSON on stdin, identity on stdout)."
    )
    exec_timeout: float = Field(default=5.0, gt=0, description="Seconds the exec program may take.")
    exec_unknown_users: bool = Field(
        default=False, description="Users not in the database log in through the exec program (LDAP and the like)."
    )
    authorize_program: Path | None = Field(
        default=None, description="A program run after the built-in verdict, which it may overturn."
    )
    authorize_timeout: float = Field(default=5.0, gt=0, description="Seconds the authorize program may take.")
    login_free_failures: int = Field(default=3, ge=0, description="Failed logins before they are slowed.")
    login_delay: float = Field(default=0.5, ge=0, description="Seconds of the first delay; doubled each failure.")
    login_max_delay: float = Field(default=30.0, ge=0, description="Cap on the delay of a failed login.")
    login_window: float = Field(default=900.0, gt=0, description="Seconds after which failures are forgotten.")
    token_lifetime: float = Field(default=86400.0, gt=0, description="Seconds a token from a login lasts.")

    @field_validator(
        "exec_timeout",
        "authorize_timeout",
        "login_delay",
        "login_max_delay",
        "login_window",
        "token_lifetime",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class ApiSettings(_Strict):
    """The HTTP API of ``nebctl serve`` (docs/api.md)."""

    max_body: int = Field(default=8 * 1024**2, ge=1024, description="Largest request body (a quantity: 8Mi).")
    webhook_max_body: int = Field(default=1024**2, ge=1024, description="Largest webhook body (1Mi).")
    webhook_secret_file: Path | None = Field(
        default=None, description="File holding the git webhooks' HMAC secret (no webhooks without it)."
    )
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS (none by default).")
    metrics_auth: bool = Field(default=False, description="Require authentication on /metrics too.")
    events_page: int = Field(default=100, ge=1, le=10000, description="Events per page by default.")

    @field_validator("max_body", "webhook_max_body", mode="before")
    @classmethod
    def _quantity(cls, value: object) -> int:
        return parse_quantity(value)


class Settings(_Strict):
    prune: bool = Field(default=False, description="Delete resources removed from the manifests (like --prune).")
    parallelism: int = Field(default=16, ge=1, le=1024)
    lock_timeout: float = Field(default=0.0, ge=0, description="Seconds a writer waits for the lock.")
    shutdown_timeout: float = Field(default=60.0, ge=0, description="Seconds of ACPI shutdown before a hard stop.")
    timeouts: dict[str, float] = Field(
        default_factory=dict,
        description="Action timeouts in seconds, by 'family' or 'family.action' (e.g. virtualization.deploy).",
    )
    default_timeout: float = Field(default=300.0, gt=0)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    driver_dir: Path | None = Field(default=None, description="Root of external-program drivers (exec).")
    probes_dir: Path | None = Field(default=None, description="Custom host probe programs (KEY=VALUE output).")
    state_dir: Path | None = Field(default=None, description="Where local state lives (the sim fleet's file).")
    manifest_cache: bool = Field(
        default=True,
        description="Keep checked manifest files, plans that changed nothing, observations and plan traces under "
        "state_dir/cache, so diff and apply neither parse unchanged files, plan an unchanged set again, nor plan "
        "every resource again after an edit of a few (safe to delete at any time).",
    )
    observation_max_age: float = Field(
        default=60.0,
        ge=0,
        description="Seconds the hosts' usage figures (load, free memory) of a kept observation may serve a plan; "
        "past that, diff and apply probe each host again, not its VMs, while the drivers vouch for those.",
    )
    drivers: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Options per driver name, handed to the driver's factory."
    )
    image_cache: ImageCacheSettings = Field(
        default_factory=ImageCacheSettings, description="The cache of downloaded images (one download per image)."
    )
    serve: ServeSettings = Field(default_factory=ServeSettings, description="The service (nebctl serve).")
    database: DatabaseSettings = Field(
        default_factory=DatabaseSettings, description="Timeouts of the state database (docs/database.md)."
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="The key of the digests of secrets in the database (default: secret.key in state_dir); "
        "$NEBCTL_SECRET_KEY_FILE overrides it.",
    )
    pricing: PricingSettings = Field(default_factory=PricingSettings, description="showback prices.")
    access: AccessSettings = Field(default_factory=AccessSettings, description="The API's access control.")
    api: ApiSettings = Field(default_factory=ApiSettings, description="The HTTP API of nebctl serve.")

    def timeout_for(self, family: str, action: str) -> float:
        """The timeout of one action: 'family.action', else 'family', else the default."""
        return self.timeouts.get(f"{family}.{action}", self.timeouts.get(family, self.default_timeout))


def parse_settings(data: dict[str, Any]) -> Settings:
    """Build settings from parsed YAML, accepting durations such as ``30s`` in the timeout fields."""
    data = dict(data)
    for key in ("lock_timeout", "shutdown_timeout", "default_timeout", "observation_max_age"):
        if key in data:
            data[key] = _duration(key, data[key])
    if isinstance(data.get("database"), dict):
        data["database"] = {
            key: _duration(f"database.{key}", value) if key.endswith("_timeout") else value
            for key, value in data["database"].items()
        }
    if isinstance(data.get("timeouts"), dict):
        data["timeouts"] = {k: _duration(f"timeouts.{k}", v) for k, v in data["timeouts"].items()}
    return Settings.model_validate(data)


def _duration(key: str, value: object) -> float:
    """``parse_duration`` of the setting ``key``, whose name its error starts with."""
    try:
        return parse_duration(value)
    except QuantityError as error:
        raise QuantityError(f"{key}: {error}") from None
