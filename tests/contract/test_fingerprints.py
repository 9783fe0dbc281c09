"""Contract: the inventory's fingerprints say, in the spec's terms, what each object was created as.

Drift of objects changed outside nebctl compares them with the applied spec, so every driver must spell a
network's address plan, a filter's rules and a pool's path alike; the expected fingerprints are written out by
hand from the definitions created here. A driver that cannot read one cheaply leaves it out (libvirt's volumes
that no ledger claims: the table says so), and the object is then judged by its presence only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from nebctl.drivers.protocols import InventoryDriver
from nebctl.drivers.types import (
    DatastoreDefinition,
    ImageImport,
    Ownership,
    SecurityGroupDefinition,
    SecurityRuleDefinition,
)
from tests.contract.conftest import DriverSet, capabilities_on
from tests.contract.values import a_network

NETWORK = {
    "mode": "nat",
    "cidr": "10.20.0.0/24",
    "gateway": "10.20.0.1",
    "range": "10.20.0.10-10.20.0.50",
    "mtu": "9000",
    "dns": "10.20.0.2, 9.9.9.9",
}
RULES = (
    SecurityRuleDefinition("in", "tcp", ("22",)),
    SecurityRuleDefinition("in", "tcp", ("80-90",), "10.1.0.0/16"),
    SecurityRuleDefinition("out", "any"),
)
GROUP = {"rules": "in tcp 22 0.0.0.0/0, in tcp 80-90 10.1.0.0/16, out any all 0.0.0.0/0"}
OWNER = Ownership("contract", "Network", "default", "fp")  # the exec example lists only objects with one
# The drivers whose inventory gives an image volume's fingerprint. libvirt reads only the volumes its ownership
# ledger claims (an image's, not a VM's disks); its test driver has no nwfilters, hence no ledger and none.
VOLUME_FINGERPRINTS = frozenset({"sim", "exec", "libvirt-qemu"})


def test_the_inventory_fingerprints_what_was_created(drivers: DriverSet, tmp_path: Path) -> None:
    monitoring = drivers.monitoring
    if not isinstance(monitoring, InventoryDriver):
        assert drivers.name == "ec2"  # a cloud host lists only its VMs
        return
    network = a_network("fplan")
    declared = {"owner": OWNER, "mtu": 9000, "dns": ("10.20.0.2", "9.9.9.9")}
    drivers.network.create(drivers.host, type(network)(**{**network.__dict__, **declared}))
    expected: dict[tuple[str, str], dict[str, str]] = {("network", "fplan"): NETWORK}
    drivers.storage.create_datastore(drivers.host, DatastoreDefinition("fppool", drivers.datastore_path, owner=OWNER))
    expected["pool", "fppool"] = {"type": "dir", "path": drivers.datastore_path}
    if "security-groups" in capabilities_on(drivers.network, drivers.host):
        drivers.network.update_sg(drivers.host, SecurityGroupDefinition("nebctl-sg-fp", RULES, owner=OWNER))
        expected["filter", "nebctl-sg-fp"] = GROUP
    source = tmp_path / "fp.qcow2"
    source.write_bytes(b"QFI\xfb" + b"\0" * 4096)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    image = ImageImport(volume="image-fp", source=str(source), sha256=digest, format="qcow2", owner=OWNER)
    info = drivers.storage.import_image(drivers.host, "fppool", image)
    listed = {(item.object, item.name): item.fingerprint for item in monitoring.inventory(drivers.host)}
    for thing, fingerprint in expected.items():
        assert listed[thing] == fingerprint, thing
    if drivers.name in VOLUME_FINGERPRINTS:
        # What the import answered is what nebctl records, and what it compares the volume with later.
        assert listed["volume", "image-fp"] == {"format": info.format, "size": _size(info.capacity)}
    else:
        assert listed["volume", "image-fp"] is None


def _size(capacity: int) -> str:
    from nebctl.core.quantities import format_quantity

    return format_quantity(capacity)
