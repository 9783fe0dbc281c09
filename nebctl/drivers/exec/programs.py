"""The exec drivers: each action of a family is an external program ``DRIVER_DIR/FAMILY/NAME/ACTION``.

Registered by ``nebctl.drivers.registry`` under the name ``exec``; a Host chooses a program set with
``exec:NAME`` in ``spec.drivers`` or the URI ``exec://NAME``. The protocol with the programs:

- stdin: one JSON object ``{"action", "family", "driver", "host": {"name", "uri", "domain_type"} | null,
  "resource": ..., "arguments": {...}}``; ``resource`` is the object acted on (a VM definition,
  ``{"uuid": ...}``, a volume...) and ``arguments`` the rest (``start``, ``timeout``, ``datastore``...), all as
  ``types.to_payload`` writes them.
- stdout: one JSON value, the result (a VM status, a volume...; nothing for actions that return nothing).
- stderr: log lines ``ERROR|WARN|INFO|DEBUG: message``, forwarded to nebctl's log at that level.
- exit status: 0 success; 75 temporary failure (retried); anything else permanent. A failing program may print
  ``{"error": {"kind": "not_found" | "conflict" | "unsupported", "message": ..., "delay": seconds}}`` on stdout
  to refine the error type (``NotFoundError``, ``ConflictError``, ``CapabilityError``) and the retry delay.
- environment: only PATH, a UTF-8 locale, ``NEBCTL_DRIVER_DIR``, ``NEBCTL_FAMILY``, ``NEBCTL_DRIVER``,
  ``NEBCTL_ACTION``, ``NEBCTL_HOST`` and the variables of ``drivers.exec.env`` in the configuration.
- options (``drivers.exec`` in the configuration): ``driver_dir`` (else the top-level ``driver_dir``), ``env``,
  ``path`` (the PATH given to programs), ``timeout`` (seconds when the call has no deadline), ``max_output``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from nebctl.core.families import Family
from nebctl.drivers import fingerprints, ownership
from nebctl.drivers.context import current
from nebctl.drivers.errors import (
    CapabilityError,
    ConflictError,
    DriverTimeoutError,
    NotFoundError,
    PermanentError,
    TemporaryError,
)
from nebctl.drivers.exec.decoding import from_payload
from nebctl.drivers.exec.running import DEFAULT_PATH, MAX_STDOUT, check_program, clean_environment, run_program
from nebctl.drivers.types import (
    Appliance,
    AuthorizationRequest,
    DatastoreDefinition,
    DatastoreStatus,
    HostProbe,
    HostRef,
    Identity,
    ImageImport,
    MarketplaceRef,
    NetworkDefinition,
    NetworkStatus,
    NicDefinition,
    OwnedObject,
    Ownership,
    SecurityGroupDefinition,
    VMDefinition,
    VMStatus,
    VolumeDefinition,
    VolumeInfo,
    to_payload,
)

T = TypeVar("T")

EXIT_TEMPORARY = 75  # EX_TEMPFAIL of sysexits.h, as OpenNebula's drivers use it

_ERROR_KINDS: dict[str, type[PermanentError]] = {
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "unsupported": CapabilityError,
}


class ExecDriver:
    """One program set, ``DRIVER_DIR/FAMILY/NAME``; subclasses map the family's methods to ``call``."""

    name: ClassVar[str] = "exec"
    family: ClassVar[Family]

    def __init__(
        self,
        *,
        driver_dir: Path,
        program_set: str,
        env: Mapping[str, str] | None = None,
        path: str = DEFAULT_PATH,
        default_timeout: float = 300.0,
        max_output: int = MAX_STDOUT,
    ) -> None:
        self.driver_dir = driver_dir.absolute()  # programs run in their own directory: relative paths would break
        self.program_set = program_set
        self.env = dict(env or {})
        self.path = path
        self.default_timeout = default_timeout
        self.max_output = max_output

    @classmethod
    def from_context(cls, context: Any) -> Any:  # a registry.DriverContext; Any avoids an import cycle
        options: Mapping[str, Any] = context.options
        if not context.instance:
            raise PermanentError(f"the exec {cls.family.value} driver needs a program set: write exec:NAME")
        driver_dir = options.get("driver_dir") or context.settings.driver_dir
        if driver_dir is None:
            raise PermanentError("the exec driver needs driver_dir in the configuration")
        return cls(
            driver_dir=Path(driver_dir),
            program_set=context.instance,
            env=options.get("env") or {},
            path=str(options.get("path") or DEFAULT_PATH),
            default_timeout=float(options.get("timeout") or context.settings.default_timeout),
            max_output=int(options.get("max_output") or MAX_STDOUT),
        )

    @property
    def label(self) -> str:
        return f"exec driver {self.family.value}/{self.program_set}"

    def call(
        self,
        action: str,
        *,
        host: HostRef | None = None,
        resource: Any = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run the action's program and return its parsed stdout (None when empty), or raise the typed error."""
        program = self.driver_dir / self.family.value / self.program_set / action
        if not program.exists():
            raise CapabilityError(f"{self.label}: program {program} does not exist", driver="exec")
        check_program(program, label=self.label)
        payload = {
            "action": action,
            "family": self.family.value,
            "driver": self.program_set,
            "host": to_payload(host),
            "resource": to_payload(resource),
            "arguments": to_payload(arguments or {}),
        }
        env = clean_environment(
            {
                **self.env,
                "NEBCTL_DRIVER_DIR": str(self.driver_dir),
                "NEBCTL_FAMILY": self.family.value,
                "NEBCTL_DRIVER": self.program_set,
                "NEBCTL_ACTION": action,
                "NEBCTL_HOST": host.name if host else "",
            },
            path=self.path,
        )
        timeout = current().remaining(self.default_timeout)
        result = run_program(
            [str(program)],
            stdin=json.dumps(payload).encode(),
            timeout=timeout,
            env=env,
            label=f"{self.label}/{action}",
            cwd=program.parent,
            max_stdout=self.max_output,
        )
        if result.timed_out or result.cancelled:
            why = "was cancelled" if result.cancelled else f"did not finish within {timeout:.1f}s"
            raise DriverTimeoutError(f"{self.label}: {program} {why}; its process group was killed", driver="exec")
        text = result.stdout.decode("utf-8", errors="replace").strip()
        try:
            data = json.loads(text) if text else None
        except json.JSONDecodeError as error:
            if result.exit_code == 0:
                excerpt = text[:200] + ("..." if len(text) > 200 else "")
                raise PermanentError(
                    f"{self.label}: {program} printed something that is not JSON ({error}): {excerpt!r}", driver="exec"
                ) from error
            data = None
        if result.exit_code == 0:
            return data
        return self._fail(program, result.exit_code, data, result.stderr)

    def _fail(self, program: Path, exit_code: int | None, data: Any, stderr: str) -> Any:
        detail = data.get("error") if isinstance(data, dict) else None
        detail = detail if isinstance(detail, dict) else {}
        last_line = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        reason = str(detail.get("message") or last_line or "no message")
        if exit_code is not None and exit_code < 0:
            message = f"{self.label}: {program} was killed by signal {-exit_code}: {reason}"
        else:
            message = f"{self.label}: {program} exited with status {exit_code}: {reason}"
        if exit_code == EXIT_TEMPORARY:
            delay = detail.get("delay")
            raise TemporaryError(message, driver="exec", delay=float(delay) if isinstance(delay, int | float) else None)
        error_type = _ERROR_KINDS.get(str(detail.get("kind")), PermanentError)
        raise error_type(message, driver="exec")

    def decode(self, cls: type[T], data: Any, action: str) -> T:
        try:
            return from_payload(cls, data)
        except ValueError as error:
            raise PermanentError(f"{self.label}/{action}: unexpected result: {error}", driver="exec") from error

    def decode_list(self, cls: type[T], data: Any, action: str, key: str) -> list[T]:
        if isinstance(data, dict) and isinstance(data.get(key), list):
            data = data[key]
        if not isinstance(data, list):
            raise PermanentError(f"{self.label}/{action}: expected a list of results", driver="exec")
        return [self.decode(cls, item, action) for item in data]


class ExecVirtualization(ExecDriver):
    family: ClassVar[Family] = Family.VIRTUALIZATION
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"deploy", "shutdown", "cancel", "reboot", "suspend", "resume", "migrate", "undeploy", "poll"}
    )

    def deploy(self, host: HostRef, vm: VMDefinition, *, start: bool = True) -> VMStatus:
        data = self.call("deploy", host=host, resource=vm, arguments={"start": start})
        return self.decode(VMStatus, data, "deploy")

    def shutdown(self, host: HostRef, uuid: str, *, timeout: float) -> None:
        self.call("shutdown", host=host, resource={"uuid": uuid}, arguments={"timeout": timeout})

    def cancel(self, host: HostRef, uuid: str) -> None:
        self.call("cancel", host=host, resource={"uuid": uuid})

    def reboot(self, host: HostRef, uuid: str) -> None:
        self.call("reboot", host=host, resource={"uuid": uuid})

    def suspend(self, host: HostRef, uuid: str) -> None:
        self.call("suspend", host=host, resource={"uuid": uuid})

    def resume(self, host: HostRef, uuid: str) -> None:
        self.call("resume", host=host, resource={"uuid": uuid})

    def migrate(self, source: HostRef, target: HostRef, vm: VMDefinition, *, live: bool = False) -> VMStatus:
        data = self.call("migrate", host=source, resource=vm, arguments={"target": to_payload(target), "live": live})
        return self.decode(VMStatus, data, "migrate")

    def undeploy(self, host: HostRef, uuid: str) -> None:
        self.call("undeploy", host=host, resource={"uuid": uuid})

    def poll(self, host: HostRef, uuid: str) -> VMStatus:
        return self.decode(VMStatus, self.call("poll", host=host, resource={"uuid": uuid}), "poll")


