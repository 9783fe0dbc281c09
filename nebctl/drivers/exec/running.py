"""Running one external program safely: argv, its own process group, a clean environment, a timeout, caps.

Used by the exec drivers (``exec.programs``) and the exec hooks driver. The program never goes through a shell.
It starts a new session, so it leads its own process group: when the deadline passes or the call is cancelled,
the whole group is killed (SIGKILL), grandchildren included, and the call reports a timeout. Output is read by
threads as it comes: stdout up to a cap (a program flooding it is killed and reported), stderr line by line,
each ``LEVEL: message`` line forwarded to the Python log at that level while the program runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from nebctl.drivers.context import current
from nebctl.drivers.errors import PermanentError

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
MAX_STDOUT = 8 * 1024 * 1024
MAX_STDERR = 1024 * 1024
# Once the program has exited, how long its pipes may stay open (held by a stray child) before its group is killed.
_PIPE_GRACE = 2.0

_LEVELS = {
    "ERROR": logging.ERROR,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
}


@dataclass(frozen=True)
class ProgramResult:
    exit_code: int | None  # None when killed by the timeout or a cancellation
    stdout: bytes
    stderr: str
    duration: float
    timed_out: bool = False
    cancelled: bool = False


def clean_environment(extra: Mapping[str, str] | None = None, *, path: str = DEFAULT_PATH) -> dict[str, str]:
    """The whole environment a program gets: PATH, a UTF-8 locale, and what the caller adds. Nothing of ours
    (tokens, database URLs) leaks into it."""
    env = {"PATH": path, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if extra:
        env.update({str(k): str(v) for k, v in extra.items()})
    return env


def parse_log_line(line: str) -> tuple[int, str]:
    """``ERROR: disk full`` -> (logging.ERROR, 'disk full'); a line without a level is DEBUG."""
    prefix, sep, message = line.partition(":")
    level = _LEVELS.get(prefix.strip().upper()) if sep else None
    if level is None:
        return logging.DEBUG, line
    return level, message.strip()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _Collector:
    """Reads stdout (capped) and stderr (lines, forwarded to the log) in threads."""

    def __init__(self, process: subprocess.Popen[bytes], *, label: str, log: logging.Logger, max_stdout: int) -> None:
        self.process = process
        self.label = label
        self.log = log
        self.max_stdout = max_stdout
        self.stdout = bytearray()
        self.stderr: list[str] = []
        self.stderr_size = 0
        self.overflow = False
        assert process.stdout is not None and process.stderr is not None
        self.threads = [
            threading.Thread(target=self._read_stdout, args=(process.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(process.stderr,), daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _read_stdout(self, stream: IO[bytes]) -> None:
        while chunk := stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536):
            if len(self.stdout) + len(chunk) > self.max_stdout:
                self.overflow = True
                _kill_group(self.process.pid)
                break
            self.stdout.extend(chunk)

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line:
                continue
            level, message = parse_log_line(line)
            self.log.log(level, "%s: %s", self.label, message)
            if self.stderr_size < MAX_STDERR:
                self.stderr.append(line)
                self.stderr_size += len(line) + 1

    def join(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, end - time.monotonic()))
        return not any(thread.is_alive() for thread in self.threads)


def _write_stdin(stream: IO[bytes], data: bytes) -> None:
    # A program that exits without reading its input is its own business, not an error here.
    with contextlib.suppress(BrokenPipeError, OSError):
        stream.write(data)
    with contextlib.suppress(BrokenPipeError, OSError):
        stream.close()


def check_program(path: Path, *, label: str) -> None:
    """A clear error for the two usual mistakes: no such program, or a file without the execute bit."""
    if not path.exists():
        raise PermanentError(f"{label}: program {path} does not exist")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise PermanentError(f"{label}: program {path} is not an executable file")


def run_program(  # noqa: PLR0912, PLR0915 - one process's life: start, feed, wait, kill its group, reap, decode
    argv: Sequence[str],
    *,
    stdin: bytes,
    timeout: float,
    env: Mapping[str, str],
    label: str,
    cwd: Path | None = None,
    log: logging.Logger | None = None,
    max_stdout: int = MAX_STDOUT,
) -> ProgramResult:
    """Run ``argv`` to completion, or kill its process group at ``timeout`` seconds or when the call's context
    is cancelled. Raises ``PermanentError`` when it cannot start or floods stdout; never raises on exit codes."""
    context = current()
    log = log or context.log
    started = time.monotonic()
    deadline = started + timeout
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,  # its own session, hence its own process group, to kill as a whole
            close_fds=True,
        )
    except FileNotFoundError as error:
        raise PermanentError(f"{label}: program {argv[0]} not found") from error
    except PermissionError as error:
        raise PermanentError(f"{label}: program {argv[0]} is not executable") from error
    except OSError as error:  # ENOEXEC (no interpreter line), E2BIG...
        raise PermanentError(f"{label}: program {argv[0]} cannot be started: {error}") from error

    assert process.stdin is not None
    # Recorded while it runs: if nebctl dies now, the program lives on in its session, and the next nebctl
    # ends it. (Killed below once the call is over, its group is ours to forget.)
    token = context.programs.started(process.pid, f"{label}: {argv[0]}") if context.programs else None
    collector = _Collector(process, label=label, log=log, max_stdout=max_stdout)
    writer = threading.Thread(target=_write_stdin, args=(process.stdin, stdin), daemon=True)
    writer.start()
    timed_out = cancelled = False
    try:
        while True:
            try:
                process.wait(timeout=min(0.05, max(0.0, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                pass
            if context.cancelled.is_set():
                cancelled = True
            elif time.monotonic() >= deadline:
                timed_out = True
            else:
                continue
            # Killed while the leader is not yet reaped, so its process group id cannot have been reused.
            _kill_group(process.pid)
            process.wait()
            break
        if not collector.join(_PIPE_GRACE):
            # The program exited but something it started still holds its pipes: end the whole group.
            _kill_group(process.pid)
            collector.join(_PIPE_GRACE)
    except BaseException:
        _kill_group(process.pid)
        process.wait()
        raise
    finally:
        writer.join(1.0)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        if context.programs is not None:
            context.programs.ended(token)
    duration = time.monotonic() - started
    if collector.overflow:
        raise PermanentError(f"{label}: program {argv[0]} wrote more than {max_stdout} bytes on stdout; killed it")
    stopped = timed_out or cancelled
    return ProgramResult(
        exit_code=None if stopped else process.returncode,
        stdout=bytes(collector.stdout),
        stderr="\n".join(collector.stderr),
        duration=duration,
        timed_out=timed_out,
        cancelled=cancelled,
    )
