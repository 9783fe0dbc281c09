"""The external programs of access control, run the OpenNebula way: an argument vector (never a shell), its own
process group killed at the timeout, a clean environment, JSON on stdin and on stdout.

- The ``exec`` authentication program gets ``{"user": ..., "secret": ...}`` and prints
  ``{"name": ..., "groups": [...]}`` when the secret is good; it exits non-zero (a reason on stderr) when not.
- The authorize program gets ``{"identity": ..., "action": ..., "target": ..., "decision": {...}}`` (the
  built-in verdict) and prints ``{"allowed": true|false, "reason": "..."}``.

Anything else (a crash, a hang, garbage, a missing program) is a failure, never a success: logins fail and
authorization denies. The secret never reaches a log: the program's stderr is not forwarded line by line, and
the reason kept from it has every occurrence of the secret masked. Used by ``authenticating`` and
``authorizing``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nebctl.drivers.errors import DriverError
from nebctl.drivers.exec.running import clean_environment, run_program

# The programs' stderr lines go here rather than to the service's log (they may echo what they were given).
_quiet = logging.getLogger("nebctl.access.program-output")
_quiet.disabled = True
_quiet.propagate = False

MAX_OUTPUT = 64 * 1024


class ProgramError(Exception):
    """The program did not give a usable answer; the message says why (never with the secret)."""


def _masked(text: str, secret: str | None) -> str:
    text = text.strip().splitlines()[-1] if text.strip() else ""
    if secret:
        text = text.replace(secret, "***")
    return text[:300]


def run_json(program: Path, payload: Mapping[str, Any], *, timeout: float, secret: str | None = None) -> dict[str, Any]:
    """Run ``program`` with ``payload`` as JSON on stdin; its stdout as a JSON object. Raises ``ProgramError``
    for a non-zero exit (with its last stderr line), a timeout, or an answer that is not a JSON object."""
    label = program.name
    try:
        result = run_program(
            [str(program)],
            stdin=json.dumps(payload).encode(),
            timeout=timeout,
            env=clean_environment(),
            label=label,
            log=_quiet,
            max_stdout=MAX_OUTPUT,
        )
    except DriverError as error:
        raise ProgramError(_masked(str(error), secret) or f"{label} could not run") from None
    if result.timed_out:
        raise ProgramError(f"{label} did not answer within {timeout:g}s")
    if result.exit_code != 0:
        reason = _masked(result.stderr, secret)
        raise ProgramError(f"{label} exited with {result.exit_code}" + (f": {reason}" if reason else ""))
    try:
        document = json.loads(result.stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProgramError(f"{label} printed something that is not JSON") from None
    if not isinstance(document, dict):
        raise ProgramError(f"{label} printed JSON that is not an object")
    return document


def authenticate(program: Path, user: str, secret: str, *, timeout: float) -> tuple[str, tuple[str, ...]]:
    """The identity name and groups the program vouches for."""
    document = run_json(program, {"user": user, "secret": secret}, timeout=timeout, secret=secret)
    name = document.get("name", user)
    groups = document.get("groups", [])
    if not isinstance(name, str) or not name or len(name) > 128:
        raise ProgramError(f"{program.name}: 'name' must be a non-empty string of at most 128 characters")
    if not isinstance(groups, list) or not all(isinstance(g, str) and g and len(g) <= 128 for g in groups):
        raise ProgramError(f"{program.name}: 'groups' must be a list of non-empty strings")
    return name, tuple(dict.fromkeys(groups))


def authorize(program: Path, payload: Mapping[str, Any], *, timeout: float) -> tuple[bool, str]:
    """The program's verdict and reason."""
    document = run_json(program, payload, timeout=timeout)
    allowed = document.get("allowed")
    if not isinstance(allowed, bool):
        raise ProgramError(f"{program.name}: 'allowed' must be true or false")
    reason = document.get("reason", "")
    return allowed, str(reason)[:300] if reason is not None else ""
