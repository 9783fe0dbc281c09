"""The project's own live states, one enum per object type; each driver maps its backend's states here.

Keeping one vocabulary lets the diff compare a desired ``running`` with what any backend reports. ``UNKNOWN``
is distinct from ``STOPPED`` on purpose: a host that stops answering makes its VMs unknown, never stopped, so
the controller does not "heal" a VM it merely cannot see.
"""

from __future__ import annotations

from enum import StrEnum


class VMLiveState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"  # defined but not running (libvirt: shutoff)
    SUSPENDED = "suspended"  # paused in memory
    TRANSITIONING = "transitioning"  # booting, shutting down, migrating
    CRASHED = "crashed"
    UNKNOWN = "unknown"  # the host did not answer, or the backend reported no usable state


class HostLiveState(StrEnum):
    ONLINE = "online"
    ERROR = "error"  # the host did not answer its probe
    DISABLED = "disabled"  # taken down on purpose (drain, or the simulated fleet's "down")
