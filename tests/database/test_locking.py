"""The writers' lock: in one process with a fake clock, and across real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nebctl.database import LockLost, LockNotObtained, Store
from tests.conftest import REPO_ROOT
from tests.database.conftest import FakeClock

WORKER = Path(__file__).with_name("lock_worker.py")
DEAD_PID = 2**22 + 12345  # above Linux's default pid_max: no process has it


def worker(*arguments: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, str(WORKER), *arguments],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_held_lock_names_its_holder(store: Store) -> None:
    with store.acquire_lock(holder="nebctl apply (alice)", timeout=0, ttl=30) as lease:
        with pytest.raises(LockNotObtained) as caught:
            store.acquire_lock(holder="nebctl apply (bob)", timeout=0.2, ttl=30, pid=1)
        message = str(caught.value)
        assert "nebctl apply (alice)" in message
        assert f"pid {os.getpid()}" in message and socket.gethostname() in message and "since 2024-05-01" in message
        assert caught.value.holder == lease.record
        status = store.lock_status()
        assert status is not None and status.holder == "nebctl apply (alice)" and status.pid == os.getpid()
    assert store.lock_status() is None
    store.acquire_lock(holder="bob", timeout=0, ttl=30).release()


def test_other_host_is_taken_over_only_after_expiry(store: Store, clock: FakeClock) -> None:
    store.acquire_lock(holder="service on kvm9", timeout=0, ttl=60, host="kvm9.example", pid=DEAD_PID)
    with pytest.raises(LockNotObtained, match=r"kvm9\.example"):
        store.acquire_lock(holder="me", timeout=0, ttl=60)  # its pid means nothing here
    clock.advance(59)
    with pytest.raises(LockNotObtained):
        store.acquire_lock(holder="me", timeout=0, ttl=60)
    clock.advance(2)
    lease = store.acquire_lock(holder="me", timeout=0, ttl=60)
    status = store.lock_status()
    assert status is not None and status.holder == "me" and status.host == socket.gethostname()
    lease.release()


def test_dead_process_on_this_host_is_taken_over_before_expiry(store: Store) -> None:
    store.acquire_lock(holder="crashed apply", timeout=0, ttl=3600, pid=DEAD_PID)
    stale = store.lock_status()
    assert stale is not None and store.lock_is_stale(stale)
    with store.acquire_lock(holder="next apply", timeout=0, ttl=60):
        status = store.lock_status()
        assert status is not None and status.holder == "next apply" and status.token != stale.token


def test_renew_release_and_lost_lock(store: Store, clock: FakeClock) -> None:
    lease = store.acquire_lock(holder="a", timeout=0, ttl=10)
    clock.advance(8)
    lease.renew()
    clock.advance(8)  # 16 s after taking it, but renewed at 8: still valid
    with pytest.raises(LockNotObtained):
        store.acquire_lock(holder="b", timeout=0, ttl=10, host="elsewhere")
    assert store.force_unlock() is not None
    with pytest.raises(LockLost):
        lease.renew()
    assert lease.lost
    other = store.acquire_lock(holder="b", timeout=0, ttl=10)
    lease.release()  # must not delete b's lock
    status = store.lock_status()
    assert status is not None and status.holder == "b"
    other.release()
    other.release()
    assert store.force_unlock() is None


def test_background_renewal_keeps_the_lock(db_url: str) -> None:
    store = Store.open(db_url)  # real clock: the renewer runs in real time
    try:
        with store.acquire_lock(holder="long apply", timeout=0, ttl=0.6) as lease:
            lease.start_renewing(interval=0.1)
            time.sleep(1.2)  # twice the ttl
            with pytest.raises(LockNotObtained):
                store.acquire_lock(holder="other", timeout=0, ttl=1, host="elsewhere")
        assert store.lock_status() is None
    finally:
        store.close()


def check_exclusive(log: Path, expected_entries: int) -> None:
    """The log alternates enter/exit of the same process: nobody entered while another was inside."""
    lines = log.read_text().splitlines()
    assert len(lines) == 2 * expected_entries, lines
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        assert enter.startswith("enter ") and leave == "exit " + enter.removeprefix("enter "), lines


@pytest.mark.parametrize("processes", [2, 8])
def test_processes_hold_the_lock_one_at_a_time(db_url: str, tmp_path: Path, processes: int) -> None:
    Store.open(db_url).close()  # create the schema once, before the race
    log = tmp_path / "inside.log"
    rounds = 2
    workers = [worker("compete", db_url, str(log), str(rounds), "0.02") for _ in range(processes)]
    for process in workers:
        _, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
    check_exclusive(log, processes * rounds)


def test_waiter_times_out_naming_the_holder(db_url: str, tmp_path: Path) -> None:
    store = Store.open(db_url)
    try:
        with store.acquire_lock(holder="nebctl apply by carol", timeout=0, ttl=60):
            started = time.monotonic()
            waiter = worker("try", db_url, str(tmp_path / "unused"), "1.0")
            out, err = waiter.communicate(timeout=60)
            assert waiter.returncode == 3, err
            assert "nebctl apply by carol" in out and f"pid {os.getpid()}" in out
            assert time.monotonic() - started >= 1.0
    finally:
        store.close()


def test_sigkilled_holder_is_taken_over_by_exactly_one(db_url: str, tmp_path: Path) -> None:
    store = Store.open(db_url)
    try:
        holder = worker("hold", db_url, str(tmp_path / "unused"), "doomed holder", "3600")
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "acquired"
        held = store.lock_status()
        assert held is not None and held.holder == "doomed holder" and held.pid == holder.pid

        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)  # reaped: the pid is gone
        # The lock outlives its holder (ttl one hour), and four processes race to take it over.
        log = tmp_path / "inside.log"
        takers = [worker("compete", db_url, str(log), "1", "0.05") for _ in range(4)]
        for process in takers:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
        check_exclusive(log, 4)
        assert store.lock_status() is None
    finally:
        store.close()


def test_a_deadlock_victim_is_told_from_other_errors() -> None:
    """Inserts racing for a lock being released can deadlock on MariaDB: the victim looks again, as for a held
    lock (an 8-process race showed it); other errors still end the attempt."""
    import psycopg.errors
    import pymysql.err
    from sqlalchemy import exc

    from nebctl.database.locking import deadlocked

    def wrapped(original: Exception) -> exc.DBAPIError:
        return exc.OperationalError("INSERT INTO locks ...", {}, original)

    assert deadlocked(wrapped(pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")))
    assert deadlocked(wrapped(psycopg.errors.DeadlockDetected("deadlock detected")))
    assert not deadlocked(wrapped(pymysql.err.OperationalError(2003, "Can't connect to MySQL server")))
    assert not deadlocked(wrapped(psycopg.errors.QueryCanceled("canceling statement")))
