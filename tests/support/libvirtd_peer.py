"""A second, private libvirtd on this machine: the other host of tests that migrate between two real daemons.

Registered in tests/conftest.py's ``pytest_plugins``. ``ensure_peer()`` (or the session fixture
``libvirtd_peer``) starts it on first use; ``pytest_sessionfinish`` destroys what runs on it and stops it.

How it lives next to the system daemon (tests/support/libvirtd.py) without touching it: it runs in a mount
namespace of its own (``unshare --mount --propagation private``) in which the per-daemon directories are bind
mounts of directories under a temporary ROOT:

    /run/libvirt        <- ROOT/run    sockets, pid files, runtime state (its socket is ROOT/run/libvirt-sock)
    /var/lib/libvirt    <- ROOT/lib    QEMU's per-domain directories, dnsmasq leases
    /var/cache/libvirt  <- ROOT/cache  capabilities cache
    /var/log/libvirt    <- ROOT/log    the domains' QEMU logs
    /etc/libvirt        <- ROOT/etc    a copy of the configuration files and default nwfilters, with no
                                       domain, network, pool or secret of the system daemon

Nothing is mounted outside the namespace, the system daemon's files are only read, and its pid file
(/run/libvirtd.pid) is not this one's (``--pid-file ROOT/libvirtd.pid``). Outside the namespace the peer is
reached through its socket: ``qemu+unix:///system?socket=ROOT/run/libvirt-sock``.

What its configuration adds to the copy: ``host_uuid`` of its own in libvirtd.conf (libvirt refuses to migrate
to a host with the same UUID, and both daemons read the machine's SMBIOS UUID where there is one); in qemu.conf
``stdio_handler = "file"`` (QEMU logs to ROOT/log, no virtlogd) and ``cgroup_controllers = []`` (the two
daemons would otherwise name a migrating domain's cgroup alike when their domain ids coincide). Incoming
migrations listen where libvirt's default says, at the machine's host name (libvirt refuses 127.0.0.1 and
localhost as ``migration_host``). The network namespace is shared: networks a test defines on the peer are
real bridges, so the session's end destroys every network and domain of the peer before stopping it.

Like the system daemon, QEMU must run as root to open /dev/kvm: ``user = "root"`` goes into the peer's copy of
qemu.conf only on a throwaway machine (CI=true or NEBCTL_TEST_THROWAWAY=1). With CI=true a peer that cannot
start fails the tests; elsewhere they skip with the reason.

A session killed before its teardown (SIGKILL, a timeout) leaves its peer running, with its domains and
bridges: ROOT/nebctl-test-owner names the session, and the next session to start a peer stops the peers of
sessions that are gone (``stop_orphaned_peers``), as tests/support/databases.py does for database servers.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import in_ci
from tests.support.databases import OWNER_FILE, process_alive, stop_pid
from tests.support.libvirtd import (
    QEMU_CONF,
    START_TIMEOUT,
    answers,
    qemu_runs_as_root,
    terminate,
    throwaway_machine,
    unavailable,
)

# ROOT's subdirectory -> the daemon directory it replaces inside the namespace.
MOUNTS = {
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
    "etc": "/etc/libvirt",
}
CONFIG_DIR = Path("/etc/libvirt")
STOP_TIMEOUT = 20.0


@dataclass
class PeerDaemon:
    """The second daemon: its URI, its temporary ROOT and its libvirtd process (started by this session)."""

    root: Path
    process: subprocess.Popen[bytes] | None  # None: a peer an earlier session started (``stop_orphaned_peers``)
    host_uuid: str

    @property
    def socket(self) -> Path:
        return self.root / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def log(self) -> Path:
        return self.root / "libvirtd.log"

    def stop(self) -> None:
        """Destroy its domains and networks (QEMU processes and bridges outlive a stopped daemon), stop it,
        kill any QEMU it still left behind, and remove ROOT."""
        try:
            if self.process.poll() is None if self.process is not None else answers(self.uri):
                self._clear()
        finally:
            if self.process is not None:
                terminate(self.process, STOP_TIMEOUT)
            else:
                with contextlib.suppress(ValueError, OSError):
                    stop_pid(int((self.root / "libvirtd.pid").read_text().strip()), STOP_TIMEOUT)
            self._kill_left_qemu()
            shutil.rmtree(self.root, ignore_errors=True)

    def _clear(self) -> None:
        try:
            import libvirt
        except ImportError:  # without libvirt-python no test could have created anything on it
            return
        connection = libvirt.open(self.uri)
        try:
            for domain in connection.listAllDomains(0):
                with contextlib.suppress(libvirt.libvirtError):
                    domain.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    domain.undefine()
            for network in connection.listAllNetworks(0):
                with contextlib.suppress(libvirt.libvirtError):
                    network.destroy()
        finally:
            connection.close()

    def _kill_left_qemu(self) -> None:
        for pid_file in (self.root / "run" / "qemu").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


def _copy_configuration(target: Path, host_uuid: str) -> None:
    """The system daemon's configuration files and default filters, with the peer's additions."""
    target.mkdir()
    for entry in CONFIG_DIR.iterdir():
        if entry.is_file():
            shutil.copy2(entry, target / entry.name)
    for directory in ("nwfilter", "hooks"):
        if (CONFIG_DIR / directory).is_dir():
            shutil.copytree(CONFIG_DIR / directory, target / directory)
    for directory in ("qemu", "storage"):
        (target / directory).mkdir(exist_ok=True)
    (target / "secrets").mkdir(mode=0o700, exist_ok=True)
    with (target / "libvirtd.conf").open("a") as conf:
        conf.write(f'\n# nebctl test harness: the peer daemon\nhost_uuid = "{host_uuid}"\n')
    qemu_conf = target / QEMU_CONF.name
    text = qemu_conf.read_text() if qemu_conf.exists() else ""
    addition = [
        "",
        "# nebctl test harness: the peer daemon (tests/support/libvirtd_peer.py)",
        'stdio_handler = "file"',
        "cgroup_controllers = [ ]",
    ]
    if not qemu_runs_as_root(text):
        addition += ['user = "root"', 'group = "root"']  # throwaway machines only: start_peer checks
    qemu_conf.write_text(text + "\n".join(addition) + "\n")
    qemu_conf.chmod(0o600)


def _namespace_script(root: Path) -> str:
    lines = ["set -e"]
    for name, mountpoint in MOUNTS.items():
        lines.append(f"mkdir -p {shlex.quote(mountpoint)}")
        lines.append(f"mount --bind {shlex.quote(str(root / name))} {shlex.quote(mountpoint)}")
    lines.append(f"exec libvirtd --pid-file {shlex.quote(str(root / 'libvirtd.pid'))}")
    return "\n".join(lines)


def stop_orphaned_peers() -> list[Path]:
    """Stop the peers whose test session is gone, with their domains and networks, and remove their ROOTs;
    returns the ROOTs cleared. Peers of sessions still running are theirs."""
    cleared = []
    for root in Path(tempfile.gettempdir()).glob("nebctl-peer-*"):
        try:
            owner = int((root / OWNER_FILE).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # still starting, or not one of ours
        if process_alive(owner):
            continue
        PeerDaemon(root=root, process=None, host_uuid="").stop()
        cleared.append(root)
    return cleared


def start_peer() -> PeerDaemon:
    if os.geteuid() != 0:
        unavailable("the peer libvirtd (migration target) needs root: it mounts in a namespace of its own")
    for program in ("libvirtd", "virsh", "unshare", "mount"):
        if shutil.which(program) is None:
            unavailable(f"{program} is not installed; the peer libvirtd (migration target) needs it")
    system_conf = QEMU_CONF.read_text() if QEMU_CONF.exists() else ""
    if not qemu_runs_as_root(system_conf) and not throwaway_machine():
        unavailable(
            "the peer libvirtd would run QEMU as root (needed for fast KVM domains), which the harness only "
            "allows on a throwaway machine: set NEBCTL_TEST_THROWAWAY=1 (or CI=true) to let it"
        )
    stop_orphaned_peers()
    root = Path(tempfile.mkdtemp(prefix="nebctl-peer-"))  # short: the socket path must fit in 108 bytes
    (root / OWNER_FILE).write_text(str(os.getpid()))
    host_uuid = str(uuid.uuid4())
    for name in MOUNTS:
        if name != "etc":
            (root / name).mkdir()
    (root / "lib" / "qemu").mkdir()
    (root / "cache" / "qemu").mkdir()
    (root / "log" / "qemu").mkdir()
    _copy_configuration(root / "etc", host_uuid)
    log = root / "libvirtd.log"
    with log.open("ab") as output:
        # A session of its own, so a terminal's Ctrl-C reaches pytest, which then stops it in order.
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", _namespace_script(root)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    peer = PeerDaemon(root=root, process=process, host_uuid=host_uuid)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (peer.socket.exists() and answers(peer.uri)):
            if process.poll() is not None or time.monotonic() >= deadline:
                tail = log.read_text(errors="replace")[-2000:]
                unavailable(f"the peer libvirtd did not come up (exit status {process.poll()}); its log:\n{tail}")
            time.sleep(0.1)
    except BaseException:  # a skip or failure too: stop it before handing it on
        peer.stop()
        raise
    return peer


_session_peer: PeerDaemon | None = None
_session_failure: str | None = None  # why the peer did not start: later callers fail or skip at once with it


def ensure_peer() -> PeerDaemon:
    """The session's peer daemon, started on first use (by the fixture, or by code that cannot ask for
    fixtures, such as the contract suite's driver builders); ``pytest_sessionfinish`` stops it. When it could
    not start, every caller fails (CI) or skips with the first attempt's reason, without trying again."""
    global _session_peer, _session_failure  # noqa: PLW0603 - one peer per test session
    if _session_peer is None:
        if _session_failure is not None:
            if in_ci():
                pytest.fail(_session_failure)
            pytest.skip(_session_failure)
        try:
            _session_peer = start_peer()
        except (pytest.skip.Exception, pytest.fail.Exception) as unavailable_peer:
            _session_failure = unavailable_peer.msg or "the peer libvirtd did not start"
            raise
    return _session_peer


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _session_peer  # noqa: PLW0603
    if _session_peer is not None:
        _session_peer.stop()
        _session_peer = None


@pytest.fixture(scope="session")
def libvirtd_peer() -> PeerDaemon:
    """A second libvirtd (qemu, on this machine) for the whole session: a migration target."""
    return ensure_peer()
