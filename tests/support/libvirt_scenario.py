"""The scenario of the libvirt end-to-end tests (tests/libvirt/), also run by bench/heal.py: the example manifests of
manifests/examples-libvirt/ rewritten with a per-run prefix, the test's own paths and its own /24, the real CLI
run on them, and the removal of whatever carries the prefix.

libvirt-python is imported only by ``remove_prefixed``, so this module loads without it.
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "manifests" / "examples-libvirt"
NEBCTL = Path(sys.executable).with_name("nebctl")


@dataclass
class Run:
    """One scenario's files, names and a libvirt connection of the test's own (not the driver's)."""

    root: Path
    manifests: Path
    prefix: str
    documents: list[dict[str, Any]]
    connection: Any  # libvirt.virConnect

    def nebctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        database = f"sqlite:///{self.root / 'state.db'}"
        command = [str(NEBCTL), "--db", database, "--config", str(self.root / "config.yaml"), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=self.root)

    def manifest_args(self) -> list[str]:
        return ["-f", str(self.manifests), "--stack", self.prefix]

    def write(self) -> None:
        """Write ``documents`` back, one file per kind as in the examples (YAML 1.2, as nebctl reads it)."""
        for path in self.manifests.glob("*.yaml"):
            path.unlink()
        yaml = YAML(typ="safe", pure=True)
        yaml.default_flow_style = False
        for index, document in enumerate(self.documents):
            with (self.manifests / f"{index:02d}-{document['kind'].lower()}.yaml").open("w") as handle:
                yaml.dump(document, handle)

    def vms(self) -> list[dict[str, Any]]:
        return [d for d in self.documents if d["kind"] == "VirtualMachine"]

    def domain(self, name: str) -> Any:
        return self.connection.lookupByName(name)


def check(result: subprocess.CompletedProcess[str], expected: int = 0) -> str:
    assert result.returncode == expected, (
        f"{result.args[3:]} exited {result.returncode}, expected {expected}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


def load_examples() -> list[dict[str, Any]]:
    yaml = YAML(typ="safe", pure=True)
    return [doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.load_all(path.read_text())]


def rewrite_examples(documents: list[dict[str, Any]], prefix: str, root: Path, octet: int) -> list[dict[str, Any]]:
    """The examples with prefixed names, the test's own paths and its own /24 (10.123.0.x -> 10.123.OCTET.x)."""
    documents = copy.deepcopy(documents)
    renamed = {
        doc["metadata"]["name"]: f"{prefix}-{doc['metadata']['name']}" for doc in documents if doc["kind"] != "Host"
    }

    def rename(name: str) -> str:
        return renamed.get(name, name)

    def address(text: str) -> str:
        assert text.startswith("10.123.0."), text  # the examples' network; the rewrite below relies on it
        return f"10.123.{octet}.{text.rsplit('.', 1)[1]}"

    for doc in documents:
        spec = doc["spec"]
        doc["metadata"]["name"] = rename(doc["metadata"]["name"])
        match doc["kind"]:
            case "Datastore":
                spec["path"] = str(root / "datastore")
            case "Image":
                spec["source"] = str(root / "base.qcow2")
                spec["datastore"] = rename(spec["datastore"])
            case "Network":
                spec["cidr"] = f"10.123.{octet}.0/24"
                spec["gateway"] = address(spec["gateway"])
                spec["range"] = {edge: address(value) for edge, value in spec["range"].items()}
            case "SecurityGroup":
                for rule in spec["rules"]:
                    if rule.get("cidr", "").startswith("10.123.0."):
                        rule["cidr"] = f"10.123.{octet}.0/24"
            case "VirtualMachine":
                for disk in spec.get("disks", []):
                    disk["image"] = rename(disk["image"])
                for nic in spec.get("nics", []):
                    nic["network"] = rename(nic["network"])
                    nic["securityGroups"] = [rename(group) for group in nic.get("securityGroups", [])]
                    if "ip" in nic:
                        nic["ip"] = address(nic["ip"])
    return documents


def remove_prefixed(connection: Any, prefix: str) -> list[str]:
    """Remove every libvirt object whose name carries ``prefix``; returns what it found (empty: nothing left)."""
    import libvirt

    found: list[str] = []
    for domain in connection.listAllDomains(0):
        if domain.name().startswith(prefix):
            found.append(f"domain {domain.name()}")
            with contextlib.suppress(libvirt.libvirtError):
                domain.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    for network in connection.listAllNetworks(0):
        if network.name().startswith(prefix):
            found.append(f"network {network.name()}")
            with contextlib.suppress(libvirt.libvirtError):
                network.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                network.undefine()
    # Combined NIC filters reference the groups' filters: remove those named after a NIC first.
    filters = [f for f in connection.listAllNWFilters(0) if prefix in f.name()]
    for nwfilter in sorted(filters, key=lambda f: f.name().startswith(prefix)):
        found.append(f"nwfilter {nwfilter.name()}")
        with contextlib.suppress(libvirt.libvirtError):
            nwfilter.undefine()
    for pool in connection.listAllStoragePools(0):
        if pool.name().startswith(prefix):
            found.append(f"pool {pool.name()}")
            with contextlib.suppress(libvirt.libvirtError):
                if pool.isActive():
                    for volume in pool.listAllVolumes(0):
                        found.append(f"volume {volume.name()}")
                        volume.delete(0)
                    pool.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                pool.delete(0)
            with contextlib.suppress(libvirt.libvirtError):
                pool.undefine()
    return found
