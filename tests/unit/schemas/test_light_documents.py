"""Validated documents are kept light: parts that documents repeat are one shared instance, and the
fields-given sets are shared. Neither may show anywhere but in identity and memory."""

from __future__ import annotations

from typing import Any

from nebctl.schemas.models import Disk, Lifecycle, VirtualMachine, spec_document


def vm(name: str, **spec: Any) -> VirtualMachine:
    document = {
        "apiVersion": "nebctl/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "memory": "1Gi",
            "disks": [{"image": "debian", "size": "10Gi"}, {"size": "1Gi"}],
            "nics": [{"network": "lan", "securityGroups": ["ssh"]}],
            "placement": {"policy": "striping"},
            **spec,
        },
    }
    return VirtualMachine.model_validate(document)


def test_repeated_parts_are_one_instance() -> None:
    first, second = vm("a"), vm("b")
    assert first.spec.disks[0] is second.spec.disks[0]
    assert first.spec.disks[1] is second.spec.disks[1]
    assert first.spec.nics[0] is second.spec.nics[0]
    assert first.spec.placement is second.spec.placement
    assert first.spec.lifecycle is second.spec.lifecycle  # the default, made by a default factory
    assert first.spec is not second.spec and first.metadata is not second.metadata


def test_parts_that_differ_are_not_shared() -> None:
    first, second = vm("a"), vm("b", disks=[{"image": "debian", "size": "20Gi"}], placement={"host": "h1"})
    assert first.spec.disks[0] != second.spec.disks[0]
    assert second.spec.disks[0].size == 20 * 1024**3
    assert second.spec.placement.host == "h1" and first.spec.placement.host is None


def test_a_value_given_and_the_same_value_by_default_stay_apart() -> None:
    """``model_fields_set`` tells them apart, so sharing must too."""
    given = Disk.model_validate({"size": "1Gi", "clone": "overlay"})
    default = Disk.model_validate({"size": "1Gi"})
    first, second = vm("a", disks=[{"size": "1Gi", "clone": "overlay"}]), vm("b", disks=[{"size": "1Gi"}])
    assert first.spec.disks[0] == second.spec.disks[0]
    assert first.spec.disks[0] is not second.spec.disks[0]
    assert first.spec.disks[0].model_fields_set == given.model_fields_set == {"size", "clone"}
    assert second.spec.disks[0].model_fields_set == default.model_fields_set == {"size"}


def test_fields_sets_are_shared_and_copies_get_their_own() -> None:
    first, second = vm("a"), vm("b", vcpu=2)
    assert first.metadata.model_fields_set is second.metadata.model_fields_set
    assert first.spec.model_fields_set == {"memory", "disks", "nics", "placement"}
    assert second.spec.model_fields_set == {"memory", "disks", "nics", "placement", "vcpu"}
    copied = first.spec.model_copy(update={"vcpu": 4})
    assert copied.model_fields_set == {"memory", "disks", "nics", "placement", "vcpu"}
    assert first.spec.model_fields_set == {"memory", "disks", "nics", "placement"}
    assert first.spec.vcpu == 1


def test_documents_dump_as_before() -> None:
    first, second = vm("a"), vm("b")
    expected = {
        "state": "running",
        "vcpu": 1,
        "memory": 1024**3,
        "disks": [
            {"image": "debian", "size": 10 * 1024**3, "clone": "overlay", "datastore": None},
            {"image": None, "size": 1024**3, "clone": "overlay", "datastore": None},
        ],
        "nics": [{"network": "lan", "ip": None, "securityGroups": ["ssh"]}],
        "placement": {
            "host": None,
            "requirements": None,
            "rank": None,
            "policy": "striping",
            "burst": None,
            "instanceType": None,
        },
        "cloudInit": None,
        "boot": None,
        "lifecycle": {"preventDestroy": False, "ignoreChanges": [], "createBeforeDestroy": False},
        "dependsOn": [],
    }
    assert spec_document(first) == spec_document(second) == expected
    assert Lifecycle() == first.spec.lifecycle
