"""Several ``nebctl serve`` replicas of one stack on one database server, watched from outside: their roles (as
``/readyz`` says), the elections (``leader.*`` events), and the journal's terms.

Used by tests/integration/serving/test_replicas.py and bench/ha.py. A ``ServerWorkspace`` is a drill workspace
(its own sim fleet and configuration) whose database is on a PostgreSQL or MariaDB server instead of SQLite.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from nebctl.controller.serving.leading import lease_name
from nebctl.database.records import EventRecord
from tests.support.databases import OWNER_FILE, DatabaseServer, _postgres_bin, stop_pid
from tests.support.drills import Workspace
from tests.support.serving import FAST, Served, start_serve, vm_manifest, wait_for, write_manifests


@dataclass
class ServerWorkspace(Workspace):
    """A workspace whose database is ``url`` (a server's), not a SQLite file."""

    url: str = ""

    @property
    def db_url(self) -> str:
        return self.url


# Short lease timings, so that a takeover after SIGKILL takes seconds: a user would set them the same way.
FAST_LEASE = {"lease": "3s", "lease_renew": "1s", "lease_retry": "0.5s"}


def replica_workspace(root: Path, url: str, *, vms: int, stack: str = "ha", **serve: Any) -> ServerWorkspace:
    overrides = {**FAST, "serve": {**FAST["serve"], **FAST_LEASE, **serve}}
    workspace = ServerWorkspace(root, manifests=root / "manifests", stack=stack, settings_overrides=overrides, url=url)
    write_vms(workspace, vms)
    return workspace


def write_vms(workspace: Workspace, count: int, *, memory: str = "512Mi") -> None:
    write_manifests(workspace.manifests, [vm_manifest(f"vm-{index:03d}", memory=memory) for index in range(count)])


@dataclass
class Replicas:
    """The replicas of ``workspace`` started so far (killed ones stay listed)."""

    workspace: Workspace
    started: list[Served] = field(default_factory=list)

    def start(self, count: int = 1) -> list[Served]:
        new = [
            start_serve(
                self.workspace,
                "-f",
                str(self.workspace.manifests),
                "--stack",
                self.workspace.stack,
                name=f"replica{len(self.started) + index}",
            )
            for index in range(count)
        ]
        self.started += new
        return new

    def running(self) -> list[Served]:
        return [served for served in self.started if served.process.poll() is None]

    def role(self, served: Served) -> dict[str, Any] | None:
        """What ``/readyz`` says (role, term, leader...), or None when it does not answer."""
        try:
            _, body = served.get("/readyz")
        except OSError:
            return None
        document: dict[str, Any] = json.loads(body)
        return document

    def leaders(self, among: Sequence[Served] | None = None) -> list[Served]:
        found = []
        for served in among if among is not None else self.running():
            ready = self.role(served)
            if ready is not None and ready.get("role") == "leader":
                found.append(served)
        return found

    def wait_leader(self, *, above_term: int = 0, timeout: float = 60.0) -> tuple[Served, int]:
        """The one replica that leads in a term above ``above_term``, once there is one."""

        def one() -> tuple[Served, int] | None:
            for served in self.leaders():
                ready = self.role(served)
                if ready is not None and ready.get("role") == "leader" and int(ready["term"]) > above_term:
                    return served, int(ready["term"])
            return None

        return wait_for(one, timeout=timeout, what=f"a leader in a term above {above_term}")

    def stop_all(self) -> None:
        for served in self.started:
            if served.process.poll() is None:
                served.process.send_signal(signal.SIGCONT)  # a paused one could not take SIGTERM
                served.kill()

    # --- what the database says -----------------------------------------------------------------------------

    def events(self, type: str) -> list[EventRecord]:
        with self.workspace.store() as store:
            return [e for e in store.list_events(limit=100000) if e.type == type]

    def elected(self) -> list[EventRecord]:
        """The ``leader.elected`` events, oldest first."""
        return sorted(self.events("leader.elected"), key=lambda e: e.id or 0)

    def wait_elected(self, *, above_term: int, timeout: float = 60.0) -> EventRecord:
        def found() -> EventRecord | None:
            for event in self.elected():
                if int(event.data["term"]) > above_term:
                    return event
            return None

        return wait_for(found, timeout=timeout, what=f"an election of a term above {above_term}")

    def lease(self) -> tuple[int, str | None]:
        with self.workspace.store() as store:
            lease, now = store.lease_status(lease_name(self.workspace.stack))
        if lease is None:
            return 0, None
        return lease.term, lease.holder if lease.expires_at > now else None

    def wait_converged(self, timeout: float = 180.0) -> None:
        """Ask the leader to sync (``nebctl sync --wait``), then wait until the newest apply succeeded and
        nothing is left to do (the stack is synced)."""
        result = self.workspace.run("sync", self.workspace.stack, "--wait", f"{timeout:g}s", timeout=timeout + 30)
        assert result.returncode == 0, result.stderr

        def converged() -> bool:
            with self.workspace.store() as store:
                status = store.stack_status(self.workspace.stack)
                applies = store.list_applies(stack=self.workspace.stack, limit=1)
            return (
                status is not None
                and status.sync_status == "synced"
                and bool(applies)
                and applies[0].state == "succeeded"
            )

        wait_for(converged, timeout=timeout, what="the stack to converge")


def terms_overlap(workspace: Workspace) -> list[str]:
    """Where two terms acted at once: for each term, the span from the first start to the last end of the
    actions its leader journalled in its own applies; the spans, in term order, must not overlap. Also: every
    journal entry written by a replica carries a term, and applies' terms never decrease with their ids."""
    problems: list[str] = []
    spans: dict[int, tuple[datetime, datetime]] = {}
    with workspace.store() as store:
        applies = sorted(store.list_applies(stack=workspace.stack, limit=100000), key=lambda a: a.id)
        last_term = 0
        for apply in applies:
            if apply.term is None:
                problems.append(f"apply #{apply.id} carries no term")
                continue
            if apply.term < last_term:
                problems.append(f"apply #{apply.id} of term {apply.term} after one of term {last_term}")
            last_term = max(last_term, apply.term)
            for action in store.actions_of(apply.id):
                if action.term is None:
                    problems.append(f"apply #{apply.id}: {action.action_id} carries no term")
                    continue
                if action.term != apply.term or action.started_at is None:
                    continue  # closed by a later leader (cancelled), or never started
                end = action.finished_at or action.started_at
                first, last = spans.get(action.term, (action.started_at, end))
                spans[action.term] = (min(first, action.started_at), max(last, end))
    ordered = sorted(spans.items())
    for (term, (_, end)), (later, (start, _)) in itertools.pairwise(ordered):
        if start < end:
            problems.append(f"term {later} started acting at {start} before term {term} stopped at {end}")
    return problems


def restart_postgresql(server: DatabaseServer, *, down_for: float) -> None:
    """Stop the harness's PostgreSQL server (fast: its clients are cut off), keep it down ``down_for`` seconds,
    and start it again with the same options (those ``postmaster.opts`` recorded), on the same port."""
    data = server.directory / "data"
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    pg_ctl = str(_postgres_bin() / "pg_ctl")
    recorded = shlex.split((data / "postmaster.opts").read_text())
    options: list[str] = []
    arguments = iter(recorded[1:])
    for argument in arguments:
        if argument == "-D":
            next(arguments)
            continue
        options.append(argument)
    quiet = subprocess.DEVNULL  # the server must not hold our pipes: it outlives pg_ctl
    stop = [*run_as, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]
    subprocess.run(stop, stdout=quiet, stderr=quiet, check=True, timeout=120)
    time.sleep(down_for)
    log = str(server.directory / "log")
    start = [*run_as, pg_ctl, "-D", str(data), "-o", shlex.join(options), "-l", log, "-w", "start"]
    subprocess.run(start, stdout=quiet, stderr=quiet, check=True, timeout=120)
    server.pid = int((data / "postmaster.pid").read_text().split()[0])


def restart_mariadb(server: DatabaseServer, *, down_for: float) -> None:
    """Stop the harness's MariaDB server (SIGTERM: a clean shutdown that cuts its clients off), keep it down
    ``down_for`` seconds, and start it again with the same command line, on the same port."""
    command = [part.decode() for part in Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0") if part]
    stop_pid(server.pid, timeout=60)
    if server.process is not None:
        server.process.wait(timeout=10)
    time.sleep(down_for)
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server.pid, server.process = process.pid, process
    # The orphan sweep of a later session recognises the server by this pid.
    (server.directory / OWNER_FILE).write_text(f"{os.getpid()} {server.pid}")

    def answers() -> bool:
        import pymysql

        assert process.poll() is None, f"mariadbd exited with status {process.returncode} on restart"
        try:
            pymysql.connect(host="127.0.0.1", port=server.port, user="root", connect_timeout=2).close()
        except pymysql.err.OperationalError:
            return False
        return True

    wait_for(answers, timeout=120, what="MariaDB to answer again")


def restart_server(server: DatabaseServer, *, down_for: float) -> None:
    """Restart the harness's PostgreSQL or MariaDB server, down for ``down_for`` seconds."""
    if server.backend == "postgresql":
        restart_postgresql(server, down_for=down_for)
    else:
        restart_mariadb(server, down_for=down_for)
