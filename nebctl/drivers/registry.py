"""The driver registry: which driver classes exist, by family and name, and how to build them for a host.

Used by the CLI (``nebctl drivers``, the ``AppContext`` resource ``"registry"``), the executor and monitoring,
which ask ``Registry.for_host`` for the drivers of a Host and call them. Built-in drivers are registered here
lazily, by import path (a command imports only the drivers it uses, and a machine without libvirt-python still
has sim and exec); third-party drivers come from the entry-point group ``nebctl.drivers``, whose entries load to a
driver class or a sequence of driver classes.

Every class is checked against its family's protocol when it is registered, a lazy one when it is imported
(pluggy does the same with its specs): each protocol method present, callable, and able to take the arguments
the protocol passes; ``name``, ``family`` and ``capabilities`` declared. A driver that falls short raises
``RegistrationError`` naming the driver and what it lacks, so a broken plugin fails at start-up rather than in
the middle of an apply.

A driver *reference* is what a Host manifest writes in ``spec.drivers``: a registered name (``sim``,
``libvirt``), optionally with an instance after a colon (``exec:NAME``, the program set under
``DRIVER_DIR/FAMILY/NAME``). Instances are built by factories taking a ``DriverContext`` and cached per
(family, reference), so every caller shares one sim fleet connection or one libvirt connection.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from nebctl.core.families import Family
from nebctl.core.settings import Settings
from nebctl.drivers.errors import CapabilityError, RegistrationError
from nebctl.drivers.protocols import (
    PROTOCOL_BY_FAMILY,
    Driver,
    MonitoringDriver,
    NetworkDriver,
    StorageDriver,
    VirtualizationDriver,
)
from nebctl.drivers.types import HostRef

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "nebctl.drivers"

# The families a Host manifest chooses drivers for; the others are not tied to a hypervisor.
HOST_FAMILIES = (Family.VIRTUALIZATION, Family.STORAGE, Family.NETWORK, Family.MONITORING)

# The built-in drivers, imported (and checked against their protocol) on first use only: a command pays for
# the drivers its hosts use (importing and checking sim and exec is about 0.02 s of every start otherwise), and
# libvirt lives in an optional package. A path is 'module:attribute'; the attribute is a driver class or a
# sequence of them (the one with the right family and name is taken), so a driver package only has to export
# ``DRIVER_CLASSES``.
_LAZY_BUILTINS: dict[tuple[Family, str], str] = {
    **{(family, name): f"nebctl.drivers.{name}:DRIVER_CLASSES" for name in ("sim", "exec") for family in Family},
    **{(family, "libvirt"): "nebctl.drivers.libvirt:DRIVER_CLASSES" for family in HOST_FAMILIES},
    (Family.MARKETPLACE, "catalogue"): "nebctl.drivers.catalogue:DRIVER_CLASSES",
    **{(family, "ec2"): "nebctl.drivers.ec2:DRIVER_CLASSES" for family in HOST_FAMILIES},
}

# The built-in drivers whose library comes with an optional dependency of nebctl (pyproject's extras).
_EXTRAS = {"libvirt": "libvirt", "ec2": "ec2"}


@dataclass(frozen=True)
class DriverContext:
    """What a factory gets to build a driver: the settings, the driver's own options and where state lives."""

    settings: Settings
    options: Mapping[str, Any] = field(default_factory=dict)  # settings.drivers[name]
    state_dir: Path | None = None
    instance: str | None = None  # the NAME of a reference 'exec:NAME'
    # Objects the drivers of one registry share (the sim fleet of a state file); closed by ``Registry.close``.
    shared: dict[str, Any] = field(default_factory=dict)


class DriverFactory(Protocol):
    def __call__(self, context: DriverContext) -> object: ...


@dataclass(frozen=True)
class DriverInfo:
    """One registered driver, as ``nebctl drivers`` shows it."""

    family: Family
    name: str
    capabilities: frozenset[str]
    origin: str  # builtin | entry point name | lazy import path
    available: bool = True
    problem: str | None = None  # why a lazy driver is not available


@dataclass
class _Entry:
    family: Family
    name: str
    driver_class: type[object] | None
    factory: DriverFactory | None
    origin: str
    import_path: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class HostDriverSet:
    """The four drivers that act on one host; ``references`` says which reference each family resolved to."""

    host: HostRef
    virtualization: VirtualizationDriver
    storage: StorageDriver
    network: NetworkDriver
    monitoring: MonitoringDriver
    references: Mapping[Family, str]

    def for_family(self, family: Family) -> Any:
        return getattr(self, family.value)


def parse_reference(reference: str) -> tuple[str, str | None]:
    """Split ``exec:NAME`` into ('exec', 'NAME'); a plain name has no instance."""
    name, sep, instance = reference.partition(":")
    if not name or (sep and not instance):
        raise RegistrationError(f"malformed driver reference {reference!r}: expected NAME or NAME:INSTANCE")
    return name, instance or None


