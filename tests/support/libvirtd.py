"""Session fixtures that provide a running libvirtd (with virtlogd) for the tests that need real QEMU domains.

Registered in tests/conftest.py's ``pytest_plugins``. ``libvirtd`` reuses a daemon that already answers on
qemu:///system; otherwise it starts virtlogd and libvirtd itself, each in its own session (there is no systemd
on these machines), waits for the socket, and stops what it started when the session ends.

Before starting the daemon it adds ``user = "root"`` and ``group = "root"`` to /etc/libvirt/qemu.conf, so QEMU
can open /dev/kvm (without it, libvirt re-probes QEMU on every call and a define takes ~40 s). That edit
weakens the host's isolation of guests, so it is made ONLY when running as root on a throwaway machine: CI
(CI=true) or a machine marked with NEBCTL_TEST_THROWAWAY=1. Elsewhere the tests skip with the reason.

With CI=true a daemon that cannot start fails the tests; outside CI they skip with a loud reason.

A session that is killed (a timeout, a machine shut down under it) never runs its finalizers, and what it
defined stays on the daemon, which keeps persistent objects across restarts: domains a test expecting an
empty host would see, networks whose bridges and subnets a later test may want. So on a throwaway machine the
first session to use the daemon, when no other session holds it, removes what earlier sessions left behind
(``remove_leftovers``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import in_ci

SYSTEM_URI = "qemu:///system"
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
LIBVIRT_SOCKET = Path("/run/libvirt/libvirt-sock")
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")
START_TIMEOUT = 30.0
# Several test sessions may share the daemon (developers run suites side by side): each holds a shared lock
# on USERS_LOCK while it uses it, and the session that started it stops it only when nobody else holds one.
USERS_LOCK = Path("/run/lock/nebctl-libvirtd-users.lock")
# Tests that clean up "whatever appeared during the test" take OBJECTS_LOCK so as not to see another
# session's objects appear meanwhile.
OBJECTS_LOCK = Path("/run/lock/nebctl-libvirtd-objects.lock")


@contextlib.contextmanager
def exclusive_objects() -> Iterator[None]:
    """Hold the daemon's objects for this block, against other sessions doing the same."""
    OBJECTS_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with OBJECTS_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def throwaway_machine() -> bool:
    return in_ci() or os.environ.get("NEBCTL_TEST_THROWAWAY", "") in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Fail in CI, where these tests must run; skip loudly elsewhere."""
    message = f"libvirtd unavailable: {reason}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def answers(uri: str = SYSTEM_URI) -> bool:
    """Whether a daemon serves ``uri`` (virsh, so this check does not depend on the driver under test)."""
    if shutil.which("virsh") is None:
        return False
    try:
        result = subprocess.run(["virsh", "-c", uri, "version"], capture_output=True, timeout=15, check=False)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def listening(path: Path) -> bool:
    """Whether a daemon accepts connections on the Unix socket ``path``. The file alone proves nothing: a
    daemon that was killed leaves it behind, and libvirtd then fails every domain start with "Failed to
    connect socket to '/run/libvirt/virtlogd-sock'"."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def qemu_runs_as_root(text: str) -> bool:
    return bool(re.search(r'^\s*user\s*=\s*"root"', text, re.M)) and bool(
        re.search(r'^\s*group\s*=\s*"root"', text, re.M)
    )


def configure_qemu_as_root() -> None:
    """Append user/group root to qemu.conf (throwaway machines only: see the module docstring)."""
    text = QEMU_CONF.read_text() if QEMU_CONF.exists() else ""
    if qemu_runs_as_root(text):
        return
    addition = (
        "\n# Added by nebctl's test harness (tests/support/libvirtd.py) on a throwaway machine:\n"
        '# QEMU runs as root so it can open /dev/kvm.\nuser = "root"\ngroup = "root"\n'
    )
    QEMU_CONF.write_text(text + addition)


@dataclass
class LibvirtDaemon:
    """The daemon the tests use; ``started`` lists the processes this session started (and will stop)."""

    uri: str = SYSTEM_URI
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_dir: Path | None = None

    users_handle: IO[str] | None = None

    def stop(self) -> None:
        handle = self.users_handle
        self.users_handle = None
        if handle is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the only user left?
            except BlockingIOError:
                self.started.clear()  # another session still uses the daemon: leave it running for it
            finally:
                handle.close()
        for process in reversed(self.started):
            terminate(process)
        self.started.clear()


