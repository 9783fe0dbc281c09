"""The records kept between plans (``controller.applying.records_cache``), on every backend: each read gives
exactly what ``Store.list_resources()`` gives, decoding only the rows written since the last read, even when
the clock does not move between writes (a row's stamp is its content, not its update time); and the records as
revealed for planning are what ``reveal_records`` gives, revealed again only when their row or manifest moved."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from nebctl.controller.applying.controller import reveal_records
from nebctl.controller.applying.records_cache import RecordsCache
from nebctl.controller.planning import PlanError
from nebctl.core.keys import Kind, ResourceKey
from nebctl.database import ResourceRecord, Store
from nebctl.database.sealing import KeyRing, seal_spec
from nebctl.schemas.loading import load_text

VM = Kind.VIRTUAL_MACHINE


def vm(name: str, **fields: Any) -> ResourceRecord:
    fields.setdefault("applied", {"vcpu": 1, "nics": [{"ip": "10.0.0.1"}]})
    fields.setdefault("applied_hash", "a1")
    fields.setdefault("status", "ready")
    return ResourceRecord(kind=VM, namespace="default", name=name, stack="web", **fields)


def seeded(store: Store) -> None:
    store.save_resources([vm(f"vm-{i}", live={"uuid": f"u-{i}"}, host="h1") for i in range(6)])
    store.save_resource(ResourceRecord(Kind.NETWORK, "default", "lan", "web", applied={"cidr": "10.0.0.0/24"}))


def test_reads_give_what_the_store_lists_and_decode_only_what_was_written(store: Store) -> None:
    seeded(store)
    cache = RecordsCache()
    assert cache.records(store) == store.list_resources()
    assert cache.read_rows == 7  # the first read decodes every row
    assert cache.records(store) == store.list_resources()
    assert cache.read_rows == 0  # nothing written since

    # The fixture's clock does not move: these writes keep the rows' update time, and are still seen.
    key = ResourceKey(VM, "default", "vm-2")
    store.save_resource(vm("vm-2", live={"uuid": "u-2", "disk.0": {"volume": "v"}}, host="h1"))  # only live
    got = cache.records(store)
    assert got == store.list_resources() and cache.read_rows == 1
    assert next(r for r in got if r.key == key).live == {"uuid": "u-2", "disk.0": {"volume": "v"}}

    # A spec changed under an unchanged digest (a writer that did not recompute it) is seen as well.
    store.save_resource(vm("vm-3", applied={"vcpu": 4, "nics": [{"ip": "10.0.0.9"}]}, live={"uuid": "u-3"}, host="h1"))
    got = cache.records(store)
    assert got == store.list_resources() and cache.read_rows == 1
    assert next(r for r in got if r.name == "vm-3").applied == {"vcpu": 4, "nics": [{"ip": "10.0.0.9"}]}

    store.save_resource(vm("vm-4", live={"uuid": "u-4"}, host="h1", status="updating"))  # the status alone
    assert cache.records(store) == store.list_resources() and cache.read_rows == 1


def test_added_and_deleted_rows(store: Store) -> None:
    seeded(store)
    cache = RecordsCache()
    cache.records(store)
    store.delete_resource(ResourceKey(VM, "default", "vm-0"))
    store.save_resource(vm("vm-10", live={"uuid": "u-10"}))
    got = cache.records(store)
    assert got == store.list_resources()
    assert [r.name for r in got] == ["lan", "vm-1", "vm-10", "vm-2", "vm-3", "vm-4", "vm-5"]  # the store's order
    assert cache.read_rows == 1
    # A row deleted and written again under the same key is a new row (a new id): read again.
    store.delete_resource(ResourceKey(VM, "default", "vm-1"))
    store.save_resource(vm("vm-1", live={"uuid": "u-1"}, host="h1"))
    assert cache.records(store) == store.list_resources() and cache.read_rows == 1


class WritesBetweenReads:
    """The store, with a writer that changes ``vm-5`` after the stamps were read and before the changed rows are:
    the race the cache must survive."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.armed = True

    def resource_stamps(self) -> Any:
        return self.store.resource_stamps()

    def list_resources(self) -> Any:
        return self.store.list_resources()

    def get_resources(self, keys: Any) -> Any:
        if self.armed:
            self.armed = False
            self.store.save_resource(vm("vm-5", live={"uuid": "u-5"}, host="h2"))  # moved, between the reads
        return self.store.get_resources(keys)


def test_a_row_written_between_the_two_reads_is_read_again_next_time(store: Store) -> None:
    seeded(store)
    cache = RecordsCache()
    cache.records(store)
    store.save_resource(vm("vm-5", live={"uuid": "u-5"}, host="h3"))
    racing = WritesBetweenReads(store)
    got = cache.records(cast(Store, racing))
    assert next(r for r in got if r.name == "vm-5").host == "h2"  # the newer content, as then read
    got = cache.records(store)
    assert cache.read_rows == 1  # kept under the older stamp, so read again
    assert got == store.list_resources()


