"""The libvirtd harness itself: it must see through a socket file that a killed daemon left behind.

CI once ran every QEMU test against a libvirtd whose virtlogd was gone: the harness saw
/run/libvirt/virtlogd-sock on disk and started nothing, and every domain start failed.
"""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.libvirtd import VIRTLOGD_SOCKET, LibvirtDaemon, listening


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
