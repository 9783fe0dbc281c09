"""Conversion of libvirt's and the host tools' exceptions into the project's typed driver errors.

Every public method of the libvirt drivers runs its backend calls inside ``converting()``, so a
``libvirtError`` (or an ``OSError``/``CalledProcessError`` from qemu-img and genisoimage) never escapes the
package: the executor sees ``NotFoundError``, ``TemporaryError``, ``ConflictError``, ``CapabilityError`` or
``PermanentError``, chained with ``from`` so the original stays in the traceback.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator

import libvirt

from nebctl.drivers.errors import (
    CapabilityError,
    ConflictError,
    DriverError,
    NotFoundError,
    PermanentError,
    TemporaryError,
)

DRIVER_NAME = "libvirt"

_NOT_FOUND = frozenset(
    getattr(libvirt, code)
    for code in (
        "VIR_ERR_NO_DOMAIN",
        "VIR_ERR_NO_NETWORK",
        "VIR_ERR_NO_STORAGE_POOL",
        "VIR_ERR_NO_STORAGE_VOL",
        "VIR_ERR_NO_NWFILTER",
        "VIR_ERR_NO_DOMAIN_SNAPSHOT",
        "VIR_ERR_NO_DOMAIN_METADATA",
        "VIR_ERR_NO_NETWORK_PORT",
        "VIR_ERR_NO_NWFILTER_BINDING",
        "VIR_ERR_NO_INTERFACE",
        "VIR_ERR_NO_SECRET",
    )
    if hasattr(libvirt, code)
)

# Failures of the transport or the daemon: a new connection or a later try can succeed.
_TEMPORARY = frozenset(
    getattr(libvirt, code)
    for code in (
        "VIR_ERR_SYSTEM_ERROR",
        "VIR_ERR_RPC",
        "VIR_ERR_NO_CONNECT",
        "VIR_ERR_INVALID_CONN",
        "VIR_ERR_OPERATION_TIMEOUT",
        "VIR_ERR_AGENT_UNRESPONSIVE",
        "VIR_ERR_RESOURCE_BUSY",
        "VIR_ERR_AUTH_UNAVAILABLE",
    )
    if hasattr(libvirt, code)
)

# Codes after which the cached connection is useless and must be reopened.
CONNECTION_LOST = frozenset(
    getattr(libvirt, code)
    for code in ("VIR_ERR_SYSTEM_ERROR", "VIR_ERR_RPC", "VIR_ERR_NO_CONNECT", "VIR_ERR_INVALID_CONN")
    if hasattr(libvirt, code)
)

_CONFLICT = frozenset(
    getattr(libvirt, code)
    for code in (
        "VIR_ERR_DOM_EXIST",
        "VIR_ERR_NETWORK_EXIST",
        "VIR_ERR_STORAGE_POOL_BUILT",
        "VIR_ERR_STORAGE_VOL_EXIST",
        "VIR_ERR_OPERATION_INVALID",
        "VIR_ERR_MULTIPLE_INTERFACES",
    )
    if hasattr(libvirt, code)
)

_UNSUPPORTED = frozenset({libvirt.VIR_ERR_NO_SUPPORT})


def error_code(error: libvirt.libvirtError) -> int:
    code = error.get_error_code()
    return int(code) if code is not None else -1


def translate(error: BaseException, action: str) -> DriverError:
    """The project's error for ``error`` raised while doing ``action`` (the caller chains it with ``from``)."""
    if isinstance(error, DriverError):
        return error
    if isinstance(error, libvirt.libvirtError):
        code = error_code(error)
        message = f"{action}: {error.get_error_message() or error}"
        if code in _NOT_FOUND:
            return NotFoundError(message, driver=DRIVER_NAME)
        if code in _TEMPORARY:
            return TemporaryError(message, driver=DRIVER_NAME)
        if code in _CONFLICT:
            return ConflictError(message, driver=DRIVER_NAME)
        if code in _UNSUPPORTED:
            return CapabilityError(message, driver=DRIVER_NAME)
        return PermanentError(message, driver=DRIVER_NAME)
    if isinstance(error, subprocess.TimeoutExpired):
        return TemporaryError(f"{action}: {error.cmd[0]} timed out after {error.timeout} s", driver=DRIVER_NAME)
    if isinstance(error, subprocess.CalledProcessError):
        stderr = error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else error.stderr
        return PermanentError(
            f"{action}: {error.cmd[0]} exited {error.returncode}: {(stderr or '').strip()}", driver=DRIVER_NAME
        )
    if isinstance(error, FileNotFoundError):
        return NotFoundError(f"{action}: {error}", driver=DRIVER_NAME)
    if isinstance(error, OSError):
        return PermanentError(f"{action}: {error}", driver=DRIVER_NAME)
    return PermanentError(f"{action}: {type(error).__name__}: {error}", driver=DRIVER_NAME)


@contextlib.contextmanager
def converting(action: str, *, on_lost: Callable[[], None] | None = None) -> Iterator[None]:
    """Run the block, converting backend exceptions; ``on_lost`` runs when the connection is gone."""
    try:
        yield
    except DriverError:
        raise
    except (libvirt.libvirtError, OSError, subprocess.SubprocessError, ValueError) as error:
        if on_lost is not None and isinstance(error, libvirt.libvirtError) and error_code(error) in CONNECTION_LOST:
            on_lost()
        raise translate(error, action) from error
