"""Which hosts a plan lists the objects of, for drift (``controller.applying.controller.spanned_hosts``): those
on which the records put networks, datastores, images or security groups; no others (their listing would
serve no drift check: ``SpannedReconciler.detect_drift`` reads only the hosts a resource was applied to)."""

from __future__ import annotations

from nebctl.controller.applying.controller import spanned_hosts
from nebctl.core.keys import Kind, ResourceKey
from nebctl.database.records import ResourceRecord


def record(kind: Kind, name: str, applied: dict[str, object] | None) -> tuple[ResourceKey, ResourceRecord]:
    key = ResourceKey.of(kind, name)
    return key, ResourceRecord(kind, key.namespace, name, "web", applied=applied)


def test_the_hosts_of_recorded_spanned_resources_and_only_those() -> None:
    records = dict(
        [
            record(Kind.NETWORK, "lan", {"hosts": ["a", "b"], "cidr": "10.0.0.0/24"}),
            record(Kind.IMAGE, "debian", {"hosts": ["c"]}),
            record(Kind.SECURITY_GROUP, "ssh", {"hosts": []}),
            record(Kind.DATASTORE, "fast", None),  # never created (an interrupted create): nothing to list
            record(Kind.VIRTUAL_MACHINE, "web-1", {"host": "d", "hosts": ["e"]}),  # VMs are probed, not listed
            record(Kind.HOST, "f", {"uri": "sim://f"}),
        ]
    )
    assert spanned_hosts(records) == {"a", "b", "c"}
    assert spanned_hosts({}) == set()
