"""The sim fleet beyond the contract: faults, latency, hangs that honour cancellation, host down, drift,
usage that moves with the clock, many threads, and persistence across real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from nebctl.cli import main
from nebctl.drivers.context import CallContext, calling
from nebctl.drivers.errors import DriverTimeoutError, PermanentError, TemporaryError
from nebctl.drivers.sim import (
    Distribution,
    Fault,
    FaultKind,
    Latency,
    SimFleet,
    SimMonitoring,
    SimVirtualization,
)
from nebctl.drivers.sim.behaviour import suffer
from nebctl.drivers.sim.store import Store
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import HostRef, VMDefinition
from tests.support.sqlite_files import another_writer

HOST = HostRef("kvm1", "sim://kvm1?cpus=4&memory=8Gi&disk=100Gi")
REPO = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[SimFleet]:
    with SimFleet(tmp_path / "sim.db", clock=Clock(), seed=7) as opened:
        yield opened


def vm(name: str = "web") -> VMDefinition:
    return VMDefinition(name=name, uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), vcpu=2, memory=1024**3)


def test_host_capacity_comes_from_the_uri(fleet: SimFleet) -> None:
    probe = SimMonitoring(fleet).probe_host(HOST)
    assert (probe.cpus, probe.memory, probe.disk_total) == (4, 8 * 1024**3, 100 * 1024**3)
    assert probe.state is HostLiveState.ONLINE


def test_counted_temporary_fault_fails_that_many_calls(fleet: SimFleet) -> None:
    virt = SimVirtualization(fleet)
    fleet.set_fault(Fault("virtualization.deploy", FaultKind.TEMPORARY, count=2))
    for _ in range(2):
        with pytest.raises(TemporaryError):
            virt.deploy(HOST, vm())
    assert virt.deploy(HOST, vm()).state is VMLiveState.RUNNING


def test_the_rules_of_a_call_are_those_of_its_host_and_action_in_the_order_they_were_set(fleet: SimFleet) -> None:
    """A call reads its host's row and its matching rules in one statement: rules of another host or action are
    not its own, and its own apply in the order they were set, each while its count lasts."""
    virt = SimVirtualization(fleet)
    virt.deploy(HOST, vm("first"))  # the host exists: its row is read with the rules
    fleet.set_fault(Fault("virtualization.deploy", FaultKind.PERMANENT, host="kvm2", message="another host's"))
    fleet.set_fault(Fault("virtualization.shutdown", FaultKind.PERMANENT, message="another action's"))
    fleet.set_fault(Fault("virtualization.deploy", FaultKind.TEMPORARY, host="kvm1", count=1, message="set first"))
    fleet.set_fault(Fault("*", FaultKind.PERMANENT, count=1, message="set second"))
    with pytest.raises(TemporaryError, match="set first"):
        virt.deploy(HOST, vm())
    with pytest.raises(PermanentError, match="set second"):
        virt.deploy(HOST, vm())
    assert virt.deploy(HOST, vm()).state is VMLiveState.RUNNING


def test_family_wide_permanent_fault_and_clearing_it(fleet: SimFleet) -> None:
    virt = SimVirtualization(fleet)
    virt.deploy(HOST, vm())
    fleet.set_fault(Fault("virtualization.*", FaultKind.PERMANENT, message="disk controller gone"))
    with pytest.raises(PermanentError, match="disk controller gone"):
        virt.poll(HOST, vm().uuid)
    assert SimMonitoring(fleet).probe_vms(HOST)[0].uuid == vm().uuid  # other families unaffected
    assert fleet.clear_faults() == 1
    assert virt.poll(HOST, vm().uuid).state is VMLiveState.RUNNING


def test_probability_zero_never_fires_and_one_always_does(fleet: SimFleet) -> None:
    virt = SimVirtualization(fleet)
    fleet.set_fault(Fault("virtualization.deploy", FaultKind.TEMPORARY, probability=0.0))
    virt.deploy(HOST, vm())
    fleet.set_fault(Fault("virtualization.deploy", FaultKind.TEMPORARY, probability=1.0, host="kvm1"))
    with pytest.raises(TemporaryError):
        virt.deploy(HOST, vm())


def test_a_hang_ends_at_the_deadline_or_on_cancellation(fleet: SimFleet) -> None:
    virt = SimVirtualization(fleet)
    fleet.set_fault(Fault("virtualization.deploy", FaultKind.HANG))
    started = time.monotonic()
    with calling(CallContext(deadline=time.monotonic() + 0.3)), pytest.raises(DriverTimeoutError):
        virt.deploy(HOST, vm())
    assert 0.25 < time.monotonic() - started < 1.0
    context = CallContext()
    threading.Timer(0.2, context.cancelled.set).start()
    started = time.monotonic()
    with calling(context), pytest.raises(DriverTimeoutError, match="cancelled"):
        virt.deploy(HOST, vm())
    assert time.monotonic() - started < 1.0
    assert SimMonitoring(fleet).probe_vms(HOST) == []


def test_latency_delays_each_call(fleet: SimFleet) -> None:
    virt = SimVirtualization(fleet)
    fleet.set_latency(Latency("virtualization.deploy", Distribution.FIXED, 0.15))
    started = time.monotonic()
    virt.deploy(HOST, vm())
    assert time.monotonic() - started >= 0.15
    fleet.set_latency(Latency("virtualization.deploy", Distribution.UNIFORM, 0.0, 0.01))  # replaces the fixed one
    started = time.monotonic()
    virt.deploy(HOST, vm())
    assert time.monotonic() - started < 0.1


def test_a_latency_counts_from_when_the_call_reached_the_sim(fleet: SimFleet) -> None:
    # A backend's answer time includes its own work: a call that reached the sim 0.3 s ago (the sim was slow to
    # read its rules, say) answers 0.4 s after that, not 0.4 s after the rules were read.
    fleet.set_latency(Latency("virtualization.deploy", Distribution.FIXED, 0.4))
    connection = fleet.store.read()
    started = time.monotonic()
    suffer(connection, fleet.rng, action="virtualization.deploy", host="kvm1", since=started - 0.3)
    assert 0.05 < time.monotonic() - started < 0.3
    # A call that reached it long ago (past its latency) still answers, at once.
    started = time.monotonic()
    suffer(connection, fleet.rng, action="virtualization.deploy", host="kvm1", since=started - 5.0)
    assert time.monotonic() - started < 0.3
    # Without a start, the latency counts from now; and a hang that ended is not part of a latency after it.
    fleet.set_fault(Fault("virtualization.deploy", FaultKind.HANG, duration=0.2, count=1))
    started = time.monotonic()
    suffer(connection, fleet.rng, action="virtualization.deploy", host="kvm1")  # the latency, then the hang
    assert time.monotonic() - started >= 0.6
    fleet.clear_latency()
    fleet.set_fault(Fault("virtualization.deploy", FaultKind.HANG, duration=0.2, count=1))
    fleet.set_latency(Latency("virtualization.deploy", Distribution.FIXED, 0.3))  # set after: applies after
    started = time.monotonic()
    suffer(connection, fleet.rng, action="virtualization.deploy", host="kvm1", since=started)
    assert time.monotonic() - started >= 0.5


def test_a_down_host_probes_in_error_and_refuses_other_calls(fleet: SimFleet) -> None:
    virt, monitor = SimVirtualization(fleet), SimMonitoring(fleet)
    virt.deploy(HOST, vm())
    fleet.host_down("kvm1", reason="power cut")
    probe = monitor.probe_host(HOST)
    assert probe.state is HostLiveState.ERROR and "power cut" in (probe.error or "")
    with pytest.raises(TemporaryError):
        monitor.probe_vms(HOST)
    with pytest.raises(TemporaryError):
        virt.poll(HOST, vm().uuid)
    fleet.host_up("kvm1")
    assert monitor.probe_vms(HOST)[0].state is VMLiveState.RUNNING


def test_usage_moves_with_the_clock_and_is_deterministic(tmp_path: Path) -> None:
    clock = Clock()
    with (
        SimFleet(tmp_path / "a.db", clock=clock, seed=3) as first,
        SimFleet(tmp_path / "b.db", clock=clock, seed=3) as second,
    ):
        for fleet in (first, second):
            SimVirtualization(fleet).deploy(HOST, vm())
        clock.now += 120
        a, b = SimMonitoring(first).probe_vms(HOST)[0], SimMonitoring(second).probe_vms(HOST)[0]
        assert a == b
        clock.now += 150
        later = SimMonitoring(first).probe_vms(HOST)[0]
    assert later.cpu_usage != a.cpu_usage
    assert later.disk_read > a.disk_read > 0
    assert 0 < a.cpu_usage <= a.vcpu


def test_many_threads_deploy_concurrently(fleet: SimFleet) -> None:
    virt = SimVirtualization(fleet)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for index in range(40):
                virt.deploy(HOST, vm(f"w{worker}-{index}"))
        except BaseException as error:  # collected and re-raised by the test thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(SimMonitoring(fleet).probe_vms(HOST)) == 320


def test_writers_of_one_process_queue_in_the_process_not_in_sqlite(tmp_path: Path) -> None:
    """SQLite's busy handler waits by sleeping (1, 2, 5, 10 ms and longer): threads of one process, even through
    two ``Store``s of the same file, queue on an in-process lock instead, and reach SQLite one at a time."""
    first, second = Store(tmp_path / "sim.db"), Store(tmp_path / "sim.db")
    holding, release, done = threading.Event(), threading.Event(), threading.Event()
    statements: list[str] = []

    def hold() -> None:
        with first.write():
            holding.set()
            release.wait(10)

    def write() -> None:
        connection = second.connection()
        connection.set_trace_callback(statements.append)
        with second.write() as writing:
            writing.execute("INSERT OR REPLACE INTO meta VALUES ('probe', '1')")
        done.set()

    threads = [threading.Thread(target=hold), threading.Thread(target=write)]
    try:
        threads[0].start()
        assert holding.wait(10)
        threads[1].start()
        assert not done.wait(0.3)
        asked = list(statements)
        release.set()
        assert done.wait(10)
        assert asked == []  # it waited for the first writer without asking SQLite for the lock
        assert statements[0] == "BEGIN IMMEDIATE"
        assert dict(first.read().execute("SELECT key, value FROM meta"))["probe"] == "1"
    finally:
        release.set()
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(15)
        first.close()
        second.close()


def _run(code: str, state: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, str(state)], capture_output=True, text=True, cwd=REPO, timeout=60, check=True
    )
    return result.stdout


_DEPLOY = """
import sys
from pathlib import Path
from nebctl.drivers.sim import SimFleet, SimVirtualization
from nebctl.drivers.types import HostRef, VMDefinition
with SimFleet(Path(sys.argv[1]) / "sim.db") as fleet:
    SimVirtualization(fleet).deploy(HostRef("kvm1", "sim://kvm1"), VMDefinition("web-1", "u-1", 2, 2**30))
    SimVirtualization(fleet).deploy(HostRef("kvm1", "sim://kvm1"), VMDefinition("web-2", "u-2", 1, 2**30))
