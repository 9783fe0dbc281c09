"""Running the Hook resources of the manifests on events (docs/manifests.md, Hook).

The apply loop hands every event it has committed to ``HookDispatcher.dispatch``; each Hook whose ``on`` list
names the event type (or ``*``), in the event's namespace (events without one, such as ``apply.finished``,
reach every hook), runs through the hooks driver with the event as JSON on stdin, on a small pool of threads
so that a slow hook never slows the apply. Every run is recorded (exit status, output, duration). The payload
carries only what the event log carries, so no secret reaches a hook's stdin; hook environment values, which
may be secrets, are given to the program and never recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from nebctl.core.keys import ResourceKey
from nebctl.database.records import HookRunRecord
from nebctl.drivers.context import CallContext, ProgramWatch, calling
from nebctl.drivers.errors import DriverError
from nebctl.drivers.protocols import HookDriver
from nebctl.drivers.types import HookProgram
from nebctl.schemas.models import Hook

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 64 * 1024  # bytes of stdout/stderr kept per run


class HookRunStore(Protocol):
    def add_hook_run(self, run: HookRunRecord) -> int: ...


class HookDispatcher:
    def __init__(
        self,
        *,
        store: HookRunStore,
        driver: HookDriver,
        hooks: Mapping[ResourceKey, Hook],
        workers: int = 4,
        programs: ProgramWatch | None = None,
    ) -> None:
        self.store = store
        self.programs = programs  # told of each hook program while it runs
        self.driver = driver
        self.hooks = dict(hooks)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hook") if hooks else None
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()

    def matching(self, event: Mapping[str, Any]) -> list[tuple[ResourceKey, Hook]]:
        kind = str(event.get("type", ""))
        namespace = event.get("namespace")
        return [
            (key, hook)
            for key, hook in sorted(self.hooks.items())
            if (kind in hook.spec.on or "*" in hook.spec.on) and (namespace is None or namespace == key.namespace)
        ]

    def dispatch(self, events: Sequence[Mapping[str, Any]]) -> None:
        if self._pool is None:
            return
        for event in events:
            for key, hook in self.matching(event):
                future = self._pool.submit(self._run, key, hook, dict(event))
                with self._lock:
                    self._futures.append(future)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the hooks started so far (each is bounded by its own timeout)."""
        if self._pool is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            futures, self._futures = self._futures, []
        for future in futures:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            future.result(timeout=remaining)
        self._pool.shutdown(wait=True)
        self._pool = None

    def _run(self, key: ResourceKey, hook: Hook, event: dict[str, Any]) -> None:
        program = HookProgram(
            name=str(key),
            command=tuple(hook.spec.command),
            timeout=hook.spec.timeout,
            env={name: value.get_secret_value() for name, value in hook.spec.env.items()},
        )
        started = time.monotonic()
        try:
            with calling(CallContext(programs=self.programs)):
                result = self.driver.run(program, event)
            record = HookRunRecord(
                hook=key.name,
                namespace=key.namespace,
                event=str(event.get("type")),
                event_id=event.get("id"),
                exit_code=result.exit_code,
                duration=result.duration,
                stdout=result.stdout[:OUTPUT_LIMIT],
                stderr=result.stderr[:OUTPUT_LIMIT],
                timed_out=result.timed_out,
            )
        except DriverError as error:
            record = HookRunRecord(
                hook=key.name,
                namespace=key.namespace,
                event=str(event.get("type")),
                event_id=event.get("id"),
                exit_code=None,
                duration=time.monotonic() - started,
                stderr=str(error),
            )
        if record.exit_code != 0:
            log.warning("hook %s on %s: exit %s %s", key, record.event, record.exit_code, record.stderr[-200:])
        try:
            self.store.add_hook_run(record)
        except Exception as error:  # the record is best effort: a full disk must not break the apply that fired it
            log.warning("could not record the run of hook %s: %s", key, error)