class ExecStorage(ExecDriver):
    family: ClassVar[Family] = Family.STORAGE
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"create_datastore", "delete_datastore", "import", "clone", "resize", "delete", "snapshot", "monitor"}
    )

    def create_datastore(self, host: HostRef, datastore: DatastoreDefinition) -> DatastoreStatus:
        data = self.call("create_datastore", host=host, resource=datastore)
        return self.decode(DatastoreStatus, data, "create_datastore")

    def delete_datastore(self, host: HostRef, name: str) -> None:
        self.call("delete_datastore", host=host, resource={"name": name})

    def import_image(self, host: HostRef, datastore: str, image: ImageImport) -> VolumeInfo:
        data = self.call("import", host=host, resource=image, arguments={"datastore": datastore})
        return self.decode(VolumeInfo, data, "import")

    def clone(self, host: HostRef, datastore: str, volume: VolumeDefinition) -> VolumeInfo:
        data = self.call("clone", host=host, resource=volume, arguments={"datastore": datastore})
        return self.decode(VolumeInfo, data, "clone")

    def resize(self, host: HostRef, datastore: str, volume: str, size: int) -> VolumeInfo:
        data = self.call(
            "resize", host=host, resource={"volume": volume}, arguments={"datastore": datastore, "size": size}
        )
        return self.decode(VolumeInfo, data, "resize")

    def delete(self, host: HostRef, datastore: str, volume: str) -> None:
        self.call("delete", host=host, resource={"volume": volume}, arguments={"datastore": datastore})

    def snapshot(self, host: HostRef, datastore: str, volume: str, snapshot: str) -> VolumeInfo:
        data = self.call(
            "snapshot",
            host=host,
            resource={"volume": volume},
            arguments={"datastore": datastore, "snapshot": snapshot},
        )
        return self.decode(VolumeInfo, data, "snapshot")

    def monitor(self, host: HostRef, datastore: str) -> DatastoreStatus:
        data = self.call("monitor", host=host, resource={"datastore": datastore})
        return self.decode(DatastoreStatus, data, "monitor")


