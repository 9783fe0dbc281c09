"""Runs the FastAPI application with uvicorn in a thread of the service's process, and stops it.

The service's main thread owns the signals (SIGTERM stops the reconciliation loop first), so uvicorn's own
signal handling is left out: it is started from another thread, where it installs none.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from fastapi import FastAPI

log = logging.getLogger(__name__)


class ListenError(ValueError):
    """``--listen`` is not HOST:PORT."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8470`` for IPv6) as a host and a port."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ListenError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8470)")
    return host.strip("[]"), int(port)


class HttpServer:
    def __init__(self, app: FastAPI, listen: str, *, tls_cert: Path | None = None, tls_key: Path | None = None) -> None:
        """``tls_cert``/``tls_key`` (PEM files) serve HTTPS instead of HTTP."""
        import uvicorn

        from nebctl.api.app import front

        host, port = parse_listen(listen)
        config = uvicorn.Config(
            front(app),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            timeout_graceful_shutdown=3,  # followers of the event stream are cut rather than waited for
        )
        self.scheme = "https" if tls_cert else "http"
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self.listen = listen

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; raises ``OSError`` when the address cannot be bound."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise OSError(f"cannot listen on {self.listen} (address in use, or not this machine's)")
            if time.monotonic() > deadline:
                raise OSError(f"the HTTP server did not start on {self.listen} within {timeout:g}s")
            time.sleep(0.02)
        log.info("listening on %s://%s", self.scheme, self.listen)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
