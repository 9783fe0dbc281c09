"""Who a process is, from Linux's ``/proc``: its process group, its start time, the boot it belongs to.

A pid alone does not name a process for long (pids are reused), but a pid with its start time (in clock ticks
since boot) and the boot's id does. ``controller.reaping`` uses these to end, after a crash, the process groups
of programs that a dead nebctl started, and never anything else; ``exec.running`` records them when it starts one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    pgid: int
    started: int  # clock ticks after boot


def boot_id() -> str:
    """This boot's random id (a new one at every boot): start times compare only within one boot."""
    try:
        return (PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return "unknown"


def process_info(pid: int) -> ProcessInfo | None:
    """The process ``pid`` as it is now, or None when there is none (or it is a zombie that cannot run)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may hold anything: the fields start after the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None  # dead, only waiting to be reaped: nothing left to end
    return ProcessInfo(pid=pid, pgid=int(fields[2]), started=int(fields[19]))


def group_members(pgid: int) -> list[ProcessInfo]:
    """Every live process in process group ``pgid``."""
    members = []
    for entry in os.listdir(PROC):
        if entry.isdigit():
            info = process_info(int(entry))
            if info is not None and info.pgid == pgid:
                members.append(info)
    return members
