"""The exec hooks driver: runs a Hook's own program with the event payload as JSON on stdin.

Registered by ``nebctl.drivers.registry`` as the ``exec`` driver of the hooks family; the controller calls it
when a hook's event fires and records the ``HookResult`` (exit status, output, duration). Unlike the other exec
drivers it runs ``HookProgram.command`` (an argument vector from the Hook manifest), not a program of
DRIVER_DIR. The program gets a clean environment plus the Hook's ``env``, its own process group, and is killed
with its whole group after ``hook.timeout`` (or the call's deadline, when sooner).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from nebctl.core.families import Family
from nebctl.drivers.context import current
from nebctl.drivers.errors import PermanentError
from nebctl.drivers.exec.running import DEFAULT_PATH, MAX_STDOUT, clean_environment, run_program
from nebctl.drivers.types import HookProgram, HookResult


class ExecHooks:
    name: ClassVar[str] = "exec"
    family: ClassVar[Family] = Family.HOOKS
    capabilities: ClassVar[frozenset[str]] = frozenset({"run", "timeout", "process-group"})

    def __init__(self, *, path: str = DEFAULT_PATH, max_output: int = MAX_STDOUT) -> None:
        self.path = path
        self.max_output = max_output

    @classmethod
    def from_context(cls, context: Any) -> ExecHooks:  # a registry.DriverContext
        options: Mapping[str, Any] = context.options
        return cls(
            path=str(options.get("path") or DEFAULT_PATH), max_output=int(options.get("max_output") or MAX_STDOUT)
        )

    def run(self, hook: HookProgram, payload: Mapping[str, Any]) -> HookResult:
        if not hook.command:
            raise PermanentError(f"hook {hook.name}: empty command", driver="exec")
        env = clean_environment({**hook.env, "NEBCTL_HOOK": hook.name}, path=self.path)
        result = run_program(
            hook.command,
            stdin=json.dumps(payload, default=str).encode(),
            timeout=min(hook.timeout, current().remaining(hook.timeout)),
            env=env,
            label=f"hook {hook.name}",
            max_stdout=self.max_output,
        )
        return HookResult(
            exit_code=result.exit_code,
            stdout=result.stdout.decode("utf-8", errors="replace"),
            stderr=result.stderr,
            duration=result.duration,
            timed_out=result.timed_out or result.cancelled,
        )