def default_reference(uri: str) -> str:
    """The driver reference a host URI implies: sim://, exec://NAME, ec2://REGION, anything libvirt understands."""
    # The common schemes without parsing the URI: asked once per host by every observation of a large fleet.
    if uri.startswith("sim://"):
        return "sim"
    if uri.startswith(("qemu:", "qemu+")):
        return "libvirt"
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "sim":
        return "sim"
    if scheme == "exec":
        name = parts.netloc or parts.path.strip("/")
        if not name:
            raise RegistrationError(f"host URI {uri!r}: exec:// needs a driver name (exec://NAME)")
        return f"exec:{name}"
    if scheme in ("qemu", "test"):
        return "libvirt"
    if scheme == "ec2":
        return "ec2"
    raise RegistrationError(f"host URI {uri!r}: no default driver for scheme {parts.scheme!r}")


def _protocol_methods(protocol: type[object]) -> dict[str, Callable[..., Any]]:
    methods: dict[str, Callable[..., Any]] = {}
    for base in reversed(protocol.__mro__):
        if base in (object, Driver) or base.__name__ in ("Protocol", "Generic"):
            continue
        for attr, value in vars(base).items():
            if not attr.startswith("_") and inspect.isfunction(value):
                methods[attr] = value
    return methods


def _signature_problem(expected: inspect.Signature, actual: inspect.Signature) -> str | None:
    """Why ``actual`` cannot take every call that ``expected`` allows, or None when it can."""
    kinds = inspect.Parameter
    exp = [p for p in expected.parameters.values() if p.name != "self"]
    act = [p for p in actual.parameters.values() if p.name != "self"]
    exp_positional = [p for p in exp if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    exp_keyword = [p for p in exp if p.kind is kinds.KEYWORD_ONLY]
    act_positional = [p for p in act if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    var_positional = any(p.kind is kinds.VAR_POSITIONAL for p in act)
    var_keyword = any(p.kind is kinds.VAR_KEYWORD for p in act)

    if len(act_positional) < len(exp_positional) and not var_positional:
        return f"takes {len(act_positional)} positional arguments, the protocol passes {len(exp_positional)}"
    for extra in act_positional[len(exp_positional) :]:
        if extra.default is kinds.empty and extra.name not in {p.name for p in exp_keyword}:
            return f"requires an argument {extra.name!r} that the protocol does not pass"
    by_name = {p.name: p for p in act}
    for wanted in exp_keyword:
        got = by_name.get(wanted.name)
        if got is None or got.kind in (kinds.POSITIONAL_ONLY, kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD):
            if var_keyword:
                continue
            return f"lacks the keyword argument {wanted.name!r}"
        if wanted.default is not kinds.empty and got.default is kinds.empty:
            return f"requires {wanted.name!r}, which the protocol lets callers omit"
    for extra in act:
        required = extra.kind is kinds.KEYWORD_ONLY and extra.default is kinds.empty
        if required and extra.name not in {p.name for p in exp_keyword}:
            return f"requires a keyword argument {extra.name!r} that the protocol does not pass"
    return None


def check_driver_class(  # noqa: PLR0912 - one check after another, each with its own message
    driver_class: type[object], family: Family | None = None
) -> Family:
    """Check a class against its family's protocol; return its family or raise ``RegistrationError``."""
    label = f"{getattr(driver_class, '__module__', '?')}.{getattr(driver_class, '__qualname__', driver_class)}"
    if not isinstance(driver_class, type):
        raise RegistrationError(f"driver {label}: expected a class, got {type(driver_class).__name__}")
    problems: list[str] = []
    name = getattr(driver_class, "name", None)
    if not isinstance(name, str) or not name or ":" in name:
        problems.append("a class attribute 'name' (a non-empty string without ':')")
    else:
        label = f"{name!r} ({label})"
    declared = getattr(driver_class, "family", None)
    if not isinstance(declared, Family):
        try:
            declared = Family(declared) if isinstance(declared, str) else None
        except ValueError:
            declared = None
    if declared is None:
        raise RegistrationError(
            f"driver {label} lacks a class attribute 'family' naming one of: {', '.join(f.value for f in Family)}"
        )
    if family is not None and declared is not family:
        raise RegistrationError(f"driver {label} declares family {declared.value!r}, registered as {family.value!r}")
    capabilities = getattr(driver_class, "capabilities", None)
    if not isinstance(capabilities, frozenset) or not all(isinstance(c, str) for c in capabilities):
        problems.append("a class attribute 'capabilities' (a frozenset of strings)")
    protocol = PROTOCOL_BY_FAMILY[declared]
    for method_name, method in _protocol_methods(protocol).items():
        implementation = getattr(driver_class, method_name, None)
        if implementation is None:
            problems.append(f"method {method_name}()")
            continue
        if not callable(implementation):
            problems.append(f"{method_name} to be callable")
            continue
        try:
            actual = inspect.signature(implementation)
        except (TypeError, ValueError):
            continue  # builtins without a signature: give them the benefit of the doubt
        if not isinstance(inspect.getattr_static(driver_class, method_name), staticmethod | classmethod):
            # Looked up on the class, a plain function still has ``self``; the protocol's view drops it.
            params = list(actual.parameters.values())
            if params and params[0].name == "self":
                actual = actual.replace(parameters=params[1:])
        problem = _signature_problem(inspect.signature(method), actual)
        if problem:
            problems.append(f"{method_name}() compatible with the protocol: it {problem}")
    if problems:
        raise RegistrationError(
            f"{declared.value} driver {label} does not implement {protocol.__name__}: it needs " + "; ".join(problems)
        )
    return declared


def _default_factory(driver_class: type[object]) -> DriverFactory:
    """Classes build themselves with ``from_context(context)`` when they define it, else ``cls(context)``."""
    from_context = getattr(driver_class, "from_context", None)
    if callable(from_context):
        return cast(DriverFactory, from_context)
    return cast(DriverFactory, driver_class)


class Registry:
    """Driver classes by (family, name), and the instances built from them for one settings object.

    Thread-safe: the executor's workers ask for drivers concurrently.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._entries: dict[tuple[Family, str], _Entry] = {}
        self._instances: dict[tuple[Family, str], object] = {}
        self._shared: dict[str, Any] = {}
        self._lock = threading.RLock()

    # --- registration ------------------------------------------------------------------------------------

    def register(
        self, driver_class: type[object], *, factory: DriverFactory | None = None, origin: str = "builtin"
    ) -> None:
        """Check ``driver_class`` against its family's protocol and make it available under its name."""
        family = check_driver_class(driver_class)
        name = cast(str, getattr(driver_class, "name"))  # noqa: B009  # checked above, hidden from mypy
        with self._lock:
            existing = self._entries.get((family, name))
            if existing is not None and existing.driver_class is None:
                # A lazy entry holds its name too: learn its class, unless it cannot be imported (then it is
                # unavailable and the name is free).
                with contextlib.suppress(CapabilityError, RegistrationError):
                    existing = self._resolve(family, name)
            if existing is not None and existing.driver_class is not None and existing.driver_class is not driver_class:
                raise RegistrationError(
                    f"{family.value} driver {name!r} is already registered (from {existing.origin}); "
                    f"{origin} cannot register it again"
                )
            self._entries[(family, name)] = _Entry(
                family, name, driver_class, factory or _default_factory(driver_class), origin
            )

    def register_lazy(self, family: Family, name: str, import_path: str, *, origin: str | None = None) -> None:
        """Register ``module:Class`` without importing it; it is imported and checked on first use. ``origin``
        (what ``nebctl drivers`` shows) defaults to the import path."""
        with self._lock:
            if (family, name) not in self._entries:
                self._entries[(family, name)] = _Entry(family, name, None, None, origin or import_path, import_path)

    def load_entry_points(self, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> None:
        """Register the drivers of installed plugins; a plugin that fails to load or check raises."""
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for entry_point in entry_points:
            try:
                loaded = entry_point.load()
            except Exception as error:  # any import-time failure of a plugin is its registration's failure
                raise RegistrationError(
                    f"driver plugin {entry_point.name!r} ({entry_point.value}) cannot be loaded: {error}"
                ) from error
            classes = list(loaded) if isinstance(loaded, list | tuple) else [loaded]
            for driver_class in classes:
                try:
                    self.register(driver_class, origin=f"entry point {entry_point.name}")
                except RegistrationError as error:
                    raise RegistrationError(f"driver plugin {entry_point.name!r}: {error}") from error

    def _resolve(self, family: Family, name: str) -> _Entry:
        with self._lock:
            entry = self._entries.get((family, name))
            if entry is None:
                known = sorted(n for (f, n) in self._entries if f is family)
                raise CapabilityError(
                    f"no {family.value} driver named {name!r} (registered: {', '.join(known) or 'none'})"
                )
            if entry.driver_class is None and entry.import_path is not None:
                module_name, _, attribute = entry.import_path.partition(":")
                try:
                    loaded = getattr(importlib.import_module(module_name), attribute or "DRIVER_CLASSES")
                except Exception as error:  # ImportError, or anything the module raises while importing
                    entry.problem = f"cannot import {entry.import_path}: {error}"
                    extra = _EXTRAS.get(name)
                    if extra is not None and isinstance(error, ImportError):
                        # A built-in driver whose library is an optional dependency: say how to get it.
                        entry.problem = f"install nebctl[{extra}] ({error})"
                        raise CapabilityError(f"driver {name!r} is not available: {entry.problem}") from error
                    raise CapabilityError(f"{family.value} driver {name!r} is not available: {entry.problem}") from (
                        error
                    )
                candidates = list(loaded) if isinstance(loaded, list | tuple) else [loaded]
                matching = [
                    c for c in candidates if getattr(c, "family", None) == family and getattr(c, "name", None) == name
                ]
                if not matching:
                    raise RegistrationError(f"{entry.import_path} has no {family.value} driver named {name!r}")
                driver_class = matching[0]
                check_driver_class(driver_class, family)
                entry.driver_class = driver_class
                entry.factory = _default_factory(driver_class)
            return entry

    # --- lookup ------------------------------------------------------------------------------------------

    def infos(self) -> list[DriverInfo]:
        """Every registered driver, lazy ones imported to learn their capabilities (or why they are missing)."""
        result: list[DriverInfo] = []
        for family, name in sorted(self._entries, key=lambda key: (list(Family).index(key[0]), key[1])):
            try:
                entry = self._resolve(family, name)
            except (CapabilityError, RegistrationError) as error:
                entry = self._entries[(family, name)]
                result.append(DriverInfo(family, name, frozenset(), entry.origin, False, str(error)))
                continue
            capabilities = cast(frozenset[str], getattr(entry.driver_class, "capabilities", frozenset()))
            result.append(DriverInfo(family, name, capabilities, entry.origin))
        return result

    def driver_class(self, family: Family, name: str) -> type[object]:
        entry = self._resolve(family, name)
        assert entry.driver_class is not None  # _resolve imports lazy entries or raises
        return entry.driver_class

    def get(self, family: Family, reference: str) -> Any:
        """The driver instance for ``reference`` (``sim``, ``exec:NAME``...), built once and then shared."""
        key = (family, reference)
        existing = self._instances.get(key)  # the common case, without the lock: a host's drivers are asked often
        if existing is not None:
            return existing
        name, instance = parse_reference(reference)
        with self._lock:
            existing = self._instances.get(key)
            if existing is not None:
                return existing
            entry = self._resolve(family, name)
            assert entry.factory is not None
            options = self.settings.drivers.get(name, {})
            context = DriverContext(
                settings=self.settings,
                options=options,
                state_dir=self.settings.state_dir,
                instance=instance,
                shared=self._shared,
            )
            driver = entry.factory(context)
            self._instances[key] = driver
            return driver

    def for_host(self, host: HostRef, overrides: Mapping[str, str | None] | Any = None) -> HostDriverSet:
        """The drivers of one host: ``overrides`` (a Host's ``spec.drivers``, as a mapping or the model)
        first, else the default its URI implies."""
        chosen: dict[Family, str] = {}
        if overrides is not None and not isinstance(overrides, Mapping):
            overrides = overrides.model_dump() if hasattr(overrides, "model_dump") else vars(overrides)
        implied: str | None = None  # the same for every family: worked out once
        for family in HOST_FAMILIES:
            override = overrides.get(family.value) if overrides else None
            if override:
                chosen[family] = override
            else:
                implied = implied or default_reference(host.uri)
                chosen[family] = implied
        return HostDriverSet(
            host=host,
            virtualization=self.get(Family.VIRTUALIZATION, chosen[Family.VIRTUALIZATION]),
            storage=self.get(Family.STORAGE, chosen[Family.STORAGE]),
            network=self.get(Family.NETWORK, chosen[Family.NETWORK]),
            monitoring=self.get(Family.MONITORING, chosen[Family.MONITORING]),
            references=chosen,
        )

    def close(self) -> None:
        """Close every built driver and shared object that has a ``close`` method (sim fleets, connections)."""
        with self._lock:
            instances, self._instances = list(self._instances.values()), {}
            shared, self._shared = list(self._shared.values()), {}
        for driver in (*instances, *shared):
            close = getattr(driver, "close", None)
            if callable(close):
                close()


def register_builtins(registry: Registry) -> None:
    """The drivers that ship with nebctl: sim and exec for every family, libvirt for hosts; each is imported and
    checked when first used."""
    for (family, name), import_path in _LAZY_BUILTINS.items():
        registry.register_lazy(family, name, import_path, origin=None if name == "libvirt" else "builtin")


def build_registry(settings: Settings | None = None, *, entry_points: bool = True) -> Registry:
    """A registry with the built-in drivers and, unless ``entry_points`` is false, the installed plugins."""
    registry = Registry(settings)
    register_builtins(registry)
    if entry_points:
        registry.load_entry_points()
    return registry
