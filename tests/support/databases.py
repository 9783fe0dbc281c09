"""Real database servers for tests: PostgreSQL and MariaDB started on loopback from a temporary directory.

A pytest plugin (listed in ``tests/conftest.py``'s ``pytest_plugins``). Each server starts once per session, on a
free port, and is stopped by its pid at the end. ``db_url`` is a parametrised fixture giving every test a fresh,
empty database on SQLite, PostgreSQL and MariaDB in turn; the executor and service tests reuse it. In CI a
server that cannot start fails the tests; elsewhere they are skipped with a loud reason, never passed silently.
``bench/db.py`` uses ``start_postgresql``/``start_mariadb`` directly.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 60.0
BACKENDS = ("sqlite", "postgresql", "mariadb")


class ServerUnavailable(Exception):
    """The server's programs are missing or it did not come up; the message says why."""


@dataclass
class DatabaseServer:
    """A running server: where it listens, its process id and the directory holding its data."""

    backend: str  # postgresql | mariadb
    port: int
    pid: int
    directory: Path
    admin_url: str  # a URL on the server's default database, with full rights
    process: subprocess.Popen[bytes] | None = None  # when we are its parent (MariaDB), to reap it

    def url(self, database: str) -> str:
        if self.backend == "postgresql":
            return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        if self.backend == "postgresql":
            import psycopg

            with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres") as conn:
                conn.autocommit = True
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                conn.execute(f'CREATE DATABASE "{name}"')
        else:
            import pymysql

            conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", autocommit=True)
            try:
                with conn.cursor() as cursor:
                    cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
                    cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            finally:
                conn.close()
        return self.url(name)

    def stop(self) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL) and remove its directory."""
        stop_pid(self.pid)
        if self.process is not None:
            self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_pid(pid: int, timeout: float = 20.0) -> None:
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_until(check: object, what: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            check()  # type: ignore[operator]
            return
        except Exception as error:  # not up yet
            last = error
            time.sleep(0.2)
    raise ServerUnavailable(
        f"{what} did not accept connections within {STARTUP_TIMEOUT:.0f}s: {last}; log: {_tail(log)}"
    )


def _postgres_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if not candidates:
        found = shutil.which("initdb")
        if found is None:
            raise ServerUnavailable("PostgreSQL is not installed (no initdb); run `sudo make setup-system`")
        return Path(found).parent
    return candidates[0].parent


def start_postgresql(*, durable: bool = False) -> DatabaseServer:
    """initdb + pg_ctl start in a new temporary directory; as the ``postgres`` user when we are root."""
    bindir = _postgres_bin()
    # Directly under /tmp (not pytest's private tmp dir), so that the postgres user can reach it.
    directory = Path(tempfile.mkdtemp(prefix="nebctl-postgresql-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError as error:
            shutil.rmtree(directory, ignore_errors=True)
            raise ServerUnavailable("running as root but there is no postgres user to run PostgreSQL") from error
        os.chown(directory, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    log = directory / "log"
    options = f"-k {directory} -p {port} -c listen_addresses=127.0.0.1 -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    try:
        subprocess.run(
            [*run_as, str(bindir / "initdb"), "-D", str(directory / "data"), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
            text=True,
        )
        subprocess.run(
            [
                *run_as,
                str(bindir / "pg_ctl"),
                "-D",
                str(directory / "data"),
                "-o",
                options,
                "-l",
                str(log),
                "-w",
                "-t",
                str(int(STARTUP_TIMEOUT)),
                "start",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        shutil.rmtree(directory, ignore_errors=True)
        raise ServerUnavailable(f"PostgreSQL did not start: {detail.strip()} {_tail(log)}") from error
    pid = int((directory / "data" / "postmaster.pid").read_text().split()[0])
    server = DatabaseServer(
        "postgresql", port, pid, directory, f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    )

    def check() -> None:
        import psycopg

        psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2).close()

    try:
        _wait_until(check, "PostgreSQL", log)
    except ServerUnavailable:
        server.stop()
        raise
    return server


def start_mariadb(*, durable: bool = False) -> DatabaseServer:
    """mariadb-install-db + mariadbd in its own session, in a new temporary directory."""
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    daemon = shutil.which("mariadbd") or (Path("/usr/sbin/mariadbd").exists() and "/usr/sbin/mariadbd") or None
    if install is None or not daemon:
        raise ServerUnavailable(
            "MariaDB is not installed (no mariadb-install-db/mariadbd); run `sudo make setup-system`"
        )
    directory = Path(tempfile.mkdtemp(prefix="nebctl-mariadb-"))
    log = directory / "log"
    user = ["--user=root"] if os.geteuid() == 0 else []
    try:
        subprocess.run(
            [
                install,
                "--no-defaults",
                f"--datadir={directory / 'data'}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *user,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        shutil.rmtree(directory, ignore_errors=True)
        raise ServerUnavailable(f"mariadb-install-db failed: {detail.strip()[-500:]}") from error
    port = free_port()
    arguments = [
        str(daemon),
        "--no-defaults",
        f"--datadir={directory / 'data'}",
        f"--socket={directory / 'sock'}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--pid-file={directory / 'pid'}",
        f"--log-error={log}",
        "--skip-name-resolve",
        "--max-connections=300",
        *user,
    ]
    if not durable:
        arguments += ["--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0", "--sync-binlog=0"]
    process = subprocess.Popen(
        arguments,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = DatabaseServer(
        "mariadb", port, process.pid, directory, f"mysql+pymysql://root@127.0.0.1:{port}/mysql", process
    )

    def check() -> None:
        import pymysql

        if process.poll() is not None:
            raise ServerUnavailable(f"mariadbd exited with status {process.returncode}")
        pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=2).close()

    try:
        _wait_until(check, "MariaDB", log)
    except ServerUnavailable:
        server.stop()
        raise
    return server


OWNER_FILE = "nebctl-test-owner"  # "<pytest pid> <server pid>", written once the server is up


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_orphaned_servers(backend: str) -> list[Path]:
    """Stop the servers that a test session killed before its teardown (SIGKILL, a timeout) left running, and
    remove their directories. Only servers whose owning test session is gone: other sessions running at the
    same time keep theirs. Returns the directories cleared."""
    cleared = []
    for directory in Path(tempfile.gettempdir()).glob(f"nebctl-{backend}-*"):
        try:
            owner, server_pid = (int(field) for field in (directory / OWNER_FILE).read_text().split())
        except (OSError, ValueError):
            continue  # still starting, or not one of ours
        if process_alive(owner):
            continue
        stop_pid(server_pid)
        shutil.rmtree(directory, ignore_errors=True)
        cleared.append(directory)
    return cleared


def _server_or_skip(backend: str) -> Iterator[DatabaseServer]:
    from tests.conftest import in_ci

    stop_orphaned_servers(backend)
    try:
        server = start_postgresql() if backend == "postgresql" else start_mariadb()
    except ServerUnavailable as error:
        message = f"!!! {backend} server could not start, its database tests did NOT run: {error}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    (server.directory / OWNER_FILE).write_text(f"{os.getpid()} {server.pid}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[DatabaseServer]:
    yield from _server_or_skip("postgresql")


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[DatabaseServer]:
    yield from _server_or_skip("mariadb")


_database_numbers = itertools.count(1)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to a fresh, empty database: SQLite, then PostgreSQL, then MariaDB."""
    backend: str = request.param
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'nebctl.db'}"
    server: DatabaseServer = request.getfixturevalue(f"{backend}_server")
    return server.create_database(f"nebctl_test_{os.getpid()}_{next(_database_numbers)}")
