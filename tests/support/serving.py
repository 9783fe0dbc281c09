"""Running a real ``nebctl serve`` process against the simulated fleet, and watching it from outside: its HTTP
server, its events and records in the database, and the fleet.

Used by the service's integration tests (``tests/integration/serving``) and ``bench/serve.py``. Intervals are
made small through the configuration (``serve:`` section), as a user would, never through test-only paths.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nebctl.database.records import EventRecord
from tests.support.drills import Workspace, _env

T = TypeVar("T")

# Two sim hosts, one datastore, one image, one network: the fleet the VMs of ``vm_manifest`` run on.
FLEET = """\
apiVersion: nebctl/v1
kind: Host
metadata: {name: h1}
spec: {uri: 'sim://h1?cpus=32&memory=128Gi&disk=2Ti'}
---
apiVersion: nebctl/v1
kind: Host
metadata: {name: h2}
spec: {uri: 'sim://h2?cpus=32&memory=128Gi&disk=2Ti'}
---
apiVersion: nebctl/v1
kind: Datastore
metadata: {name: local}
spec: {type: dir, path: /var/lib/nebctl/datastores/local, hosts: [h1, h2]}
---
apiVersion: nebctl/v1
kind: Image
metadata: {name: base}
spec: {source: /var/lib/nebctl/images/base.qcow2, format: qcow2, datastore: local}
---
apiVersion: nebctl/v1
kind: Network
metadata: {name: lan}
spec: {mode: nat, cidr: 10.70.0.0/24}
"""

# Small intervals for tests: a VM probe twice a second, host probes every 2 s, errors after 2 misses.
FAST = {
    "serve": {
        "vm_interval": "0.5s",
        "host_interval": "2s",
        "host_error_after": 2,
        "debounce": "0.3s",
        "request_poll": "0.2s",
        "interval": "1h",
        "lock_wait": "60s",
    }
}


def vm_manifest(name: str, *, memory: str = "512Mi", host: str | None = None, extra: str = "") -> str:
    placement = f"  placement: {{host: {host}}}\n" if host else ""
    return (
        f"apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {{name: {name}}}\n"
        f"spec:\n  vcpu: 1\n  memory: {memory}\n  disks: [{{image: base, size: 4Gi}}]\n  nics: [{{network: lan}}]\n"
        f"{placement}{extra}"
    )


def write_manifests(directory: Path, vms: Sequence[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "00-fleet.yaml").write_text(FLEET, encoding="utf-8")
    (directory / "10-vms.yaml").write_text("---\n".join(vms), encoding="utf-8")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T | None], *, timeout: float = 30.0, what: str = "the condition") -> T:
    """Poll ``check`` until it returns something truthy; that value. Fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Served:
    """A running ``nebctl serve`` of ``workspace``."""

    workspace: Workspace
    process: subprocess.Popen[str]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=10) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()

    def events(self, type: str | None = None) -> list[EventRecord]:
        with self.workspace.store() as store:
            events = store.list_events(limit=100000)
        return [e for e in events if type is None or e.type == type]

    def wait_event(self, type: str, *, count: int = 1, timeout: float = 30.0) -> list[EventRecord]:
        def enough() -> list[EventRecord] | None:
            self.check_alive()
            found = self.events(type)
            return found if len(found) >= count else None

        return wait_for(enough, timeout=timeout, what=f"{count} {type} event(s)\n{self.output()}")

    def status(self) -> dict[str, Any]:
        """The stack's ``nebctl status -o json`` entry; empty before the service has recorded any."""
        result = self.workspace.run("status", self.workspace.stack, "-o", "json")
        if result.returncode == 1 and "no status of stack" in result.stderr:
            return {}
        assert result.returncode == 0, result.stderr
        document: list[dict[str, Any]] = json.loads(result.stdout)
        return document[0]

    def output(self) -> str:
        """The end of what the service printed (for failure messages)."""
        return self.output_all()[-6000:]

    def output_all(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"nebctl serve exited with {self.process.returncode}:\n{self.output()}")

    def terminate(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


def start_serve(workspace: Workspace, *args: str, port: int | None = None, name: str = "serve") -> Served:
    """Start ``nebctl serve`` (with ``args``, e.g. ``-f DIR``) and wait until its HTTP server answers."""
    port = port or free_port()
    log = workspace.root / f"{name}-{port}.log"
    handle = log.open("w", encoding="utf-8")
    process = subprocess.Popen(
        workspace.command("--log-format", "json", "serve", "--listen", f"127.0.0.1:{port}", *args),
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    handle.close()
    served = Served(workspace, process, port, log)

    def answering() -> bool:
        served.check_alive()
        try:
            return served.get("/healthz")[0] == 200
        except OSError:
            return False

    wait_for(answering, timeout=60, what="the HTTP server of nebctl serve")
    return served
