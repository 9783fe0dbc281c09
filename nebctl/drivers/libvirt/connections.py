"""One libvirt connection per host URI, shared by the four libvirt family drivers.

Opening a connection costs a round trip to libvirtd (or an ssh session), so the drivers never open one per
call: ``Connections.get`` returns the cached connection for the URI, reopening it when the daemon went away
(``isAlive`` false, the close callback fired, or a call failed with a connection-level error). libvirt's
connections are thread-safe, so the executor's worker threads share them; only the cache needs a lock.

The default event loop implementation runs in one daemon thread: libvirt needs it for keepalive messages on
remote connections and to deliver domain lifecycle events, which ``LibvirtMonitoring.watch`` uses to notice
drift without waiting for the next probe. It is started only for those: a connection opened while the loop
runs wakes the loop's thread on each call, which about doubles a local call's time (bench/libvirt_apply.py:
200 domains defined and started took 0.30-0.35 s through the loop with keepalive, 0.16 s without). A local
connection (a Unix socket, or a driver inside this process such as ``test:///``) fails its calls at once when
the daemon goes away, so it needs no keepalive; one across a network gets it, since a peer there can vanish
without closing the socket.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import libvirt

from nebctl.drivers.libvirt.failures import CONNECTION_LOST, converting, error_code

log = logging.getLogger("nebctl.drivers.libvirt")

LifecycleCallback = Callable[[str, int, int], None]
"""Called with (domain uuid, libvirt event type, detail) from the event loop thread."""


def crosses_network(uri: str) -> bool:
    """Whether ``uri`` reaches its daemon across a network (ssh, TLS, TCP, an external command): everything but a
    Unix socket or a driver inside this process, which are the URIs without a transport or host."""
    parts = urlsplit(uri)
    transport = parts.scheme.partition("+")[2]
    return transport not in ("", "unix") or bool(parts.netloc)


def _ignore_libvirt_error(_context: Any, _error: Any) -> None:
    """libvirt prints every error on stderr by default; ours are raised as exceptions and logged there."""


libvirt.registerErrorHandler(_ignore_libvirt_error, None)


class _EventLoop:
    """libvirt's default event loop, registered once per process and run in a daemon thread."""

    _lock = threading.Lock()
    _started = False

    @classmethod
    def running(cls) -> bool:
        with cls._lock:
            return cls._started

    @classmethod
    def ensure(cls) -> bool:
        with cls._lock:
            if cls._started:
                return True
            try:
                libvirt.virEventRegisterDefaultImpl()
            except libvirt.libvirtError:
                log.warning("libvirt event loop unavailable: no keepalive or lifecycle events", exc_info=True)
                return False
            thread = threading.Thread(target=cls._run, name="libvirt-events", daemon=True)
            thread.start()
            cls._started = True
            return True

    @staticmethod
    def _run() -> None:
        while True:
            try:
                libvirt.virEventRunDefaultImpl()
            except libvirt.libvirtError:  # pragma: no cover - the loop itself failing is not recoverable here
                log.exception("libvirt event loop iteration failed")


