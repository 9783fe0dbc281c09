"""External programs that outlive nebctl: recorded while they run, ended by the next writer if nebctl died.

An exec driver's program, a hook or a custom probe runs in its own session (so that its whole process group can
be killed at its timeout). If nebctl is SIGKILLed meanwhile, nothing kills it any more: it and its children would
live on. ``ProgramRecorder`` records each program in the database as it starts (its process group, its leader's
start time, the boot, and the nebctl process that started it) and forgets it when it ends: the executor, the
hooks and every observation of hosts hand it to the drivers through the call context. ``end_orphaned_programs``,
run by every command that takes the writers' lock (and each sync of the service), ends the groups whose nebctl
is gone and records an event.

A recorded group is ended only if it is certainly the same: same boot, and either its leader has the recorded
start time, or the leader is gone and the members left started after it (a pid, hence a group id, is not given
to a new process while a process still has it as its group). Each process is signalled through a pidfd opened
and checked first, so a pid reused in between is never hit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

from nebctl.database.errors import DatabaseError
from nebctl.database.locking import this_host
from nebctl.database.records import RunningProgramRecord, Severity
from nebctl.database.store import Store
from nebctl.drivers.exec.processes import ProcessInfo, boot_id, group_members, process_info

log = logging.getLogger(__name__)


class ProgramRecorder:
    """``drivers.context.ProgramWatch`` in the database, for the programs of one nebctl process."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.host = this_host()
        self.boot = boot_id()
        me = process_info(os.getpid())
        self.own_start = me.started if me is not None else 0
        self._warned = threading.Event()

    def started(self, pid: int, label: str) -> object:
        leader = process_info(pid)
        if leader is None:
            return None  # already over
        record = RunningProgramRecord(
            host=self.host,
            boot_id=self.boot,
            pgid=leader.pgid,
            leader_started=leader.started,
            owner_pid=os.getpid(),
            owner_started=self.own_start,
            label=label,
        )
        try:
            return self.store.record_program(record)
        except DatabaseError as error:
            self._warn(error)
            return None

    def ended(self, token: object) -> None:
        if not isinstance(token, int):
            return
        try:
            self.store.forget_program(token)
        except DatabaseError as error:
            self._warn(error)

    def _warn(self, error: DatabaseError) -> None:
        # The program runs anyway; only its record is missing (once said is enough).
        if not self._warned.is_set():
            self._warned.set()
            log.warning("cannot record a running program: %s", error)


def _alive(pid: int, started: int) -> bool:
    info = process_info(pid)
    return info is not None and info.started == started


def _members(program: RunningProgramRecord) -> list[ProcessInfo]:
    """The processes still in the recorded group, if it is certainly that group."""
    leader = process_info(program.pgid)
    if leader is not None and (leader.pgid != program.pgid or leader.started != program.leader_started):
        return []  # the leader's pid now names another process: the group is gone
    return [m for m in group_members(program.pgid) if m.started >= program.leader_started]


def _end(member: ProcessInfo) -> bool:
    """SIGKILL ``member`` through a pidfd, after checking that the pidfd names that very process."""
    try:
        descriptor = os.pidfd_open(member.pid)
    except OSError:
        return False  # gone
    try:
        current = process_info(member.pid)
        if current is None or current.started != member.started:
            return False
        signal.pidfd_send_signal(descriptor, signal.SIGKILL)
        return True
    except OSError:
        return False
    finally:
        os.close(descriptor)


def end_orphaned_programs(store: Store) -> int:
    """End the recorded programs of dead nebctl processes on this host; returns how many processes were ended.

    Each group ended is an event (``program.ended``). Called with the writers' lock held.
    """
    host, boot = this_host(), boot_id()
    ended = 0
    for program in store.running_programs(host):
        assert program.id is not None
        if program.boot_id == boot and _alive(program.owner_pid, program.owner_started):
            continue  # its nebctl still runs (and ends it itself)
        members = _members(program) if program.boot_id == boot else []
        killed = [member.pid for member in members if _end(member)]
        if killed:
            ended += len(killed)
            message = (
                f"ended {len(killed)} process{'es' if len(killed) != 1 else ''} of {program.label} "
                f"(process group {program.pgid}), left running by nebctl process {program.owner_pid}, which is gone"
            )
            log.warning("%s", message)
            store.add_event(
                type="program.ended",
                severity=Severity.WARNING,
                message=message,
                data={"pgid": program.pgid, "pids": killed, "label": program.label, "owner_pid": program.owner_pid},
            )
        with contextlib.suppress(DatabaseError):
            store.forget_program(program.id)
    return ended
