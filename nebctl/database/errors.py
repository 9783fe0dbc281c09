"""The database layer's own errors, so that SQLAlchemy and driver exceptions never leak to callers.

The CLI turns a ``DatabaseError`` into one line for the user (``CliError``); the executor and the service catch
``LockNotObtained`` to exit with code 3 or to wait, and ``SchemaOutdated`` to tell the user what to run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nebctl.database.records import LockRecord


class DatabaseError(Exception):
    """Anything that went wrong talking to the database, as one line that a user can act on."""


class SchemaOutdated(DatabaseError):  # noqa: N818  (reads as a sentence: raise LockNotObtained)
    """The database was made by an older nebctl; ``nebctl db upgrade`` brings it to this version."""


class SchemaTooNew(DatabaseError):  # noqa: N818  (reads as a sentence: raise LockNotObtained)
    """The database was upgraded by a newer nebctl than this one; running on it could damage it."""


class NotFound(DatabaseError):  # noqa: N818  (reads as a sentence: raise LockNotObtained)
    """A row that an update needs (an apply, a journalled action, a user) does not exist."""


class LockNotObtained(DatabaseError):  # noqa: N818  (reads as a sentence: raise LockNotObtained)
    """Another writer holds the lock and did not release it within the timeout."""

    def __init__(self, message: str, *, holder: LockRecord | None) -> None:
        super().__init__(message)
        self.holder = holder


class LockLost(DatabaseError):  # noqa: N818  (reads as a sentence: raise LockNotObtained)
    """A lease we held was taken over (it expired, or was forced open) before we renewed or released it."""
