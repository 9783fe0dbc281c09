"""The records kept between plans (``controller.applying.records_cache``), on every backend: each read gives
exactly what ``Store.list_resources()`` gives, decoding only the rows written since the last read, even when
the clock does not move between writes (a row's stamp is its content, not its update time)."""

from __future__ import annotations

from typing import Any, cast

from nebctl.controller.applying.records_cache import RecordsCache
from nebctl.core.keys import Kind, ResourceKey
from nebctl.database import ResourceRecord, Store

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