class ExecNetwork(ExecDriver):
    family: ClassVar[Family] = Family.NETWORK
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"create", "delete", "pre", "post", "clean", "update_sg", "delete_sg", "monitor"}
    )

    def create(self, host: HostRef, network: NetworkDefinition) -> NetworkStatus:
        return self.decode(NetworkStatus, self.call("create", host=host, resource=network), "create")

    def delete(self, host: HostRef, name: str) -> None:
        self.call("delete", host=host, resource={"name": name})

    def pre(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        self.call("pre", host=host, resource=nic, arguments={"vm_uuid": vm_uuid})

    def post(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        self.call("post", host=host, resource=nic, arguments={"vm_uuid": vm_uuid})

    def clean(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        self.call("clean", host=host, resource=nic, arguments={"vm_uuid": vm_uuid})

    def update_sg(self, host: HostRef, group: SecurityGroupDefinition) -> None:
        self.call("update_sg", host=host, resource=group)

    def delete_sg(self, host: HostRef, name: str) -> None:
        self.call("delete_sg", host=host, resource={"name": name})

    def monitor(self, host: HostRef) -> Mapping[str, NetworkStatus]:
        data = self.call("monitor", host=host)
        if not isinstance(data, dict):
            raise PermanentError(f"{self.label}/monitor: expected an object of networks", driver="exec")
        return {str(name): self.decode(NetworkStatus, item, "monitor") for name, item in data.items()}


class ExecMonitoring(ExecDriver):
    family: ClassVar[Family] = Family.MONITORING
    capabilities: ClassVar[frozenset[str]] = frozenset({"probe_host", "probe_vms", "inventory", "own"})

    def probe_host(self, host: HostRef) -> HostProbe:
        return self.decode(HostProbe, self.call("probe_host", host=host), "probe_host")

    def probe_vms(self, host: HostRef) -> Sequence[VMStatus]:
        return self.decode_list(VMStatus, self.call("probe_vms", host=host), "probe_vms", "vms")

    def own(self, host: HostRef, what: str, name: str, owner: Ownership, *, pool: str = "") -> None:
        """The ``own`` program: keep ``owner`` (``arguments.owner``, as creating actions pass it) for the object
        ``arguments.object``/``arguments.name`` (``pool``: a volume's; ``vm``: a VM by its UUID), as ``list``
        and ``probe_vms`` give it back. A program set without one raises ``CapabilityError``."""
        self.call("own", host=host, arguments={"object": what, "name": name, "pool": pool, "owner": owner})

    def inventory(self, host: HostRef) -> Sequence[OwnedObject]:
        """The ``list`` program's answer: the host's owned objects other than VMs, each with the fingerprint
        of its ``attributes`` when it gives them (docs/ownership.md); a program set without one raises
        ``CapabilityError``."""
        data = self.call("list", host=host)
        if not isinstance(data, list):
            raise PermanentError(f"{self.label}: list answered {type(data).__name__}, not a list", driver="exec")
        found = []
        for item in data:
            try:
                attributes = item.get("attributes")
                if attributes is not None and not isinstance(attributes, dict):
                    raise TypeError("attributes: expected an object")
                what = str(item["object"])
                found.append(
                    OwnedObject(
                        object=what,
                        name=str(item["name"]),
                        owner=ownership.from_payload(item["owner"]),
                        details=dict(item.get("details") or {}),
                        fingerprint=fingerprints.from_attributes(what, attributes) if attributes else None,
                    )
                )
            except (KeyError, TypeError, ValueError) as error:
                raise PermanentError(
                    f"{self.label}: list answered a bad object {item!r}: {error}", driver="exec"
                ) from error
        return found


class ExecAuthorization(ExecDriver):
    """OpenNebula-style authentication by an external program: user and secret on stdin, identity on stdout."""

    family: ClassVar[Family] = Family.AUTHORIZATION
    capabilities: ClassVar[frozenset[str]] = frozenset({"authenticate", "authorize"})

    def authenticate(self, user: str, secret: str) -> Identity:
        data = self.call("authenticate", resource={"user": user, "secret": secret})
        return self.decode(Identity, data, "authenticate")

    def authorize(self, request: AuthorizationRequest) -> bool:
        data = self.call("authorize", resource=request)
        allowed = data.get("allow") if isinstance(data, dict) else data
        if not isinstance(allowed, bool):
            raise PermanentError(f"{self.label}/authorize: expected true, false or {{'allow': ...}}", driver="exec")
        return allowed


class ExecMarketplace(ExecDriver):
    family: ClassVar[Family] = Family.MARKETPLACE
    capabilities: ClassVar[frozenset[str]] = frozenset({"list", "import"})

    def list(self, marketplace: MarketplaceRef) -> Sequence[Appliance]:
        return self.decode_list(Appliance, self.call("list", resource=marketplace), "list", "appliances")

    def import_(self, marketplace: MarketplaceRef, app: str, *, version: str | None = None) -> Appliance:
        arguments: dict[str, Any] = {"app": app} if version is None else {"app": app, "version": version}
        data = self.call("import", resource=marketplace, arguments=arguments)
        return self.decode(Appliance, data, "import")