"""

_PROBE = """
import json, sys
from pathlib import Path
from nebctl.drivers.sim import SimFleet, SimMonitoring
from nebctl.drivers.types import HostRef
with SimFleet(Path(sys.argv[1]) / "sim.db") as fleet:
    probe = SimMonitoring(fleet).probe_vms(HostRef("kvm1", "sim://kvm1"))
    print(json.dumps({s.name: [s.state.value, s.memory] for s in probe}))
"""


def test_the_fleet_survives_a_restart_and_drift_from_the_command_shows_in_the_next_probe(tmp_path: Path) -> None:
    _run(_DEPLOY, tmp_path)
    assert json.loads(_run(_PROBE, tmp_path)) == {"web-1": ["running", 2**30], "web-2": ["running", 2**30]}

    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {tmp_path}\n")
    runner = CliRunner()
    for args in (["stop-vm", "web-1"], ["set-memory", "web-2", "2Gi"]):
        result = runner.invoke(main, ["--config", str(config), "sim", *args])
        assert result.exit_code == 0, result.output
    subprocess.run(
        [sys.executable, "-m", "nebctl", "--config", str(config), "sim", "delete-vm", "u-2"],
        cwd=REPO, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert json.loads(_run(_PROBE, tmp_path)) == {"web-1": ["stopped", 2**30]}


def test_sim_commands_set_faults_and_report_errors(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {tmp_path}\n")
    runner = CliRunner()
    result = runner.invoke(
        main, ["--config", str(config), "sim", "fault", "monitoring.probe_vms", "temporary", "--count", "1"]
    )
    assert result.exit_code == 0, result.output
    with SimFleet(tmp_path / "sim.db") as fleet:
        with pytest.raises(TemporaryError):
            SimMonitoring(fleet).probe_vms(HOST)
        assert SimMonitoring(fleet).probe_vms(HOST) == []
    missing = runner.invoke(main, ["--config", str(config), "sim", "host-down", "nowhere"])
    assert missing.exit_code == 1
    assert "no simulated host 'nowhere'" in missing.output
    shown = runner.invoke(main, ["--config", str(config), "sim", "show", "-o", "json"])
    assert json.loads(shown.output)["hosts"]["kvm1"]["cpus"] == 4


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    """A service observes through a new probe pool each time: the fleet file must not keep a connection for
    every thread that ever read it (that was a leak of about 1 MiB per resync)."""
    from nebctl.drivers.sim.store import Store

    store = Store(tmp_path / "sim.db")
    opened = []

    def read() -> None:
        connection = store.read()
        connection.execute("SELECT 1").fetchone()
        opened.append(connection)

    for _ in range(50):
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    read()
    # This thread's connection stays, and the last ended thread's until the next new connection; the others
    # are closed.
    assert len(store._connections) <= 2
    with pytest.raises(Exception, match="closed"):
        opened[0].execute("SELECT 1")
    assert opened[-1].execute("SELECT 1").fetchone() == (1,)
    store.close()


def test_a_new_fleet_file_another_process_is_writing_is_waited_for(tmp_path: Path) -> None:
    """Two processes opening a new fleet file at once both switch it to WAL, which needs the file's exclusive lock:
    SQLite answers the one that finds the other writing with "database is locked" at once, without its busy
    timeout. The store waits for the other (here a connection making a table, in rollback mode, for 0.3 s)."""
    path = tmp_path / "sim.db"
    with another_writer(path):
        store = Store(path)
    try:
        assert store.read().execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert store.read().execute("SELECT count(*) FROM first_writer").fetchone() == (0,)
    finally:
        store.close()
