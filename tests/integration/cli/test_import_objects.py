"""``nebctl import`` of a network, a datastore and an image made by hand on the simulated fleet: adopted under the
live names nebctl gives them, with the manifest saying what they are; the next diff then plans none of them (and
the VMs that use them as creates), and refuses what another name or another stack would need."""

from __future__ import annotations

from pathlib import Path

import pytest

from nebctl.core.settings import Settings
from nebctl.drivers.registry import build_registry
from nebctl.drivers.types import DatastoreDefinition, HostRef, ImageImport, NetworkDefinition, Ownership
from tests.integration.cli.test_commands import Env

HOSTS = ["kvm-a1", "kvm-a2", "kvm-b1", "kvm-b2"]  # the examples' hosts (00-fleet.yaml)


@pytest.fixture()
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def _by_hand(env: Env, *, owner: Ownership | None = None) -> None:
    """The examples' lan network, local datastore and debian-12 image volume, made without nebctl."""
    registry = build_registry(Settings(state_dir=env.root))
    image = env.root / "debian.qcow2"
    image.write_bytes(b"QFI\xfb" + bytes(508))
    try:
        for name in HOSTS:
            host = HostRef(name, f"sim://{name}")
            drivers = registry.for_host(host)
            network = NetworkDefinition("lan", "nat", "10.10.0.0/24", "10.10.0.1", "10.10.0.10", "10.10.0.200",
                                        owner=owner)  # fmt: skip
            drivers.network.create(host, network)
            drivers.storage.create_datastore(host, DatastoreDefinition("local", "/var/lib/nebctl/local", owner=owner))
            drivers.storage.import_image(host, "local", ImageImport("image-debian-12", str(image), owner=owner))
    finally:
        registry.close()


def test_a_network_a_datastore_and_an_image_are_adopted(env: Env) -> None:
    _by_hand(env)
    for reference, identifier in (("network/lan", "lan"), ("datastore/local", "local"),
                                  ("image/debian-12", "image-debian-12")):  # fmt: skip
        result = env.run("import", reference, "--id", identifier, "-f", str(env.manifests))
        assert result.returncode == 0, result.stderr
        assert f"Imported {reference} (" in result.stdout and "on kvm-a1, kvm-a2, kvm-b1, kvm-b2" in result.stdout
    again = env.run("import", "network/lan", "--id", "lan", "-f", str(env.manifests))
    assert again.returncode == 1 and "already managed" in again.stderr
    diff = env.run("diff", "-f", str(env.manifests))
    assert diff.returncode == 2, diff.stderr
    for adopted in ('network "lan"', 'datastore "local"', 'image "debian-12"'):
        assert f"+ {adopted}" not in diff.stdout
    assert 'network "backend"' in diff.stdout  # not imported: still to add


def test_an_object_under_another_name_or_of_another_stack_is_refused(env: Env) -> None:
    _by_hand(env, owner=Ownership("other", "Network", "default", "lan"))
    renamed = env.run("import", "network/lan", "--id", "lan2", "-f", str(env.manifests))
    assert renamed.returncode == 1
    assert "network/lan is the network named 'lan' on every host" in renamed.stderr
    foreign = env.run("import", "network/lan", "--id", "lan", "-f", str(env.manifests))
    assert foreign.returncode == 1 and "belongs to stack 'other'" in foreign.stderr
    manifestless = env.run("import", "datastore/nothere", "--id", "nothere", "--stack", "examples")
    assert manifestless.returncode == 1