def terminate(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Stop a daemon we started: SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# What a fresh libvirt installation defines itself; everything else on a throwaway machine's daemon was made by
# tests. nebctl's own nwfilters (security groups, ownership ledgers) carry this prefix; libvirt's stock ones do not.
STOCK_OBJECTS = frozenset({"default"})
NEBCTL_FILTER_PREFIX = "nebctl-"


def remove_objects(connection: Any, keep: Callable[[str, Any], bool]) -> list[str]:
    """Remove every domain (``kind`` "domain"), network, storage pool (with its volumes) and nwfilter ("filter") of
    ``connection``'s hypervisor that ``keep(kind, the libvirt object)`` does not keep; returns what it removed."""
    import libvirt

    removed: list[str] = []
    for domain in connection.listAllDomains(0):
        if not keep("domain", domain):
            removed.append(f"domain {domain.name()}")
            with contextlib.suppress(libvirt.libvirtError):
                domain.destroy()
            try:
                domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            except libvirt.libvirtError:
                domain.undefine()
    for network in connection.listAllNetworks(0):
        if not keep("network", network):
            removed.append(f"network {network.name()}")
            with contextlib.suppress(libvirt.libvirtError):
                network.destroy()
            network.undefine()
    with contextlib.suppress(libvirt.libvirtError):  # a hypervisor without nwfilter support has none
        # A NIC's combined filter references its groups' filters: the groups' go last.
        filters = [f for f in connection.listAllNWFilters(0) if not keep("filter", f)]
        for nwfilter in sorted(filters, key=lambda f: f.name().startswith(NEBCTL_FILTER_PREFIX + "sg-")):
            removed.append(f"nwfilter {nwfilter.name()}")
            nwfilter.undefine()
    for pool in connection.listAllStoragePools(0):
        if not keep("pool", pool):
            removed.append(f"pool {pool.name()}")
            if pool.isActive():
                for volume in pool.listAllVolumes(0):
                    volume.delete(0)
                pool.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                pool.delete(0)
            pool.undefine()
    return removed


def remove_leftovers(connection: Any) -> list[str]:
    """Remove every domain, network, storage pool (with its volumes) and nebctl nwfilter but libvirt's stock
    ones from ``connection``'s hypervisor; returns what it removed. Only for a daemon no session uses."""

    def stock(kind: str, found: Any) -> bool:
        if kind == "filter":
            return not found.name().startswith(NEBCTL_FILTER_PREFIX)
        return kind != "domain" and found.name() in STOCK_OBJECTS

    return remove_objects(connection, stock)


def _remove_leftovers_of_killed_sessions(uri: str) -> None:
    try:
        import libvirt
    except ImportError:  # nothing of ours can have defined anything without it
        return
    connection = libvirt.open(uri)
    try:
        removed = remove_leftovers(connection)
    finally:
        connection.close()
    if removed:
        print(f"libvirtd: removed what killed test sessions left behind: {', '.join(removed)}")


def _register_user(daemon: LibvirtDaemon) -> LibvirtDaemon:
    USERS_LOCK.parent.mkdir(parents=True, exist_ok=True)
    handle = USERS_LOCK.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # another session uses the daemon: what is defined there may be its own
    else:
        if throwaway_machine():
            _remove_leftovers_of_killed_sessions(daemon.uri)
    fcntl.flock(handle, fcntl.LOCK_SH)
    daemon.users_handle = handle
    return daemon


def _start(program: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        # A session of its own, so a terminal's signals (Ctrl-C) reach pytest, which then stops it in order.
        return subprocess.Popen([program], stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                start_new_session=True)  # fmt: skip


def _wait(condition: str, check: object, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        if process.poll() is not None:
            break
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    unavailable(f"{condition} did not come up (exit status {process.poll()}); log {log}:\n{tail}")


def _ensure_virtlogd(daemon: LibvirtDaemon) -> None:
    """Start virtlogd unless one listens: QEMU domains cannot start without it, even under a libvirtd that
    answers (a virtlogd killed on its own leaves libvirtd running and every domain start failing)."""
    if listening(VIRTLOGD_SOCKET):
        return
    if os.geteuid() != 0:
        unavailable(f"no virtlogd listens on {VIRTLOGD_SOCKET} and, not being root, the tests cannot start one")
    if shutil.which("virtlogd") is None:
        unavailable("virtlogd is not installed (make setup-system installs it)")
    if daemon.log_dir is None:
        daemon.log_dir = Path(tempfile.mkdtemp(prefix="nebctl-libvirtd-"))
    log = daemon.log_dir / "virtlogd.log"
    virtlogd = _start("virtlogd", log)  # it replaces a stale socket file itself
    daemon.started.append(virtlogd)
    _wait("virtlogd", lambda: listening(VIRTLOGD_SOCKET), virtlogd, log)


def start_daemon() -> LibvirtDaemon:
    if answers():
        daemon = LibvirtDaemon()
        try:
            _ensure_virtlogd(daemon)
            _register_user(daemon)
        except BaseException:
            daemon.stop()
            raise
        return daemon
    if os.geteuid() != 0:
        unavailable("not running as root, and no libvirtd answers on qemu:///system")
    for program in ("libvirtd", "virtlogd", "virsh"):
        if shutil.which(program) is None:
            unavailable(f"{program} is not installed (make setup-system installs it)")
    conf = QEMU_CONF.read_text() if QEMU_CONF.exists() else ""
    if not qemu_runs_as_root(conf):
        if not throwaway_machine():
            unavailable(
                'qemu.conf lacks user = "root" (needed for fast KVM domains); the harness only adds it on a '
                "throwaway machine: set NEBCTL_TEST_THROWAWAY=1 (or CI=true) to let it"
            )
        configure_qemu_as_root()
    daemon = LibvirtDaemon(log_dir=Path(tempfile.mkdtemp(prefix="nebctl-libvirtd-")))
    assert daemon.log_dir is not None
    try:
        _ensure_virtlogd(daemon)
        log = daemon.log_dir / "libvirtd.log"
        libvirtd = _start("libvirtd", log)
        daemon.started.append(libvirtd)
        _wait("libvirtd", answers, libvirtd, log)
        _register_user(daemon)
    except BaseException:  # a skip or failure too: stop what was started before handing it on
        daemon.stop()
        raise
    return daemon


_session_daemon: LibvirtDaemon | None = None


def ensure_daemon() -> LibvirtDaemon:
    """The session's daemon, started on first use (by the fixture, or by code that cannot ask for fixtures,
    such as the contract suite's driver builders); ``pytest_sessionfinish`` stops what was started."""
    global _session_daemon  # noqa: PLW0603 - one daemon per test session
    if _session_daemon is None:
        _session_daemon = start_daemon()
    return _session_daemon


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _session_daemon  # noqa: PLW0603
    if _session_daemon is not None:
        _session_daemon.stop()
        _session_daemon = None


@pytest.fixture(scope="session")
def libvirtd() -> LibvirtDaemon:
    """A libvirtd serving qemu:///system for the whole session (started here when none runs)."""
    return ensure_daemon()
