"""Labels written on live objects, and a repair refused under running VMs, on real libvirt (qemu:///system of
tests/support/libvirtd.py), through the real CLI, with manifests/examples-libvirt/ rewritten as
tests/libvirt/test_end_to_end.py's fixture does (per-run names, paths and /24).

1. The examples are applied (two running domains on the lab network). A VM's labels and annotations and the
   datastore's labels change: ``diff`` plans them as updates of the applied spec only, ``apply`` runs one ``own``
   action each (the domain's ``<metadata>`` replaced live and in its definition, the pool's ledger entry
   rewritten) and nothing else, and libvirt then carries the new labels.
2. The network's DHCP range is changed with ``virsh net-update`` while both domains are attached to it: only
   deleting and creating the network again would repair it, which nebctl's libvirt driver refuses while NICs hold
   DHCP entries on it (and which would cut the running VMs off). ``diff`` says so and names both VMs; ``apply``
   leaves the network as it is.
3. The database file is deleted and ``recover`` rebuilds it: the records carry the new labels, and the next
   ``diff`` has nothing to do (it still shows the refused repair).
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from typing import Any

import pytest

from nebctl.drivers.libvirt.xmlbuild.base import OWNER_NAMESPACE
from tests.libvirt.test_end_to_end import run  # noqa: F401  # the fixture
from tests.support.libvirt_scenario import Run, check

try:
    import libvirt
except ImportError:  # test_end_to_end's import already skipped (or failed, in CI) the whole directory
    pytest.skip("libvirt-python is not installed", allow_module_level=True)

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(900)]

VM_METADATA = {"labels": {"app": "lab-web"}, "annotations": {"owner": "ops"}}
POOL_METADATA = {"labels": {"tier": "fast"}}


def _owner_spec(domain: Any, flags: int) -> dict[str, Any]:
    """The applied spec in a domain's ownership metadata (live or in its definition, by ``flags``)."""
    text = domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, OWNER_NAMESPACE, flags)
    found = re.search(r"<spec>(.*)</spec>", text, re.DOTALL)
    assert found is not None, text
    return dict(json.loads(found.group(1)))


def _applied(run: Run, kind: str, name: str) -> dict[str, Any]:  # noqa: F811  # ``run`` the value, not the fixture
    connection = sqlite3.connect(run.root / "state.db")
    try:
        row = connection.execute("SELECT applied FROM resources WHERE kind = ? AND name = ?", (kind, name)).fetchone()
    finally:
        connection.close()
    assert row is not None, (kind, name)
    return dict(json.loads(row[0]))


def test_labels_follow_onto_libvirt_and_a_network_under_vms_is_not_repaired(run: Run) -> None:  # noqa: F811
    names = {d["kind"]: d["metadata"]["name"] for d in run.documents}
    network, pool = names["Network"], names["Datastore"]
    first, second = sorted(vm["metadata"]["name"] for vm in run.vms())
    spec = next(d["spec"] for d in run.documents if d["kind"] == "Network")
    octet = spec["cidr"].split(".")[2]  # the fixture's own /24: 10.123.OCTET.0/24
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))

    # 1. labels and annotations.
    for document in run.documents:
        if document["metadata"]["name"] == first:
            document["metadata"].update(VM_METADATA)
        elif document["metadata"]["name"] == pool:
            document["metadata"].update(POOL_METADATA)
    run.write()
    plan = check(run.nebctl("diff", *run.manifest_args()), expected=2)
    for address in (f"vm/{first}", f"datastore/{pool}"):
        assert (
            f"# {address} will be updated in-place (only the applied spec written on its live objects changes)" in plan
        ), plan
    applied = check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    ran = re.findall(r"\] +[\d.]+s (\S+) succeeded", applied)
    assert sorted(ran) == sorted([f"vm/{first}:own", f"datastore/{pool}:own:kvm-local"]), applied
    domain = run.domain(first)
    assert domain.isActive()
    for flags in (libvirt.VIR_DOMAIN_AFFECT_LIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG):
        assert _owner_spec(domain, flags)["metadata"] == VM_METADATA
    check(run.nebctl("diff", *run.manifest_args()))

    # 2. the network changed under both VMs.
    old_range = f"<range start='10.123.{octet}.100' end='10.123.{octet}.200'/>"
    new_range = f"<range start='10.123.{octet}.150' end='10.123.{octet}.160'/>"
    for command, element in (("delete", old_range), ("add", new_range)):
        virsh = ["virsh", "-c", "qemu:///system", "net-update", network, command, "ip-dhcp-range", element]
        subprocess.run([*virsh, "--live", "--config"], check=True, capture_output=True)
    refusal = (
        f"# network/{network} network {network} was changed outside nebctl on kvm-local: "
        f"range 10.123.{octet}.100-10.123.{octet}.200 -> 10.123.{octet}.150-10.123.{octet}.160; "
        f"nebctl cannot repair it there while vm/{first} is attached to it (nics[0]), vm/{second} is attached to "
        "it (nics[0]): it would have to be deleted and created again. Put it back as applied by hand, or move "
        "those VMs off kvm-local (or delete them), then apply again"
    )
    plan = check(run.nebctl("diff", *run.manifest_args()))
    assert refusal in plan, plan
    assert "No changes." in plan
    applied = check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    assert re.findall(r"\] +[\d.]+s (\S+) succeeded", applied) == [], applied
    live = run.connection.networkLookupByName(network)
    assert live.isActive() and f"start='10.123.{octet}.150'" in live.XMLDesc(0)

    # 3. the database lost and recovered.
    (run.root / "state.db").unlink()
    check(run.nebctl("recover", *run.manifest_args()))
    assert _applied(run, "VirtualMachine", first)["metadata"] == VM_METADATA
    assert _applied(run, "Datastore", pool)["metadata"] == POOL_METADATA
    after = check(run.nebctl("diff", *run.manifest_args()))
    assert "No changes." in after, after
    assert refusal in after, after
