"""The libvirtd harness itself, against what killed sessions leave behind.

CI once ran every QEMU test against a libvirtd whose virtlogd was gone: the harness saw
/run/libvirt/virtlogd-sock on disk and started nothing, and every domain start failed. A session killed before
its teardown also leaves its peer libvirtd (the migration target) running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.databases import process_alive
from tests.support.libvirtd import VIRTLOGD_SOCKET, LibvirtDaemon, listening
from tests.support.libvirtd_peer import stop_orphaned_peers

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_socket_file_nobody_listens_on_is_not_a_daemon(tmp_path: Path) -> None:
    path = tmp_path / "stale-sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()
        assert listening(path)
    assert path.exists()  # closing does not remove the file: exactly what a SIGKILLed daemon leaves
    assert not listening(path)
    assert not listening(tmp_path / "absent")


def test_the_session_daemon_has_a_virtlogd_that_listens(libvirtd: LibvirtDaemon) -> None:
    assert listening(VIRTLOGD_SOCKET)


def test_a_peer_left_by_a_killed_session_is_stopped_by_the_next(libvirtd: LibvirtDaemon) -> None:
    # A session of its own starts a peer, then dies without its teardown, as under SIGKILL or a CI timeout.
    script = (
        "import sys, time\n"
        "from tests.support.libvirtd_peer import start_peer\n"
        "peer = start_peer()\n"
        "print(peer.root, flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    ) as session:
        try:
            assert session.stdout is not None
            root = Path(session.stdout.readline().strip())
            daemon_pid = int((root / "libvirtd.pid").read_text().strip())
            assert process_alive(daemon_pid)
            assert root not in stop_orphaned_peers()  # its session still runs: the peer is its own
        finally:
            os.killpg(session.pid, signal.SIGKILL)
    assert root in stop_orphaned_peers()
    assert not process_alive(daemon_pid)
    assert not root.exists()
