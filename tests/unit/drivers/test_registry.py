"""The registry: protocol checks at registration, entry-point plugins, drivers chosen per host."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from nebctl.cli import main
from nebctl.core.families import Family
from nebctl.core.settings import Settings
from nebctl.drivers.errors import CapabilityError, RegistrationError
from nebctl.drivers.exec import ExecMonitoring, ExecVirtualization
from nebctl.drivers.registry import Registry, build_registry, check_driver_class, default_reference
from nebctl.drivers.sim import SimMonitoring, SimStorage, SimVirtualization
from nebctl.drivers.types import HostProbe, HostRef, VMStatus

PLUGIN = "tests.unit.drivers.plugin_sample"


class _Base:
    name: ClassVar[str] = "bad"
    family: ClassVar[Family] = Family.MONITORING
    capabilities: ClassVar[frozenset[str]] = frozenset()


class MissingMethod(_Base):
    def probe_host(self, host: HostRef) -> HostProbe:
        raise NotImplementedError


class TooFewArguments(_Base):
    def probe_host(self) -> HostProbe:
        raise NotImplementedError

    def probe_vms(self, host: HostRef) -> Sequence[VMStatus]:
        return []


class ExtraRequiredKeyword(_Base):
    def probe_host(self, host: HostRef, *, verbose: bool) -> HostProbe:
        raise NotImplementedError

    def probe_vms(self, host: HostRef) -> Sequence[VMStatus]:
        return []


class NotCallable(_Base):
    probe_host = 42

    def probe_vms(self, host: HostRef) -> Sequence[VMStatus]:
        return []


class NoFamily:
    name: ClassVar[str] = "nofamily"
    capabilities: ClassVar[frozenset[str]] = frozenset()


@pytest.mark.parametrize(
    ("driver_class", "complaint"),
    [
        (MissingMethod, "method probe_vms()"),
        (TooFewArguments, "probe_host() compatible with the protocol: it takes 0 positional arguments"),
        (ExtraRequiredKeyword, "requires a keyword argument 'verbose'"),
        (NotCallable, "probe_host to be callable"),
        (NoFamily, "lacks a class attribute 'family'"),
    ],
)
def test_registration_names_the_driver_and_what_it_lacks(driver_class: type[object], complaint: str) -> None:
    with pytest.raises(RegistrationError) as raised:
        Registry().register(driver_class)
    assert complaint in str(raised.value)
    assert driver_class.__qualname__ in str(raised.value)


def test_keyword_arguments_of_the_protocol_must_be_accepted() -> None:
    class NoStartKeyword(ExecVirtualization):
        def deploy(self, host, vm):  # type: ignore[no-untyped-def,override]
            raise NotImplementedError

    with pytest.raises(RegistrationError, match="lacks the keyword argument 'start'"):
        check_driver_class(NoStartKeyword)


def test_every_builtin_passes_its_protocol() -> None:
    registry = build_registry(Settings(), entry_points=False)
    infos = {(info.family, info.name): info for info in registry.infos()}
    for family in Family:
        assert infos[(family, "sim")].available
        assert infos[(family, "exec")].available
    assert "migrate" in infos[(Family.VIRTUALIZATION, "sim")].capabilities


def test_entry_point_plugins_are_registered_and_built_with_their_options() -> None:
    registry = Registry(Settings(drivers={"echo": {"cpus": 12}}))
    registry.load_entry_points([importlib.metadata.EntryPoint("echo", f"{PLUGIN}:EchoMonitoring", "nebctl.drivers")])
    driver = registry.get(Family.MONITORING, "echo")
    assert driver.probe_host(HostRef("h", "qemu:///system")).cpus == 12
    assert registry.get(Family.MONITORING, "echo") is driver  # built once, shared


def test_a_broken_plugin_fails_with_its_entry_point_name() -> None:
    registry = Registry()
    broken = importlib.metadata.EntryPoint("half", f"{PLUGIN}:Incomplete", "nebctl.drivers")
    with pytest.raises(RegistrationError, match=r"driver plugin 'half'.*method probe_vms\(\)"):
        registry.load_entry_points([broken])
    missing = importlib.metadata.EntryPoint("gone", "tests.unit.drivers.no_such_module:X", "nebctl.drivers")
    with pytest.raises(RegistrationError, match=r"'gone'.*cannot be loaded"):
        registry.load_entry_points([missing])


def test_a_lazy_driver_that_cannot_import_is_listed_unavailable_not_fatal() -> None:
    registry = Registry()
    registry.register_lazy(Family.VIRTUALIZATION, "ghost", "nebctl.drivers.no_such_backend:DRIVER_CLASSES")
    [info] = registry.infos()
    assert not info.available and "no_such_backend" in (info.problem or "")
    with pytest.raises(CapabilityError, match="'ghost' is not available"):
        registry.get(Family.VIRTUALIZATION, "ghost")


def test_builtins_are_imported_when_first_used() -> None:
    """A command imports the drivers its hosts use, not every built-in (sim and exec cost about 0.02 s)."""
    code = (
        "import sys\n"
        "from nebctl.drivers.registry import build_registry\n"
        "from nebctl.core.families import Family\n"
        "registry = build_registry()\n"
        "loaded = lambda: sorted(m for m in ('nebctl.drivers.sim', 'nebctl.drivers.exec') if m in sys.modules)\n"
        "print(loaded())\n"
        "registry.get(Family.HOOKS, 'exec')\n"
        "print(loaded())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "['nebctl.drivers.exec']"]


def test_a_plugin_cannot_take_the_name_of_a_builtin_not_imported_yet() -> None:
    class Impostor(SimMonitoring):
        pass

    registry = build_registry(Settings(), entry_points=False)
    with pytest.raises(RegistrationError, match="monitoring driver 'sim' is already registered"):
        registry.register(Impostor)
    registry.register(SimMonitoring)  # the built-in itself: registering it again changes nothing
    assert registry.driver_class(Family.MONITORING, "sim") is SimMonitoring


@pytest.mark.parametrize(
    ("uri", "reference"),
    [
        ("sim://kvm1?cpus=4", "sim"),
        ("qemu:///system", "libvirt"),
        ("qemu+ssh://kvm1/system", "libvirt"),
        ("test:///default", "libvirt"),
        ("exec://example", "exec:example"),
        ("SIM://kvm1", "sim"),  # schemes are case-insensitive
        ("Qemu+SSH://kvm1/system", "libvirt"),
        ("ec2://eu-west-1", "ec2"),
    ],
)
def test_the_uri_scheme_gives_the_default_driver(uri: str, reference: str) -> None:
    assert default_reference(uri) == reference


def test_for_host_uses_defaults_and_the_host_overrides(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, driver_dir=tmp_path / "drivers")
    registry = build_registry(settings, entry_points=False)
    try:
        drivers = registry.for_host(HostRef("kvm1", "sim://kvm1"), {"monitoring": "exec:probes"})
        assert isinstance(drivers.virtualization, SimVirtualization)
        assert isinstance(drivers.storage, SimStorage)
        assert isinstance(drivers.monitoring, ExecMonitoring)
        assert drivers.monitoring.program_set == "probes"
        assert drivers.references[Family.MONITORING] == "exec:probes"
        # The sim drivers of one registry share one fleet.
        assert drivers.virtualization.fleet is drivers.storage.fleet
        plain = registry.for_host(HostRef("kvm2", "sim://kvm2"))
        assert isinstance(plain.monitoring, SimMonitoring)
        with pytest.raises(CapabilityError, match="no virtualization driver named 'vmware'"):
            registry.for_host(HostRef("x", "sim://x"), {"virtualization": "vmware"})
    finally:
        registry.close()


def test_drivers_command_lists_families_and_capabilities() -> None:
    result = CliRunner().invoke(main, ["drivers", "-o", "json"])
    assert result.exit_code == 0, result.output
    listed = {(entry["family"], entry["name"]): entry for entry in json.loads(result.output)}
    assert listed[("virtualization", "sim")]["available"] is True
    assert "deploy" in listed[("virtualization", "exec")]["capabilities"]
    assert ("hooks", "exec") in listed
    table = CliRunner().invoke(main, ["drivers"])
    assert table.exit_code == 0 and "authorization" in table.output
