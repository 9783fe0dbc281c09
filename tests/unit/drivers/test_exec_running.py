"""The exec driver's process handling: timeouts kill the whole group, exit codes map to error types, stderr
lines reach the log with their level, bad programs give clear permanent errors, the environment is clean."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from nebctl.drivers.context import CallContext, calling
from nebctl.drivers.errors import (
    CapabilityError,
    ConflictError,
    DriverTimeoutError,
    NotFoundError,
    PermanentError,
    TemporaryError,
)
from nebctl.drivers.exec import ExecAuthorization, ExecHooks, ExecMonitoring, ExecVirtualization
from nebctl.drivers.types import AuthorizationRequest, HookProgram, HostRef, Identity

HOST = HostRef("node1", "exec://fake")


def program(driver_dir: Path, family: str, action: str, body: str, *, mode: int = 0o755) -> Path:
    path = driver_dir / family / "fake" / action
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(mode)
    return path


def monitoring(driver_dir: Path, **kwargs: object) -> ExecMonitoring:
    return ExecMonitoring(driver_dir=driver_dir, program_set="fake", **kwargs)  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    status = subprocess.run(
        ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False
    ).stdout.strip()
    return bool(status) and not status.startswith("Z")


def group_members(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,pgid=,stat="], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.split()[1] == str(pgid) and not line.split()[2].startswith("Z")]


def test_a_hanging_program_and_its_children_are_killed_within_the_timeout(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    program(
        tmp_path,
        "monitoring",
        "probe_vms",
        f"#!/bin/sh\nsleep 300 &\necho $$ $! > {pids}\nsleep 300\n",
    )
    driver = monitoring(tmp_path, default_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(DriverTimeoutError) as raised:
        driver.probe_vms(HOST)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 1.0
    assert "probe_vms" in str(raised.value) and "process group was killed" in str(raised.value)
    leader, child = (int(pid) for pid in pids.read_text().split())
    assert not alive(leader)
    assert not alive(child)
    assert group_members(leader) == []


def test_the_call_deadline_bounds_the_program_and_cancellation_stops_it(tmp_path: Path) -> None:
    program(tmp_path, "monitoring", "probe_vms", "#!/bin/sh\nexec sleep 300\n")
    driver = monitoring(tmp_path, default_timeout=300.0)
    with calling(CallContext(deadline=time.monotonic() + 0.5)):
        started = time.monotonic()
        with pytest.raises(DriverTimeoutError):
            driver.probe_vms(HOST)
        assert time.monotonic() - started < 1.5
    context = CallContext()
    threading.Timer(0.3, context.cancelled.set).start()
    with calling(context):
        started = time.monotonic()
        with pytest.raises(DriverTimeoutError, match="cancelled"):
            driver.probe_vms(HOST)
        assert time.monotonic() - started < 1.3


@pytest.mark.parametrize(
    ("exit_code", "stdout", "error_type"),
    [
        (75, "", TemporaryError),
        (1, "", PermanentError),
        (2, '{"error": {"kind": "not_found", "message": "no VM 42"}}', NotFoundError),
        (1, '{"error": {"kind": "conflict", "message": "busy"}}', ConflictError),
        (3, "not json at all", PermanentError),
    ],
)
def test_exit_status_gives_the_error_type(
    tmp_path: Path, exit_code: int, stdout: str, error_type: type[Exception]
) -> None:
    program(
        tmp_path,
        "monitoring",
        "probe_host",
        f"#!/bin/sh\necho '{stdout}'\necho 'ERROR: it broke' >&2\nexit {exit_code}\n",
    )
    with pytest.raises(error_type) as raised:
        monitoring(tmp_path).probe_host(HOST)
    assert type(raised.value) is error_type
    assert f"status {exit_code}" in str(raised.value)
    assert "probe_host" in str(raised.value)


def test_temporary_errors_carry_the_suggested_delay(tmp_path: Path) -> None:
    program(
        tmp_path,
        "monitoring",
        "probe_host",
        """#!/bin/sh\necho '{"error": {"message": "later", "delay": 7}}'\nexit 75\n""",
    )
    with pytest.raises(TemporaryError) as raised:
        monitoring(tmp_path).probe_host(HOST)
    assert raised.value.delay == 7.0
    assert "later" in str(raised.value)


def test_stderr_lines_reach_the_log_at_their_level(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    program(
        tmp_path,
        "monitoring",
        "probe_vms",
        "#!/bin/sh\ncat > /dev/null\n"
        "echo 'ERROR: disk on fire' >&2\necho 'WARN: disk warm' >&2\necho 'INFO: probing' >&2\n"
        "echo 'DEBUG: details' >&2\necho '[]'\n",
    )
    log = logging.getLogger("tests.exec.forwarding")
    with caplog.at_level(logging.DEBUG, logger=log.name), calling(CallContext(log=log)):
        assert list(monitoring(tmp_path).probe_vms(HOST)) == []
    seen = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == log.name]
    assert seen == [
        (logging.ERROR, "exec driver monitoring/fake/probe_vms: disk on fire"),
        (logging.WARNING, "exec driver monitoring/fake/probe_vms: disk warm"),
        (logging.INFO, "exec driver monitoring/fake/probe_vms: probing"),
        (logging.DEBUG, "exec driver monitoring/fake/probe_vms: details"),
    ]


