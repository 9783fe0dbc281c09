"""A TCP proxy in front of a database server that can be made to stall: it keeps every connection open and
stops passing bytes, as a server behind a dead link or a hung server would (the kernel still accepts and
acknowledges, so only the client's own timeouts can notice).

Used by the database fault tests (``tests/integration/applying/test_database_faults.py``). ``StallingProxy``
without an upstream never answers at all: it accepts connections and holds them.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class StallingProxy:
    """Listens on a free loopback port; forwards to ``upstream`` (host, port) until ``stall()``."""

    def __init__(self, upstream: tuple[str, int] | None = None) -> None:
        self.upstream = upstream
        self.stalled = threading.Event()
        if upstream is None:
            self.stalled.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def stall(self) -> None:
        """From now on, nothing passes in either direction, and new connections are held unanswered."""
        self.stalled.set()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._keep(client)
            if self.stalled.is_set() or self.upstream is None:
                continue  # held open, never answered
            server = socket.create_connection(self.upstream)
            self._keep(server)
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), name="proxy-pump", daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            # Once stalled, what was read is dropped and nothing more is passed on.
            if self.stalled.is_set():
                self._closed.wait()
                return
            try:
                target.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                # shutdown, not only close: a pump thread blocked in recv keeps a closed socket's connection up.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def __enter__(self) -> StallingProxy:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()
