"""External programs outliving nebctl: an exec driver's program (its own session, with a child) hangs, nebctl
is SIGKILLed, and the program lives on. The next command that takes the writers' lock must end that process
group, and record that it did (an event); and it must never end a process that only reuses a recorded pid.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nebctl.controller.reaping import end_orphaned_programs
from nebctl.database.locking import this_host
from nebctl.database.records import EventRecord, RunningProgramRecord
from nebctl.drivers.exec.processes import ProcessInfo, boot_id, group_members, process_info
from tests.support.drills import REPO_ROOT, Workspace

EXAMPLE_PROBE = REPO_ROOT / "examples" / "exec-drivers" / "monitoring" / "example" / "probe_host"

# The second call hangs, after starting a child in its group; the others are the example driver's probe.
HANGING_PROBE = """\
#!{python}
import os, subprocess, sys, time
state = os.environ["HANG_STATE"]
calls = os.path.join(state, "calls")
count = int(open(calls).read()) + 1 if os.path.exists(calls) else 1
open(calls, "w").write(str(count))
if count == 2:
    subprocess.Popen(["sleep", "600"])
    open(os.path.join(state, "hung.pid"), "w").write(str(os.getpid()))
    time.sleep(600)
os.execv({probe!r}, [{probe!r}])
"""


def running_rows(workspace: Workspace) -> int:
    try:
        with sqlite3.connect(f"file:{workspace.db_path}?mode=ro", uri=True, timeout=5) as connection:
            return int(connection.execute("SELECT count(*) FROM running_programs").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def wait_for(condition: object, what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {limit}s")


def test_a_hanging_exec_program_of_a_killed_nebctl_is_ended_by_the_next_writer(tmp_path: Path) -> None:
    drivers, state = tmp_path / "drivers", tmp_path / "hang-state"
    program = drivers / "monitoring" / "hang" / "probe_host"
    program.parent.mkdir(parents=True)
    state.mkdir()
    program.write_text(HANGING_PROBE.format(python=sys.executable, probe=str(EXAMPLE_PROBE)))
    program.chmod(0o755)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "host.yaml").write_text(
        "apiVersion: nebctl/v1\nkind: Host\nmetadata: {name: node1}\nspec: {uri: 'exec://hang'}\n"
    )
    env = {"NEBCTL_EXAMPLE_STATE": str(tmp_path / "example-state"), "HANG_STATE": str(state)}
    workspace = Workspace(
        tmp_path / "ws",
        manifests=manifests,
        stack="hang",
        settings_overrides={"driver_dir": str(drivers), "drivers": {"exec": {"env": env, "timeout": 900}}},
    )
    nebctl = workspace.start_apply()
    leader, members = _kill_while_the_probe_hangs(workspace, nebctl, state)

    # Any command that takes the writers' lock ends the group (here: the next apply, which converges).
    event = _next_apply_ends_the_group(workspace, leader)
    assert event.severity == "warning"
    assert sorted(event.data["pids"]) == sorted(m.pid for m in members)
    assert event.data["pgid"] == leader
    assert "ended 2 processes of" in event.message and "probe_host" in event.message


# A probe that hangs on its first call only (after starting a child in its group), then answers like the example.
HANGING_FIRST = """\
#!{python}
import os, subprocess, sys, time
state = {state!r}
calls = os.path.join(state, "calls")
count = int(open(calls).read()) + 1 if os.path.exists(calls) else 1
open(calls, "w").write(str(count))
if count == 1:
    subprocess.Popen(["sleep", "600"])
    open(os.path.join(state, "hung.pid"), "w").write(str(os.getpid()))
    time.sleep(600)
{answer}
"""


@pytest.mark.parametrize("command", ["apply", "diff"])
@pytest.mark.parametrize("program", ["exec monitoring driver", "custom probe"])
def test_a_program_hanging_in_an_observation_of_a_killed_nebctl_is_ended_by_the_next_writer(
    tmp_path: Path, program: str, command: str
) -> None:
    """The hosts are probed before anything is planned (by ``diff`` too, which is no writer): a program of that
    probe hanging when nebctl is SIGKILLed is recorded and ended like an action's."""
    state = tmp_path / "hang-state"
    state.mkdir()
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    overrides: dict[str, Any]
    if program == "exec monitoring driver":
        drivers = tmp_path / "drivers"
        script = drivers / "monitoring" / "hang" / "probe_host"
        script.parent.mkdir(parents=True)
        script.write_text(
            HANGING_FIRST.format(
                python=sys.executable,
                state=str(state),
                answer=f"os.execv({str(EXAMPLE_PROBE)!r}, [{str(EXAMPLE_PROBE)!r}])",
            )
        )
        uri = "exec://hang"
        env = {"NEBCTL_EXAMPLE_STATE": str(tmp_path / "example-state")}
        overrides = {"driver_dir": str(drivers), "drivers": {"exec": {"env": env, "timeout": 900}}}
    else:
        probes = tmp_path / "probes"
        probes.mkdir()
        script = probes / "rack"
        script.write_text(HANGING_FIRST.format(python=sys.executable, state=str(state), answer="print('rack=r1')"))
        uri = "sim://node1"
        overrides = {"probes_dir": str(probes), "serve": {"probe_timeout": 900}}
    script.chmod(0o755)
    (manifests / "host.yaml").write_text(
        f"apiVersion: nebctl/v1\nkind: Host\nmetadata: {{name: node1}}\nspec: {{uri: '{uri}'}}\n"
    )
    workspace = Workspace(tmp_path / "ws", manifests=manifests, stack="hang", settings_overrides=overrides)
    nebctl = workspace.start(
        workspace.apply_args() if command == "apply" else workspace.command("diff", "-f", str(manifests))
    )
    leader, members = _kill_while_the_probe_hangs(workspace, nebctl, state)

    event = _next_apply_ends_the_group(workspace, leader)
    assert sorted(event.data["pids"]) == sorted(m.pid for m in members)
    assert event.data["pgid"] == leader


