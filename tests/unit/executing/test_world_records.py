"""``ExecutionWorld``'s records: the stack's records as planned, never written, with what the journal writes on
top: a record kept is the one found next, a record dropped is gone, and one kept again after it is back."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, cast

from nebctl.controller.applying.world import ExecutionWorld
from nebctl.core.keys import Kind, ResourceKey
from nebctl.database.records import ResourceRecord

VM = Kind.VIRTUAL_MACHINE


def test_the_journals_writes_go_on_top_of_the_planned_records() -> None:
    web, db = ResourceRecord(VM, "default", "web", "s"), ResourceRecord(VM, "default", "db", "s")
    planned = {web.key: web, db.key: db}
    world = ExecutionWorld(
        stack="s",
        registry=cast(Any, None),
        hosts={},
        documents={},
        records=MappingProxyType(planned),  # read-only: a write to it would raise
        shutdown_timeout=1.0,
        sources=cast(Any, None),
    )
    assert world.current(web.key) is web and world.record(db.key) is db
    updated = ResourceRecord(VM, "default", "web", "s", status="ready")
    world.keep(updated)
    assert world.current(web.key) is updated
    world.drop(db.key)
    assert world.current(db.key) is None and world.record(db.key) is None
    created = ResourceRecord(VM, "default", "new", "s")
    world.keep(created)
    assert world.current(created.key) is created
    world.drop(created.key)
    world.keep(db)
    assert world.current(db.key) is db and world.current(created.key) is None
    assert world.current(ResourceKey.of(VM, "absent")) is None
    assert planned == {web.key: web, db.key: db}
