"""Several ``nebctl serve`` replicas on one PostgreSQL or MariaDB database: one leads, a follower takes over when
it dies or is paused, fencing refuses a former leader's writes, and the fleet and the journal agree afterwards.

Real processes on real database servers (the harness starts them) and the sim fleet with latency. The lease is
short (3 s, renewed every second, tried every half second) so that takeovers take seconds; the tests assert on
roles, terms and the order of events, and on time only where the service promises it (takeover within the
lease plus 2 s after SIGKILL).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

from nebctl.database.store import Store
from tests.support.databases import DatabaseServer
from tests.support.drills import audit
from tests.support.replicas import (
    Replicas,
    ServerWorkspace,
    replica_workspace,
    restart_server,
    terms_overlap,
    write_vms,
)
from tests.support.serving import free_port, wait_for

LEASE = 3.0
_numbers = count(1)


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> DatabaseServer:
    found: DatabaseServer = request.getfixturevalue(f"{request.param}_server")
    return found


def _url(server: DatabaseServer) -> str:
    return server.create_database(f"nebctl_ha_{os.getpid()}_{next(_numbers)}")


@pytest.fixture
def replicas_of() -> Iterator[list[Replicas]]:
    made: list[Replicas] = []
    yield made
    for replicas in made:
        replicas.stop_all()


def _started(made: list[Replicas], workspace: ServerWorkspace, count: int) -> Replicas:
    replicas = Replicas(workspace)
    made.append(replicas)
    replicas.start(count)
    return replicas


def _newest_apply_progress(workspace: ServerWorkspace) -> tuple[int, int, int]:
    """(apply id, actions done, actions planned) of the newest apply; zeros before there is one."""
    with workspace.store() as store:
        applies = store.list_applies(stack=workspace.stack, limit=1)
        if not applies:
            return 0, 0, 0
        actions = store.actions_of(applies[0].id)
    done = sum(1 for a in actions if a.state in ("succeeded", "failed", "skipped", "cancelled"))
    return applies[0].id, done, len(actions)


def _wait_mid_apply(workspace: ServerWorkspace, *, done: int, above: int = 0) -> int:
    """Until the newest apply (newer than ``above``) has at least ``done`` finished actions and more to go."""

    def mid() -> int | None:
        apply_id, finished, planned = _newest_apply_progress(workspace)
        return apply_id if apply_id > above and finished >= done and finished < planned else None

    return wait_for(mid, timeout=120, what=f"an apply with {done} actions done")


def test_three_replicas_elect_one_leader_and_a_follower_takes_over_after_sigkill(
    tmp_path: Path, server: DatabaseServer, replicas_of: list[Replicas]
) -> None:
    workspace = replica_workspace(tmp_path / "ws", _url(server), vms=0)
    workspace.set_latency(0.05, 0.2)
    replicas = _started(replicas_of, workspace, 3)
    leader, term = replicas.wait_leader()
    for _ in range(10):  # exactly one, and it stays the one
        assert replicas.leaders() == [leader]
        followers = [s for s in replicas.running() if s is not leader]
        assert [replicas.role(s)["role"] for s in followers] == ["follower", "follower"]  # type: ignore[index]
        time.sleep(0.1)
    assert replicas.lease() == (term, replicas.role(leader)["replica"])  # type: ignore[index]
    # 20 VMs: 60 actions (a disk, a NIC and the VM each).
    write_vms(workspace, 20)
    apply_id = _wait_mid_apply(workspace, done=10)
    _, _, planned = _newest_apply_progress(workspace)
    assert planned >= 50
    leader.process.send_signal(signal.SIGKILL)
    killed_at = time.time()
    leader.process.wait(timeout=30)
    elected = replicas.wait_elected(above_term=term, timeout=60)
    assert elected.time is not None
    takeover = elected.time.timestamp() - killed_at
    assert takeover <= LEASE + 2.0, f"took {takeover:.2f}s"
    replicas.wait_converged()
    assert audit(workspace) == []
    with workspace.store() as store:
        killed = store.get_apply(apply_id)
        assert killed is not None and killed.state == "interrupted" and killed.term == term
        resumed = store.list_applies(stack=workspace.stack, limit=1)[0]
        assert resumed.term == int(elected.data["term"]) and resumed.id > apply_id
    assert terms_overlap(workspace) == []
    status = workspace.run("status", workspace.stack, "-o", "json")
    assert status.returncode == 0, status.stderr
    assert f'"leader": "{elected.data["replica"]}"' in status.stdout
    assert f'"term": {elected.data["term"]}' in status.stdout


def _journal(workspace: ServerWorkspace, apply_id: int) -> tuple[object, ...]:
    with workspace.store() as store:
        apply = store.get_apply(apply_id)
        assert apply is not None
        actions = store.actions_of(apply_id)
    return apply.state, apply.finished_at, tuple((a.action_id, a.state, a.term, a.finished_at) for a in actions)


def test_split_brain_a_paused_leader_is_fenced_and_steps_down(
    tmp_path: Path, server: DatabaseServer, replicas_of: list[Replicas]
) -> None:
    workspace = replica_workspace(tmp_path / "ws", _url(server), vms=0)
    workspace.set_latency(0.2, 0.4)
    replicas = _started(replicas_of, workspace, 2)
    old, term = replicas.wait_leader()
    old_id = replicas.role(old)["replica"]  # type: ignore[index]
    write_vms(workspace, 20)
    apply_id = _wait_mid_apply(workspace, done=6)
    old.process.send_signal(signal.SIGSTOP)
    try:
        new, new_term = replicas.wait_leader(above_term=term, timeout=60)
        assert new is not old and new_term > term
        replicas.wait_converged()
        journal_before = _journal(workspace, apply_id)
    finally:
        old.process.send_signal(signal.SIGCONT)

    def stepped_down() -> bool:
        ready = replicas.role(old)
        return ready is not None and ready["role"] == "follower" and int(ready["term"]) >= new_term

    wait_for(stepped_down, timeout=30, what="the old leader to follow")
    lost = [e for e in replicas.events("leader.lost") if e.data["replica"] == old_id]
    assert [int(e.data["term"]) for e in lost] == [term]
    # Its in-flight actions ended after it resumed, and journalling them was refused.
    assert f"of term {term} was lost" in old.output_all() and "write refused" in old.output_all()
    assert replicas.leaders() == [new]
    time.sleep(LEASE)
    # Nothing it wrote landed: its apply's journal is exactly as the new leader closed it (interrupted).
    assert _journal(workspace, apply_id) == journal_before
    assert journal_before[0] == "interrupted"
    # The new leader, told nothing, converges again if the old one's last actions changed anything.
    workspace.run("sync", workspace.stack, "--wait", "60s")
    replicas.wait_converged()
    assert audit(workspace) == []
    assert terms_overlap(workspace) == []


def test_the_database_restarted_under_the_replicas(
    tmp_path: Path, server: DatabaseServer, replicas_of: list[Replicas]
) -> None:
    workspace = replica_workspace(tmp_path / "ws", _url(server), vms=2)
    replicas = _started(replicas_of, workspace, 3)
    _, term = replicas.wait_leader()
    replicas.wait_converged()
    # Down for longer than the lease: the leader must stop acting meanwhile, and one leads again after.
    down = threading.Thread(target=restart_server, args=(server,), kwargs={"down_for": LEASE + 2})
    down.start()
    time.sleep(LEASE + 1.5)
    assert replicas.leaders() == []
    down.join(timeout=180)
    leader, new_term = replicas.wait_leader(above_term=term, timeout=60)
    for _ in range(5):
        assert replicas.leaders() == [leader]
        time.sleep(0.2)
    write_vms(workspace, 4)  # and it acts: the new VMs are applied
    replicas.wait_converged()
    assert audit(workspace) == []
    assert new_term > term


def test_twenty_elections_never_have_two_leaders_acting_at_once(
    tmp_path: Path, server: DatabaseServer, replicas_of: list[Replicas]
) -> None:
    workspace = replica_workspace(tmp_path / "ws", _url(server), vms=0)
    workspace.set_latency(0.02, 0.08)
    replicas = _started(replicas_of, workspace, 3)
    _, term = replicas.wait_leader()
    terms = [term]
    for round in range(20):
        before, _, _ = _newest_apply_progress(workspace)
        write_vms(workspace, 2 * (round + 1))  # something to apply in every term
        leader, term = replicas.wait_leader(above_term=terms[-1] - 1)
        # Stopped as soon as its apply has begun: mostly in the middle of it, sometimes just after.
        wait_for(lambda: _newest_apply_progress(workspace)[0] > before, timeout=120, what="the round's apply")  # noqa: B023
        leader.process.send_signal(signal.SIGKILL if round % 2 else signal.SIGTERM)
        leader.process.wait(timeout=60)
        replicas.start(1)
        _, term = replicas.wait_leader(above_term=term, timeout=60)
        terms.append(term)
    replicas.wait_converged()
    assert terms == sorted(set(terms))  # a new term at each election
    elected = [int(e.data["term"]) for e in replicas.elected()]
    assert elected == sorted(set(elected)) and len(elected) >= 21
    assert terms_overlap(workspace) == []
    assert audit(workspace) == []


def test_a_second_replica_on_sqlite_is_refused(tmp_path: Path, replicas_of: list[Replicas]) -> None:
    workspace = replica_workspace(tmp_path / "ws", f"sqlite:///{tmp_path / 'nebctl.db'}", vms=1, stack="lone")
    replicas = _started(replicas_of, workspace, 1)
    (first,) = replicas.started
    assert replicas.wait_leader()[0] is first
    listen = f"127.0.0.1:{free_port()}"
    second = workspace.run("serve", "-f", str(workspace.manifests), "--stack", "lone", "--listen", listen)
    assert second.returncode != 0
    assert "already served by" in second.stderr and "SQLite holds one replica" in second.stderr
    assert replicas.leaders() == [first]
    # Once the first is killed, a new one on the same file takes over at once (its process is gone).
    first.kill()
    (again,) = replicas.start(1)
    assert replicas.wait_leader(timeout=30)[0] is again
    with Store.open(workspace.db_url) as store:
        elected = sorted(
            (e for e in store.list_events(limit=1000) if e.type == "leader.elected"), key=lambda e: e.id or 0
        )
    assert [(e.data["term"], e.data["pid"]) for e in elected] == [(1, first.process.pid), (2, again.process.pid)]