def test_a_recorded_group_whose_pid_now_names_another_process_is_left_alone(tmp_path: Path) -> None:
    """A record of a dead nebctl whose leader's pid was reused (another start time) ends nothing."""
    workspace = Workspace(tmp_path / "ws")
    stranger = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        info = process_info(stranger.pid)
        assert info is not None and info.pgid == stranger.pid
        gone = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
        )
        dead_owner = int(gone.stdout)
        with workspace.store() as store:
            for leader_started in (info.started - 1, info.started):
                store.record_program(
                    RunningProgramRecord(
                        host=this_host(),
                        boot_id=boot_id(),
                        pgid=stranger.pid,
                        leader_started=leader_started,
                        owner_pid=dead_owner,
                        owner_started=0,
                        label="recorded " + json.dumps(leader_started),
                    )
                )
                if leader_started == info.started - 1:
                    assert end_orphaned_programs(store) == 0  # another start time: not ours, not touched
                    assert stranger.poll() is None
                else:
                    assert end_orphaned_programs(store) == 1  # the very process: ended
                    assert stranger.wait(timeout=10) == -signal.SIGKILL
            assert store.running_programs(this_host()) == []
    finally:
        if stranger.poll() is None:
            os.killpg(stranger.pid, signal.SIGKILL)
            stranger.wait()


def test_a_hanging_hook_of_a_killed_nebctl_is_ended_by_the_next_writer(tmp_path: Path) -> None:
    state = tmp_path / "hook-state"
    state.mkdir()
    script = tmp_path / "hook.py"
    script.write_text(
        "import os, subprocess, sys, time\n"
        "subprocess.Popen(['sleep', '600'])\n"
        f"open({str(state / 'hung.pid')!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "hook.yaml").write_text(
        "apiVersion: nebctl/v1\nkind: Hook\nmetadata: {name: slow}\n"
        f"spec: {{on: [apply.started], command: [{sys.executable}, {script}], timeout: 10m}}\n"
    )
    workspace = Workspace(tmp_path / "ws", manifests=manifests, stack="hooks")
    nebctl = workspace.start_apply()
    pid_file = state / "hung.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), "the hook to hang")
    leader = int(pid_file.read_text())
    wait_for(lambda: running_rows(workspace) == 1, "the journal to record the hook")
    wait_for(lambda: len(group_members(leader)) == 2, "the hook's child to start")
    nebctl.send_signal(signal.SIGKILL)
    nebctl.communicate()
    members = group_members(leader)
    assert len(members) == 2
    result = workspace.apply()
    assert result.returncode == 0, result.stderr
    assert group_members(leader) == []
    with workspace.store() as store:
        [event] = [e for e in store.list_events(limit=1000) if e.type == "program.ended"]
    assert sorted(event.data["pids"]) == sorted(m.pid for m in members)


def _kill_while_the_probe_hangs(
    workspace: Workspace, nebctl: subprocess.Popen[str], state: Path
) -> tuple[int, list[ProcessInfo]]:
    """SIGKILL ``nebctl`` once its hanging probe (and the probe's child) runs and is journalled; the probe's
    process group leader and its members, which outlive it."""
    pid_file = state / "hung.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), "the probe to hang")
    leader = int(pid_file.read_text())
    wait_for(lambda: running_rows(workspace) == 1, "the journal to record the program")
    wait_for(lambda: len(group_members(leader)) == 2, "the probe's child to start")
    nebctl.send_signal(signal.SIGKILL)
    nebctl.communicate()
    time.sleep(0.5)
    members = group_members(leader)
    assert len(members) == 2, "the program and its child outlive the killed nebctl (their own session)"
    return leader, members


def _next_apply_ends_the_group(workspace: Workspace, leader: int) -> EventRecord:
    """Run the next apply, check it converged and ended the group; the ``program.ended`` event it recorded."""
    result = workspace.apply()
    assert result.returncode == 0, result.stderr
    assert group_members(leader) == []
    assert running_rows(workspace) == 0
    with workspace.store() as store:
        [event] = [e for e in store.list_events(limit=1000) if e.type == "program.ended"]
    return event
