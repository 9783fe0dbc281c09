"""Per-call settings for drivers that are not part of the domain: the deadline, a cancel flag, the log, and where
to report the progress of a long transfer.

The executor sets a ``CallContext`` around each driver call (in the worker thread that makes it); drivers
read it with ``current()``. Outside the executor (tests, the CLI's one-off calls) the default context has no
deadline and is never cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol


class ProgramWatch(Protocol):
    """Told of every external program a driver starts and of its end (the journal records them, so that the
    next nebctl can end the programs of one that died: ``controller.reaping``)."""

    def started(self, pid: int, label: str) -> object:
        """``pid`` leads its own process group; returns a token for ``ended``."""

    def ended(self, token: object) -> None: ...


@dataclass(frozen=True)
class CallContext:
    deadline: float | None = None  # time.monotonic() value after which the call should give up
    cancelled: threading.Event = field(default_factory=threading.Event)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("nebctl.drivers"))
    # Told how a transfer is going (bytes, total, rate, eta: ``downloads.progress``); the executor records it
    # in the running action's result. None: nobody is watching.
    progress: Callable[[Mapping[str, Any]], None] | None = None
    programs: ProgramWatch | None = None  # who records the programs started in this call

    def remaining(self, default: float) -> float:
        """Seconds left before the deadline (``default`` when there is none), never negative."""
        if self.deadline is None:
            return default
        return max(0.0, self.deadline - time.monotonic())


_CURRENT: ContextVar[CallContext | None] = ContextVar("nebctl_driver_call", default=None)


def current() -> CallContext:
    """The context of the driver call in progress, or a default one."""
    return _CURRENT.get() or CallContext()


@contextlib.contextmanager
def calling(context: CallContext) -> Iterator[CallContext]:
    """Make ``context`` current for the calls made inside the ``with`` block."""
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)
