"""Real guests for the end-to-end tests: the Debian test image, whether KVM can boot it here, and the listener
the guests phone home to.

- ``guest_image()`` runs scripts/build-test-image.sh, which builds the image once per machine (cached under
  /var/lib/nebctl/images, keyed by a digest of the script) and prints its directory.
- ``kvm_boots_a_kernel(image)`` starts the image's kernel under KVM with QEMU directly (no libvirt) and says
  whether it reaches userspace: under some nested setups KVM runs firmware but a Linux kernel hangs right
  after "Probing EDD", and the guests must then run under TCG (the Host's ``virtualization.domainType: qemu``).
- ``PhoneHome`` is an HTTP server on the guests' network gateway that records each JSON report with the
  address it came from.

Used by tests/libvirt/test_guests.py.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-test-image.sh"
BUILD_TIMEOUT = 1800.0  # a first build debootstraps (about 2-3 min unloaded); later calls find the cache
# KVM, when it works, boots the kernel to userspace in a second or two (TCG, on a loaded machine, in ~10 s).
KVM_PROBE_TIMEOUT = 30.0
USERSPACE_MARK = "Run /bin/false as init process"  # printed by the kernel when it starts rdinit=/bin/false
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


@dataclass(frozen=True)
class GuestImage:
    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "disk.qcow2"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"


def guest_image() -> GuestImage:
    """Build (or find) the test image; raises with the script's output when it cannot."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT.name} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    directory = Path(result.stdout.strip().splitlines()[-1])
    image = GuestImage(directory)
    for path in (image.disk, image.kernel, image.initrd):
        if not path.is_file():
            raise RuntimeError(f"{BUILD_SCRIPT.name} printed {directory}, which lacks {path.name}")
    return image


@dataclass(frozen=True)
class KvmProbe:
    boots: bool
    detail: str


def kvm_boots_a_kernel(image: GuestImage) -> KvmProbe:
    """Boot the image's kernel and initrd under KVM to its first userspace program (``rdinit=/bin/false``,
    which makes it panic and QEMU exit at once) and say whether it got there."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return KvmProbe(False, "/dev/kvm is not usable")
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return KvmProbe(False, "qemu-system-x86_64 is not installed")
    with tempfile.NamedTemporaryFile(prefix="nebctl-kvm-probe-", suffix=".log") as log:
        command = [
            qemu, "-accel", "kvm", "-m", "256", "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", f"file:{log.name}", "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            "-append", "console=ttyS0 panic=-1 rdinit=/bin/false",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + KVM_PROBE_TIMEOUT
            while time.monotonic() < deadline and process.poll() is None:
                if USERSPACE_MARK in Path(log.name).read_text(errors="replace"):
                    break
                time.sleep(0.5)
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)
        console = Path(log.name).read_text(errors="replace")
    if USERSPACE_MARK in console:
        return KvmProbe(True, "a Linux kernel boots to userspace under KVM")
    last = [line.strip() for line in console.splitlines() if line.strip()][-1:]
    said = f"its last console line: {last[0]!r}" if last else "no console output"
    return KvmProbe(
        False, f"under KVM a Linux kernel does not reach userspace within {KVM_PROBE_TIMEOUT:.0f} s ({said})"
    )


@dataclass(frozen=True)
class Report:
    source: str  # the address the request came from
    body: dict[str, Any]
    received: float  # time.monotonic()


class PhoneHome:
    """An HTTP server on ``address:port`` (bound before the address exists: IP_FREEBIND, as the network's
    bridge appears only once nebctl creates it) that keeps every JSON report it is POSTed."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self.reports: list[Report] = []
        self._changed = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError:
                    body = {"unreadable": True}
                self.send_response(204)
                self.end_headers()
                with outer._changed:
                    outer.reports.append(Report(self.client_address[0], body, time.monotonic()))
                    outer._changed.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def server_bind(self) -> None:
                self.socket.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
                super().server_bind()

        self._server = Server((address, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="phone-home", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/"

    @contextlib.contextmanager
    def running(self) -> Iterator[PhoneHome]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()

    def wait_for(self, description: str, match: Callable[[Report], bool], timeout: float) -> Report:
        """The first report ``match`` accepts, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for report in self.reports:
                    if match(report):
                        return report
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(r.source, r.body.get("event"), r.body.get("hostname")) for r in self.reports]
                    raise AssertionError(f"no report {description} within {timeout:.0f} s; reports: {seen}")
                self._changed.wait(remaining)
