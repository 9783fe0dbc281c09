"""A Host's ``virtualization.domainType`` reaches the drivers: ``known_hosts`` gives every host reference the
domain type of its document, or, for a host only recorded, of its recorded spec; ``auto`` where none is said."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from nebctl.controller.observing import known_hosts
from nebctl.core.keys import Kind, ResourceKey
from nebctl.drivers.types import HostRef
from nebctl.schemas.diagnostics import ManifestError
from nebctl.schemas.loading import load_text

HOSTS = """
apiVersion: nebctl/v1
kind: Host
metadata: {name: nested}
spec: {uri: "qemu+ssh://nested/system", virtualization: {domainType: qemu}}
---
apiVersion: nebctl/v1
kind: Host
metadata: {name: plain}
spec: {uri: "qemu+ssh://plain/system"}
"""


@dataclass(frozen=True)
class Record:
    applied: dict[str, Any] | None
    stack: str = "s"
    status: str = "ready"
    live: dict[str, Any] = field(default_factory=dict)
    host: str | None = None


def test_documents_and_records_give_their_domain_type() -> None:
    documents = load_text(HOSTS).documents
    records = {
        ResourceKey.of(Kind.HOST, "gone"): Record(
            {"uri": "qemu+ssh://gone/system", "virtualization": {"domainType": "kvm"}}
        ),
        ResourceKey.of(Kind.HOST, "old"): Record({"uri": "qemu+ssh://old/system"}),  # recorded before the setting
        ResourceKey.of(Kind.HOST, "plain"): Record(
            {"uri": "qemu+ssh://plain/system", "virtualization": {"domainType": "qemu"}}
        ),
    }
    hosts = {name: ref for name, (ref, _drivers) in known_hosts(documents, records).items()}
    assert hosts == {
        "nested": HostRef("nested", "qemu+ssh://nested/system", "qemu"),
        "plain": HostRef("plain", "qemu+ssh://plain/system", "auto"),  # the document wins over the record
        "gone": HostRef("gone", "qemu+ssh://gone/system", "kvm"),
        "old": HostRef("old", "qemu+ssh://old/system", "auto"),
    }


class _Counted(dict[ResourceKey, Record]):
    """Records that say which were read."""

    def __init__(self, records: dict[ResourceKey, Record]) -> None:
        super().__init__(records)
        self.read: list[str] = []

    def __getitem__(self, key: ResourceKey) -> Record:
        self.read.append(key.name)
        return super().__getitem__(key)


def test_only_the_records_of_hosts_without_a_manifest_are_read() -> None:
    documents = load_text(HOSTS).documents
    records = _Counted(
        {
            ResourceKey.of(Kind.HOST, "plain"): Record({"uri": "qemu+ssh://elsewhere/system"}),
            ResourceKey.of(Kind.HOST, "gone"): Record({"uri": "qemu+ssh://gone/system"}),
        }
    )
    hosts = known_hosts(documents, records)
    assert records.read == ["gone"]  # the manifest of "plain" says where it is: its record is not even read
    assert [name for name in hosts] == ["plain", "gone", "nested"]  # the records' order, then the manifests' own
    assert hosts["plain"][0].uri == "qemu+ssh://plain/system"


def test_an_unknown_domain_type_is_refused_where_it_is_written() -> None:
    with pytest.raises(ManifestError) as refused:
        load_text(HOSTS.replace("domainType: qemu", "domainType: xen"), "hosts.yaml")
    [problem] = refused.value.diagnostics
    assert str(problem).startswith("hosts.yaml:5:")
    assert "Host/nested" in str(problem) and "virtualization.domainType" in str(problem)