def test_missing_and_non_executable_programs_are_permanent_errors_naming_them(tmp_path: Path) -> None:
    with pytest.raises(CapabilityError, match=r"monitoring/fake/probe_vms does not exist"):
        monitoring(tmp_path).probe_vms(HOST)
    path = program(tmp_path, "monitoring", "probe_vms", "#!/bin/sh\necho []\n", mode=stat.S_IRUSR | stat.S_IWUSR)
    with pytest.raises(PermanentError, match="not an executable") as raised:
        monitoring(tmp_path).probe_vms(HOST)
    assert str(path) in str(raised.value)


def test_stdout_that_is_not_json_or_not_the_right_shape_is_permanent(tmp_path: Path) -> None:
    program(tmp_path, "monitoring", "probe_vms", "#!/bin/sh\necho 'hello there'\n")
    with pytest.raises(PermanentError, match="not JSON"):
        monitoring(tmp_path).probe_vms(HOST)
    program(tmp_path, "monitoring", "probe_host", """#!/bin/sh\necho '{"name": "x", "state": "melting"}'\n""")
    with pytest.raises(PermanentError, match="melting"):
        monitoring(tmp_path).probe_host(HOST)


def test_huge_output_is_capped_and_the_program_killed(tmp_path: Path) -> None:
    program(tmp_path, "monitoring", "probe_vms", "#!/bin/sh\nexec yes '[]'\n")
    started = time.monotonic()
    with pytest.raises(PermanentError, match="more than 65536 bytes"):
        monitoring(tmp_path, max_output=65536, default_timeout=30.0).probe_vms(HOST)
    assert time.monotonic() - started < 5


def test_programs_get_a_clean_environment_and_the_payload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEBCTL_DB", "postgresql://secret@db/nebctl")
    seen = tmp_path / "seen.json"
    program(
        tmp_path,
        "virtualization",
        "poll",
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        "seen = {'env': dict(os.environ), 'payload': json.load(sys.stdin), 'argv': sys.argv}\n"
        f"json.dump(seen, open({str(seen)!r}, 'w'))\n"
        "print(json.dumps({'uuid': 'u1', 'name': 'vm', 'state': 'running'}))\n",
    )
    driver = ExecVirtualization(driver_dir=tmp_path, program_set="fake", env={"EXTRA": "1"})
    status = driver.poll(HOST, "u1")
    assert status.uuid == "u1"
    recorded = json.loads(seen.read_text())
    assert "NEBCTL_DB" not in recorded["env"]
    assert set(recorded["env"]) - {"PWD", "SHLVL", "_"} == {
        "PATH", "LANG", "LC_ALL", "EXTRA", "NEBCTL_DRIVER_DIR", "NEBCTL_FAMILY", "NEBCTL_DRIVER", "NEBCTL_ACTION",
        "NEBCTL_HOST",
    }  # fmt: skip
    assert recorded["payload"] == {
        "action": "poll",
        "family": "virtualization",
        "driver": "fake",
        "host": {"name": "node1", "uri": "exec://fake", "domain_type": "auto"},
        "resource": {"uuid": "u1"},
        "arguments": {},
    }
    assert len(recorded["argv"]) == 1


def test_hook_runner_passes_the_payload_records_output_and_kills_on_timeout(tmp_path: Path) -> None:
    hooks = ExecHooks()
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\necho \"got $(cat) for $NEBCTL_HOOK with $GREETING\"\necho 'INFO: done' >&2\nexit 3\n")
    script.chmod(0o755)
    result = hooks.run(HookProgram("notify", (str(script),), env={"GREETING": "hi"}), {"event": "vm.running"})
    assert result.exit_code == 3
    assert result.stdout.strip() == 'got {"event": "vm.running"} for notify with hi'
    assert "INFO: done" in result.stderr
    assert not result.timed_out

    started = time.monotonic()
    slow = hooks.run(HookProgram("slow", ("/bin/sleep", "300"), timeout=0.5), {})
    assert slow.timed_out and slow.exit_code is None
    assert time.monotonic() - started < 1.5


def test_authorization_program_gives_identity_and_decision(tmp_path: Path) -> None:
    program(
        tmp_path,
        "authorization",
        "authenticate",
        "#!/usr/bin/env python3\nimport json, sys\nrequest = json.load(sys.stdin)['resource']\n"
        "if request['secret'] != 'open sesame':\n    print('ERROR: bad secret', file=sys.stderr); sys.exit(1)\n"
        "print(json.dumps({'user': request['user'], 'groups': ['ops']}))\n",
    )
    program(
        tmp_path,
        "authorization",
        "authorize",
        "#!/usr/bin/env python3\nimport json, sys\nrequest = json.load(sys.stdin)['resource']\n"
        "print(json.dumps({'allow': request['action'] != 'delete'}))\n",
    )
    driver = ExecAuthorization(driver_dir=tmp_path, program_set="fake")
    identity = driver.authenticate("alice", "open sesame")
    assert identity == Identity("alice", ("ops",))
    with pytest.raises(PermanentError, match="bad secret"):
        driver.authenticate("alice", "wrong")
    assert driver.authorize(AuthorizationRequest(identity, "get", "VirtualMachine", "default"))
    assert not driver.authorize(AuthorizationRequest(identity, "delete", "VirtualMachine", "default"))
