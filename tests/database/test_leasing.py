"""The leader lease of the service's replicas and its fencing, on SQLite, PostgreSQL and MariaDB.

The lease's times are the database's clock, so these tests use real, short durations rather than a fake clock,
and assert on terms and holders (who may act), never on how long something took.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from nebctl.core.keys import Kind
from nebctl.database import Store
from nebctl.database.leasing import Fenced
from nebctl.database.operating import Fence
from nebctl.database.records import ActionRecord, EventRecord
from tests.support.databases import DatabaseServer


def test_one_holder_and_a_term_that_only_grows(store: Store) -> None:
    first = store.acquire_lease("serve/s", "a", 30)
    assert first is not None and (first.holder, first.term) == ("a", 1)
    seen = store.acquire_lease("serve/s", "b", 30)
    assert seen is not None and (seen.holder, seen.term) == ("a", 1)  # b sees who leads, and does not
    again = store.acquire_lease("serve/s", "a", 30)
    assert again is not None and (again.holder, again.term) == ("a", 1)  # keeping it is no new term
    assert store.renew_lease("serve/s", "a", 1, 30) is not None
    assert store.renew_lease("serve/s", "b", 1, 30) is None  # not b's
    assert store.release_lease("serve/s", "b", 1) is False
    assert store.release_lease("serve/s", "a", 1) is True
    taken = store.acquire_lease("serve/s", "b", 30)
    assert taken is not None and (taken.holder, taken.term) == ("b", 2)
    assert store.renew_lease("serve/s", "a", 1, 30) is None  # a's term is over
    assert store.release_lease("serve/s", "a", 1) is False
    back = store.acquire_lease("serve/s", "a", 30)
    assert back is not None and back.holder == "b"
    lease, now = store.lease_status("serve/s")
    assert lease is not None and lease.holder == "b" and lease.term == 2 and lease.expires_at > now
    other = store.acquire_lease("serve/other", "a", 30)  # each stack has its own lease
    assert other is not None and (other.holder, other.term) == ("a", 1)


def test_an_expired_lease_goes_to_the_next_taker_in_a_new_term(store: Store) -> None:
    assert store.acquire_lease("serve/s", "a", 0.5) is not None
    time.sleep(0.8)
    assert store.renew_lease("serve/s", "a", 1, 30) is None  # too late: it ran out
    taken = store.acquire_lease("serve/s", "b", 30)
    assert taken is not None and (taken.holder, taken.term) == ("b", 2)
    assert store.release_lease("serve/s", "b", 2)
    # Taking back one's own lease after it ran out starts a new term too: writes of the old one stay refused.
    assert store.acquire_lease("serve/s", "b", 0.3) is not None
    lease, _ = store.lease_status("serve/s")
    assert lease is not None and lease.term == 3
    time.sleep(0.5)
    again = store.acquire_lease("serve/s", "b", 30)
    assert again is not None and again.term == 4


def _event(message: str) -> EventRecord:
    return EventRecord(type="test.write", message=message)


def test_fencing_refuses_every_write_of_a_former_leader(store: Store) -> None:
    lease = store.acquire_lease("serve/s", "a", 30)
    assert lease is not None
    leader = store.fenced(Fence("serve/s", "a", lease.term))
    leader.add_event(_event("written in term 1"))
    apply_id = leader.begin_apply(stack="s", revision=None, plan={}, holder="a")
    action = ActionRecord(
        action_id="vm/x/create",
        kind=Kind.VIRTUAL_MACHINE,
        namespace="default",
        name="x",
        family="compute",
        operation="create",
    )
    leader.journal_actions(apply_id, [action])
    store.release_lease("serve/s", "a", lease.term)
    assert store.acquire_lease("serve/s", "b", 30) is not None  # b leads in term 2
    with pytest.raises(Fenced, match="term 1 was lost"):
        leader.add_event(_event("written after term 1"))
    with pytest.raises(Fenced):
        leader.update_action(apply_id, "vm/x/create", state="running")
    with pytest.raises(Fenced), leader.batch() as tx:
        tx.finish_apply(apply_id, state="succeeded", summary={})
    follower = store.fenced(Fence("serve/s", "c"))  # no term: a follower writes nothing
    with pytest.raises(Fenced, match="does not hold"):
        follower.add_event(_event("from a follower"))
    # Nothing refused reached the database; what was written carries its term.
    assert [e.message for e in store.list_events(limit=10) if e.type == "test.write"] == ["written in term 1"]
    (entry,) = store.actions_of(apply_id)
    assert (entry.state, entry.term) == ("pending", 1)
    recorded = store.get_apply(apply_id)
    assert recorded is not None and recorded.finished_at is None and recorded.term == 1
    new_leader = store.fenced(Fence("serve/s", "b", 2))
    new_leader.update_action(apply_id, "vm/x/create", state="cancelled")
    (entry,) = store.actions_of(apply_id)
    assert (entry.state, entry.term) == ("cancelled", 2)


def test_an_expired_lease_fences_its_holder_even_before_anyone_takes_it(store: Store) -> None:
    lease = store.acquire_lease("serve/s", "a", 0.4)
    assert lease is not None
    leader = store.fenced(Fence("serve/s", "a", lease.term))
    leader.add_event(_event("in time"))
    time.sleep(0.6)
    with pytest.raises(Fenced, match="expired"):
        leader.add_event(_event("too late"))


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])  # SQLite has one writer at a time anyway
def test_a_takeover_waits_for_the_write_already_checked(backend: str, request: pytest.FixtureRequest) -> None:
    """A write that passed the fence commits before the takeover does; no write passes after it."""
    server: DatabaseServer = request.getfixturevalue(f"{backend}_server")
    store = Store.open(server.create_database(f"nebctl_fence_{os.getpid()}_{backend}"))
    try:
        lease = store.acquire_lease("serve/s", "a", 0.5)
        assert lease is not None
        leader = store.fenced(Fence("serve/s", "a", lease.term))
        order: list[str] = []
        taken = threading.Event()

        def take_over() -> None:
            time.sleep(0.8)  # the lease has expired by now, but the leader's write holds its row
            result = store.acquire_lease("serve/s", "b", 30)
            order.append(f"taken by {result.holder if result else None}")
            taken.set()

        thread = threading.Thread(target=take_over)
        with leader.batch() as tx:
            tx.add_event(_event("checked while leading"))
            thread.start()
            time.sleep(1.5)  # the taker waits on the lease row meanwhile
            order.append("committed")
        thread.join(timeout=30)
        assert taken.is_set()
        assert order == ["committed", "taken by b"]
        with pytest.raises(Fenced):
            leader.add_event(_event("after the takeover"))
    finally:
        store.close()


def test_heartbeats_and_forgetting_replicas(store: Store) -> None:
    store.heartbeat(replica="a", lease="serve/s", host="h", pid=1, listen="127.0.0.1:1", role="leader", term=3)
    store.heartbeat(replica="b", lease="serve/s", host="h", pid=2, listen=None, role="follower", term=None)
    first, _ = store.list_replicas("serve/s")
    time.sleep(0.05)
    store.heartbeat(replica="a", lease="serve/s", host="h", pid=1, listen="127.0.0.1:1", role="follower", term=None)
    replicas, now = store.list_replicas("serve/s")
    assert [(r.id, r.role, r.term) for r in replicas] == [("a", "follower", None), ("b", "follower", None)]
    assert replicas[0].heartbeat_at > first[0].heartbeat_at and replicas[0].started_at == first[0].started_at
    assert all(r.heartbeat_at <= now for r in replicas)
    assert store.forget_replicas("serve/s", silent_for=3600) == 0
    assert store.forget_replicas("serve/s", ids={"b"}) == 1
    assert [r.id for r in store.list_replicas("serve/s")[0]] == ["a"]
