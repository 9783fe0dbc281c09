"""The typed errors every driver raises at its edge, whatever its backend.

The type says whether a retry can help: the executor retries ``TemporaryError`` (with backoff, honouring
``delay`` when the driver suggests one) and fails ``PermanentError`` at once. Backend exceptions
(``libvirtError``, ``CalledProcessError``, ``OSError``...) are converted where they are caught and chained with
``from``, so nothing above the drivers needs to know a backend's exception types.
"""

from __future__ import annotations


class DriverError(Exception):
    """Base of all driver errors. ``driver`` names who raised it, for messages and the journal."""

    temporary: bool = False

    def __init__(self, message: str, *, driver: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.driver = driver

    def __str__(self) -> str:
        return f"{self.driver}: {self.message}" if self.driver else self.message


class TemporaryError(DriverError):
    """A failure that may go away: retry, after ``delay`` seconds if the driver suggests it."""

    temporary = True

    def __init__(self, message: str, *, driver: str | None = None, delay: float | None = None) -> None:
        super().__init__(message, driver=driver)
        self.delay = delay


class DriverTimeoutError(TemporaryError):
    """The action did not finish within its timeout and was cancelled (an external program's group killed)."""


class PermanentError(DriverError):
    """A failure that a retry cannot fix: bad input, a missing capability, an impossible request."""


class NotFoundError(PermanentError):
    """The object the action is about does not exist on the backend."""


class ConflictError(PermanentError):
    """The object exists but is in the way: owned by someone else, or in a state the action cannot handle."""


class CapabilityError(PermanentError):
    """The driver does not implement the requested action."""


class RegistrationError(Exception):
    """A driver cannot be registered: unknown family, or it lacks what its family's protocol requires."""
