"""The sim drivers of the families not tied to a host: authorization, marketplace, hooks.

Registered by ``nebctl.drivers.registry``; used by the service's API tests and the demo. Users, denials and the
marketplace catalogue are rows of the fleet file, set with ``SimFleet.add_user``, ``deny`` and
``add_appliance``. The hooks driver runs nothing: it records each run (hook name and payload) in the fleet file
and reports success, so tests can see which hooks fired without starting processes.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from nebctl.core.families import Family
from nebctl.drivers.errors import NotFoundError, PermanentError
from nebctl.drivers.sim.compute import SimDriver
from nebctl.drivers.sim.fleet import edge
from nebctl.drivers.types import Appliance, AuthorizationRequest, HookProgram, HookResult, Identity, MarketplaceRef


class SimAuthorization(SimDriver):
    family: ClassVar[Family] = Family.AUTHORIZATION
    capabilities: ClassVar[frozenset[str]] = frozenset({"authenticate", "authorize"})

    @edge
    def authenticate(self, user: str, secret: str) -> Identity:
        self.fleet.enter_service("authorization.authenticate")
        row = self.fleet.store.read().execute("SELECT secret, groups FROM users WHERE name = ?", (user,)).fetchone()
        # One message for an unknown user and a wrong secret, so a caller cannot probe which users exist.
        if row is None or not hmac.compare_digest(str(row[0]).encode(), secret.encode()):
            raise PermanentError(f"authentication failed for {user!r}", driver="sim")
        return Identity(user=user, groups=tuple(json.loads(row[1])))

    @edge
    def authorize(self, request: AuthorizationRequest) -> bool:
        self.fleet.enter_service("authorization.authorize")
        subjects = (request.identity.user, *request.identity.groups)
        marks = ",".join("?" * len(subjects))
        denied = (
            self.fleet.store.read()
            .execute(
                f"SELECT 1 FROM denials WHERE subject IN ({marks}) AND action IN (?, '*') LIMIT 1",
                (*subjects, request.action),
            )
            .fetchone()
        )
        return denied is None


class SimMarketplace(SimDriver):
    family: ClassVar[Family] = Family.MARKETPLACE
    capabilities: ClassVar[frozenset[str]] = frozenset({"list", "import"})

    _COLUMNS = "name, source, sha256, format, size, description"

    @edge
    def list(self, marketplace: MarketplaceRef) -> Sequence[Appliance]:
        self.fleet.enter_service("marketplace.list")
        rows = (
            self.fleet.store.read()
            .execute(f"SELECT {self._COLUMNS} FROM appliances WHERE marketplace = ? ORDER BY name", (marketplace.name,))
            .fetchall()
        )
        return [Appliance(*row) for row in rows]

    @edge
    def import_(self, marketplace: MarketplaceRef, app: str, *, version: str | None = None) -> Appliance:
        """The sim catalogue keeps one version per appliance: a version asked must be the one it has."""
        self.fleet.enter_service("marketplace.import")
        row = (
            self.fleet.store.read()
            .execute(
                f"SELECT {self._COLUMNS} FROM appliances WHERE marketplace = ? AND name = ?", (marketplace.name, app)
            )
            .fetchone()
        )
        if row is None:
            raise NotFoundError(f"marketplace {marketplace.name} has no appliance {app!r}", driver="sim")
        appliance = Appliance(*row)
        if version is not None and version != appliance.version:
            raise NotFoundError(f"marketplace {marketplace.name} has no version {version!r} of {app!r}", driver="sim")
        return appliance


class SimHooks(SimDriver):
    family: ClassVar[Family] = Family.HOOKS
    capabilities: ClassVar[frozenset[str]] = frozenset({"run", "record"})

    @edge
    def run(self, hook: HookProgram, payload: Mapping[str, Any]) -> HookResult:
        started = time.monotonic()
        self.fleet.enter_service("hooks.run")
        with self.fleet.write() as connection:
            connection.execute(
                "INSERT INTO hook_runs (hook, payload, time) VALUES (?, ?, ?)",
                (hook.name, json.dumps(payload, default=str), self.fleet.clock()),
            )
        return HookResult(exit_code=0, stdout="", stderr="", duration=time.monotonic() - started)

    def runs(self) -> list[tuple[str, dict[str, Any]]]:
        """The hooks recorded so far, oldest first: (hook name, payload)."""
        rows = self.fleet.store.read().execute("SELECT hook, payload FROM hook_runs ORDER BY id").fetchall()
        return [(name, json.loads(payload)) for name, payload in rows]