class Connections:
    """The cache of open connections, keyed by URI. Pass one instance to every libvirt driver of a process."""

    def __init__(self, *, keepalive_interval: int = 5, keepalive_count: int = 3, events: bool = True) -> None:
        self._keepalive = (keepalive_interval, keepalive_count)
        self._events = events
        self._lock = threading.Lock()
        self._open_locks: dict[str, threading.Lock] = {}
        self._connections: dict[str, libvirt.virConnect] = {}
        self._subscribers: dict[str, list[LifecycleCallback]] = {}
        self._callback_ids: dict[str, int] = {}
        self._evented: set[str] = set()  # URIs whose connection was opened while the event loop ran
        self._retired: list[libvirt.virConnect] = []  # replaced to get events; closed by ``close``

    def get(self, uri: str, *, events: bool = False) -> libvirt.virConnect:
        """The open connection for ``uri``, opened (or reopened) when needed. Raises ``TemporaryError``.

        With ``events``, one that delivers lifecycle events: libvirt hooks a connection to the event loop when
        it opens, so one opened before the loop ran is replaced (and kept open until ``close``: other threads
        may be in calls on it)."""
        with self._lock:
            open_lock = self._open_locks.setdefault(uri, threading.Lock())
        with open_lock:
            connection = self._connections.get(uri)
            if connection is not None and self._alive(connection):
                if not events or uri in self._evented:
                    return connection
                with self._lock:
                    self._retired.append(self._connections.pop(uri))
            elif connection is not None:
                self.drop(uri)
            with converting(f"connect to {uri}"):
                connection = self._open(uri, events=events)
            with self._lock:
                self._connections[uri] = connection
            return connection

    def _open(self, uri: str, *, events: bool) -> libvirt.virConnect:
        wanted = events or crosses_network(uri) or bool(self._subscribers.get(uri))
        events = self._events and wanted and _EventLoop.ensure()
        connection = libvirt.open(uri)
        if _EventLoop.running():  # started for this connection or an earlier one: this one is hooked to it
            with self._lock:
                self._evented.add(uri)
        if events:
            # Local drivers (test:///, qemu:/// in-process) have no keepalive or close callback: not an error.
            with contextlib.suppress(libvirt.libvirtError):
                connection.setKeepAlive(*self._keepalive)
            with contextlib.suppress(libvirt.libvirtError):
                connection.registerCloseCallback(self._closed, uri)
            if self._subscribers.get(uri):
                self._register_lifecycle(uri, connection)
        return connection

    @staticmethod
    def _alive(connection: libvirt.virConnect) -> bool:
        try:
            return bool(connection.isAlive())
        except libvirt.libvirtError:
            return False

    def _closed(self, _connection: libvirt.virConnect, reason: int, uri: str) -> None:
        log.warning("libvirt connection to %s closed (reason %s); it will be reopened", uri, reason)
        with self._lock:
            self._connections.pop(uri, None)
            self._callback_ids.pop(uri, None)
            self._evented.discard(uri)

    def drop(self, uri: str) -> None:
        """Forget the connection of ``uri`` (after it was lost); the next ``get`` opens a new one."""
        with self._lock:
            connection = self._connections.pop(uri, None)
            callback_id = self._callback_ids.pop(uri, None)
            self._evented.discard(uri)
        if connection is not None:
            with contextlib.suppress(libvirt.libvirtError):
                if callback_id is not None:
                    connection.domainEventDeregisterAny(callback_id)
                connection.close()

    def close(self) -> None:
        """Close every connection (``Registry.close`` calls this on shared objects)."""
        for uri in list(self._connections):
            self.drop(uri)
        with self._lock:
            retired, self._retired = self._retired, []
        for connection in retired:
            with contextlib.suppress(libvirt.libvirtError):
                connection.close()

    @contextlib.contextmanager
    def use(self, uri: str, action: str) -> Iterator[libvirt.virConnect]:
        """The connection of ``uri`` for a block whose backend errors are converted; a lost connection is
        dropped so that the retry the executor makes reconnects."""
        connection = self.get(uri)
        with converting(action, on_lost=lambda: self.drop(uri)):
            yield connection

    def is_lost(self, error: libvirt.libvirtError) -> bool:
        return error_code(error) in CONNECTION_LOST

    # --- lifecycle events -----------------------------------------------------------------------------------

    def subscribe(self, uri: str, callback: LifecycleCallback) -> bool:
        """Deliver domain lifecycle events of ``uri`` to ``callback``; false when the connection offers none."""
        if not self._events or not _EventLoop.ensure():
            return False
        with self._lock:
            self._subscribers.setdefault(uri, []).append(callback)
        connection = self.get(uri, events=True)
        if uri in self._callback_ids:
            return True
        return self._register_lifecycle(uri, connection)

    def unsubscribe(self, uri: str, callback: LifecycleCallback) -> None:
        with self._lock:
            callbacks = self._subscribers.get(uri, [])
            if callback in callbacks:
                callbacks.remove(callback)
            callback_id = self._callback_ids.pop(uri, None) if not callbacks else None
            connection = self._connections.get(uri)
        if callback_id is not None and connection is not None:
            with contextlib.suppress(libvirt.libvirtError):
                connection.domainEventDeregisterAny(callback_id)

    def _register_lifecycle(self, uri: str, connection: libvirt.virConnect) -> bool:
        try:
            callback_id = connection.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, uri
            )
        except libvirt.libvirtError:
            return False
        with self._lock:
            self._callback_ids[uri] = int(callback_id)
        return True

    def _lifecycle(
        self, _connection: libvirt.virConnect, domain: libvirt.virDomain, event: int, detail: int, uri: str
    ) -> None:
        uuid = domain.UUIDString()
        for callback in list(self._subscribers.get(uri, ())):
            try:
                callback(uuid, event, detail)
            except Exception:  # a subscriber's bug must not stop the event loop
                log.exception("lifecycle subscriber failed for %s", uri)


_default: Connections | None = None
_default_lock = threading.Lock()


def default_connections() -> Connections:
    """The process-wide cache, used by drivers constructed without one (the registry's plain ``cls()``)."""
    global _default  # noqa: PLW0603 - one cache per process is the point
    with _default_lock:
        if _default is None:
            _default = Connections()
        return _default
