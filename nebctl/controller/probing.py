"""Custom host probes: the programs of the probes directory (``probes_dir``), run for each host.

Each executable file of the directory is run (an argument vector, no shell, a clean environment, its own
process group, a timeout) with the host's name and URI as its two arguments and in ``NEBCTL_HOST`` and
``NEBCTL_HOST_URI``; it prints ``KEY=VALUE`` lines, which become the host's custom attributes (``custom.KEY`` in
``requirements`` and ``rank``). A program that fails or times out contributes nothing and is logged; the
host's other attributes stay. ``observing.observe`` merges the attributes into each host's probe; the service's
monitoring runs them on the host interval and hands its cached results to the planner. Both record each program
while it runs (``reaping``, through the driver call context), so one a killed nebctl leaves hanging is ended.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from nebctl.drivers.context import current
from nebctl.drivers.types import HostRef

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OUTPUT_LIMIT = 65536


def parse_output(text: str, *, program: str = "probe") -> dict[str, str]:
    """The ``KEY=VALUE`` pairs of a probe's output; other lines (blank, ``#`` comments, malformed) are skipped,
    a malformed one with a warning."""
    pairs: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            log.warning("%s: line %d is not KEY=VALUE: %.80s", program, number, stripped)
            continue
        pairs[key] = value.strip()
    return pairs


def programs(directory: Path) -> list[Path]:
    """The probe programs of ``directory``: its executable regular files, by name."""
    try:
        entries = sorted(directory.iterdir())
    except OSError as error:
        log.warning("probes directory %s: %s", directory, error.strerror or error)
        return []
    return [p for p in entries if p.is_file() and os.access(p, os.X_OK) and not p.name.startswith(".")]


def run_probe(program: Path, host: HostRef, *, timeout: float) -> dict[str, str]:
    """Run one probe program for ``host``; its pairs, or nothing when it fails."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "NEBCTL_HOST": host.name,
        "NEBCTL_HOST_URI": host.uri,
    }
    try:
        process = subprocess.Popen(
            [str(program), host.name, host.uri],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            text=True,
            start_new_session=True,
        )
    except OSError as error:
        log.warning("probe %s for host %s cannot start: %s", program.name, host.name, error.strerror or error)
        return {}
    # Recorded while it runs (when the caller records programs): its own session outlives a killed nebctl.
    watch = current().programs
    token = watch.started(process.pid, f"probe {program.name} for host {host.name}") if watch else None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The whole process group: a probe's own children (ssh, a pipeline) go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        log.warning("probe %s for host %s timed out after %gs", program.name, host.name, timeout)
        return {}
    finally:
        if watch is not None:
            watch.ended(token)
    if process.returncode != 0:
        detail = stderr.strip().splitlines()[-1:] or [f"exit status {process.returncode}"]
        log.warning("probe %s for host %s failed: %s", program.name, host.name, detail[0])
        return {}
    return parse_output(stdout[:OUTPUT_LIMIT], program=program.name)


class CustomProbes:
    """Runs every program of a probes directory for a host and merges their pairs (a later program's key wins)."""

    def __init__(self, directory: Path, *, timeout: float = 10.0) -> None:
        self.directory = directory
        self.timeout = timeout

    def __call__(self, host: HostRef) -> Mapping[str, str]:
        attributes: dict[str, str] = {}
        for program in programs(self.directory):
            attributes.update(run_probe(program, host, timeout=self.timeout))
        return attributes
