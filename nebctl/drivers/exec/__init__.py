"""The ``exec`` driver: drivers as external programs, the OpenNebula way.

``programs`` holds the family drivers (``DRIVER_DIR/FAMILY/NAME/ACTION`` executables, their payload and exit
status protocol), ``hooks`` the runner of Hook programs, ``running`` the safe process runner both use. The
registry registers ``DRIVER_CLASSES``; example program sets live in ``examples/exec-drivers/``.
"""

from __future__ import annotations

from nebctl.drivers.exec.hooks import ExecHooks
from nebctl.drivers.exec.programs import (
    ExecAuthorization,
    ExecDriver,
    ExecMarketplace,
    ExecMonitoring,
    ExecNetwork,
    ExecStorage,
    ExecVirtualization,
)
from nebctl.drivers.exec.running import ProgramResult, clean_environment, run_program

DRIVER_CLASSES: tuple[type[object], ...] = (
    ExecVirtualization,
    ExecStorage,
    ExecNetwork,
    ExecMonitoring,
    ExecAuthorization,
    ExecMarketplace,
    ExecHooks,
)

__all__ = [
    "DRIVER_CLASSES",
    "ExecAuthorization",
    "ExecDriver",
    "ExecHooks",
    "ExecMarketplace",
    "ExecMonitoring",
    "ExecNetwork",
    "ExecStorage",
    "ExecVirtualization",
    "ProgramResult",
    "clean_environment",
    "run_program",
]