# --- the records as revealed for planning, kept beside them ---------------------------------------------------

FIRST, SECOND = b"first-key-0123456789abcdef", b"second-key-0123456789abcdef"


def manifest(name: str, user_data: str | None) -> Any:
    cloud = f"  cloudInit: {{userData: {json.dumps(user_data)}}}\n" if user_data is not None else ""
    text = (
        f"apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {{name: {name}}}\n"
        f"spec:\n  vcpu: 1\n  memory: 512Mi\n  disks: [{{size: 4Gi}}]\n{cloud}"
    )
    return next(iter(load_text(text).documents.values()))


def stored_vm(name: str, user_data: str | None, ring: KeyRing | None) -> ResourceRecord:
    spec: dict[str, Any] = {"vcpu": 1}
    if user_data is not None:
        spec["cloudInit"] = {"userData": user_data}
    sealed = dict(seal_spec(VM, spec, ring) or {}) if ring is not None else spec  # None: as an old nebctl wrote it
    return ResourceRecord(kind=VM, namespace="default", name=name, stack="web", applied=sealed, desired=sealed)


class Counting:
    """``reveal_records`` itself, noting which records each call was given."""

    def __init__(self) -> None:
        self.given: list[list[str]] = []

    def __call__(self, records: Any, documents: Any, ring: KeyRing) -> Any:
        self.given.append([record.name for record in records])
        return reveal_records(records, documents, ring)


def test_revealed_records_are_what_reveal_records_gives_and_only_changed_ones_are_revealed_again() -> None:
    ring = KeyRing((FIRST,))
    stored = [
        stored_vm("a", "#cloud-config\nsecret-a", ring),  # sealed; the manifest has the same value
        stored_vm("b", None, ring),  # no secret
        stored_vm("c", "in clear", None),  # stored in clear by an older nebctl: to be sealed again
    ]
    documents = {
        ResourceKey(VM, "default", n): manifest(n, u)
        for n, u in [("a", "#cloud-config\nsecret-a"), ("b", None), ("c", "in clear")]
    }
    cache, counting = RecordsCache(), Counting()
    got = cache.revealed(stored, documents, ring, counting)
    assert got == reveal_records(stored, documents, ring)
    assert got[0][ResourceKey(VM, "default", "a")].applied == {
        "vcpu": 1,
        "cloudInit": {"userData": "#cloud-config\nsecret-a"},
    }
    assert [r.name for r in got[1]] == ["c"]
    assert list(got[0]) == [r.key for r in stored]  # the records' order

    # Nothing changed: nothing is revealed again, and the result is the same (the record to seal included).
    again = cache.revealed(stored, documents, ring, counting)
    assert again == got and counting.given[-1] == []

    # a's manifest now has another secret: the digest stays (the planner sees the change); only a is looked at.
    documents[ResourceKey(VM, "default", "a")] = manifest("a", "#cloud-config\nother")
    moved = cache.revealed(stored, documents, ring, counting)
    assert counting.given[-1] == ["a"]
    assert moved == reveal_records(stored, documents, ring)
    assert moved[0][ResourceKey(VM, "default", "a")].applied == stored[0].applied  # still the digest

    # b's row was written again (another record object): only b.
    stored[1] = stored_vm("b", None, ring)
    assert cache.revealed(stored, documents, ring, counting) == reveal_records(stored, documents, ring)
    assert counting.given[-1] == ["b"]

    # A new key ring (the key rotated: the old one verifies, the new one seals): every record again, and a's
    # digest (of the old key) is then to be sealed again once its manifest matches.
    documents[ResourceKey(VM, "default", "a")] = manifest("a", "#cloud-config\nsecret-a")
    rotated = KeyRing((SECOND, FIRST))
    got = cache.revealed(stored, documents, rotated, counting)
    assert counting.given[-1] == ["a", "b", "c"]
    assert got == reveal_records(stored, documents, rotated)
    assert [r.name for r in got[1]] == ["a", "c"]


def test_a_record_sealed_with_a_missing_key_is_refused_every_time() -> None:
    ring = KeyRing((FIRST,))
    stored = [stored_vm("a", "s", KeyRing((SECOND,))), stored_vm("b", "t", ring)]
    documents = {ResourceKey(VM, "default", n): manifest(n, u) for n, u in [("a", "s"), ("b", "t")]}
    cache = RecordsCache()
    for _ in range(2):  # a refusal keeps nothing that would let the next plan through
        with pytest.raises(PlanError, match="put that key back"):
            cache.revealed(stored, documents, ring, reveal_records)
    stored[0] = stored_vm("a", "s", ring)
    assert cache.revealed(stored, documents, ring, reveal_records) == reveal_records(stored, documents, ring)
