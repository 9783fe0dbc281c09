"""The change counters: every write to records and observations raises ``resources``, every write to users,
tokens and rules raises ``access``, in the write's own transaction (a batch that fails raises neither), and
nothing else raises them (a token's use, which is also a write, does not). On every backend. The connection
kept for reading them outlives a server that closed it: the next read is made on a new one."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from sqlalchemy import text

from nebctl.core.keys import Kind, ResourceKey
from nebctl.database import engines
from nebctl.database.records import ObservationRecord, QuotaRecord, ResourceRecord
from nebctl.database.store import Store
from nebctl.database.versions import Versions
from tests.database.conftest import FakeClock


def _vm(name: str, status: str = "running") -> ResourceRecord:
    return ResourceRecord(Kind.VIRTUAL_MACHINE, "default", name, "web", desired={"vcpu": 1}, status=status)


def _raised(store: Store, write: Callable[[], object]) -> tuple[int, int]:
    """How much ``write`` raised each counter (resources, access)."""
    before = store.change_versions()
    write()
    after = store.change_versions()
    return after.resources - before.resources, after.access - before.access


def test_a_new_database_starts_at_zero(store: Store) -> None:
    assert store.change_versions() == Versions(resources=0, access=0)


def test_each_write_raises_its_family_once(store: Store, clock: FakeClock) -> None:
    store.create_user("ann", groups=["ops"])
    rule = store.add_access_rule(subject_type="group", subject="ops", actions=["get"])
    secret, token = store.create_token("ann", name="t")
    # (the write, (resources raised by, access raised by)): each write is one transaction, one raise.
    table: list[tuple[Callable[[], object], tuple[int, int]]] = [
        (lambda: store.save_resource(_vm("a")), (1, 0)),
        (lambda: store.save_resources([_vm("b"), _vm("c")]), (1, 0)),
        (lambda: store.save_resource(_vm("a", status="stopped")), (1, 0)),
        (
            lambda: store.record_observations(
                [ObservationRecord(Kind.HOST, "default", "h1", "h1", "online", {})], probed=["h1"]
            ),
            (1, 0),
        ),
        (lambda: store.delete_resource(ResourceKey(Kind.VIRTUAL_MACHINE, "default", "b")), (1, 0)),
        (lambda: store.create_user("ben"), (0, 1)),
        (lambda: store.update_user("ben", groups=["ops"]), (0, 1)),
        (lambda: store.update_user("ben", enabled=False), (0, 1)),
        (lambda: store.add_access_rule(subject_type="user", subject="ben", actions=["get"]), (0, 1)),
        (lambda: store.delete_access_rule(rule.id), (0, 1)),
        (lambda: store.revoke_token(token.id), (0, 1)),
        (lambda: store.delete_user("ben"), (0, 1)),
        (lambda: store.set_quota(QuotaRecord("namespace", "default", vms=3)), (0, 1)),
        (lambda: store.set_quota(QuotaRecord("group", "ops", vcpu=8)), (0, 1)),
        (lambda: store.delete_quota("namespace", "default"), (0, 1)),
        # Neither a token's creation (no one can hold it yet) nor its use (the last use, kept to the minute).
        (lambda: store.create_token("ann", name="u"), (0, 0)),
        (lambda: store.verify_token(store.create_token("ann", name="v")[0]), (0, 0)),
        (store.list_resources, (0, 0)),
    ]
    for index, (write, expected) in enumerate(table):
        clock.advance(120)
        assert _raised(store, write) == expected, f"row {index}"
    assert secret  # issued, then revoked above


def test_a_failed_batch_raises_nothing(store: Store) -> None:
    before = store.change_versions()
    with pytest.raises(RuntimeError), store.batch() as batch:
        batch.save_resource(_vm("a"))
        batch.create_user("cid")
        raise RuntimeError("the batch fails before it commits")
    assert store.change_versions() == before
    assert store.get_resource(ResourceKey(Kind.VIRTUAL_MACHINE, "default", "a")) is None
    with store.batch() as batch:
        batch.save_resource(_vm("a"))
        batch.save_resource(_vm("b"))
        batch.create_user("cid")
    after = store.change_versions()
    assert (after.resources - before.resources, after.access - before.access) == (2, 1)


def test_another_connection_sees_the_raise_of_a_committed_write(store: Store, db_url: str) -> None:
    with Store.open(db_url) as other:
        seen = other.change_versions()
        store.save_resource(_vm("a"))
        assert other.change_versions().resources == seen.resources + 1
        store.create_user("dee")
        assert other.change_versions().access == seen.access + 1


# Ends every session on the test's database but the one asking, as a server restart or an idle timeout would.
KILL_OTHERS = {
    "postgresql": (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ),
    "mariadb": "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()",
}


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_the_counters_are_read_on_a_new_connection_after_the_server_closed_the_kept_one(
    backend: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue(f"{backend}_server")
    url = server.create_database(f"nebctl_test_{os.getpid()}_kept_{backend}")
    admin = engines.create(url)
    try:
        with Store.open(url) as store:
            before = store.change_versions()  # the connection kept for the counters is open from here
            with admin.connect() as connection:
                killed = 0
                for row in connection.execute(text(KILL_OTHERS[backend])).all():
                    if backend == "mariadb":
                        connection.execute(text(f"KILL {int(row[0])}"))
                    killed += 1
                assert killed >= 1  # at least the kept connection
            store.save_resource(_vm("a"))  # the pool's connections are checked before use (pre-ping)
            assert store.change_versions() == Versions(resources=before.resources + 1, access=before.access)
    finally:
        admin.dispose()


def test_own_writes_are_what_the_store_committed_while_watched(store: Store, db_url: str) -> None:
    """What an apply tells another writer by: each commit that raised the resources' counter, and the records it
    wrote, of this store and of those sharing its connections; not a rolled back batch, not another store's writes,
    not the access counter's, and nothing before or after the block."""
    key = {name: ResourceKey(Kind.VIRTUAL_MACHINE, "default", name) for name in "abcdefg"}
    store.save_resource(_vm("g"))  # before the block
    before = store.change_versions()
    with store.own_writes() as written:
        store.save_resources([_vm("a"), _vm("b")])
        with pytest.raises(RuntimeError), store.batch() as batch:
            batch.save_resource(_vm("c"))
            raise RuntimeError("rolled back")
        with store.batch() as batch:
            batch.save_resource(_vm("d"))
            batch.delete_resource(key["a"])
        store.record_observations([], probed=["h1"])  # raises the counter, writes no record
        store.create_user("ann")
        with Store.open(db_url) as other:
            other.save_resource(_vm("e"))
        with store.keeping_connection() as kept:
            kept.save_resource(_vm("f"))
    store.save_resource(_vm("g"))  # after it
    assert written.raised == 5
    assert written.written == {key["a"], key["b"], key["d"], key["f"]}
    now = store.change_versions()
    # The counter counts the other store's write and the one after the block too: the difference tells them.
    assert now.resources - before.resources == written.raised + 2
