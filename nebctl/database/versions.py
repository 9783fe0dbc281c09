"""Change counters (``change_counters``): a number per family of data that every write to it raises, in the same
transaction as the write.

``bump(connection, family)`` is called by the store's writers (``database.state`` for records and observations,
``database.access`` for users, tokens and rules), first in their transaction: on PostgreSQL and MariaDB the
counter's row lock then orders writers, and a counter's value is never reused. ``Store.change_versions()`` reads
every counter in one query; the HTTP API keys its caches by them (``api.caching``), so that a change made by any
process sharing the database (another replica, the CLI) is seen by the next request that reads them. A reader
must read the counters before the data they guard: what it then reads is at least as new as the counters say.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from nebctl.database.models import ChangeCounter
from nebctl.database.operating import Operations, table

_counters = table(ChangeCounter)

RESOURCES = "resources"  # resource records and what monitoring observed of them
ACCESS = "access"  # users (their groups, whether enabled), tokens, access rules
FAMILIES = (RESOURCES, ACCESS)


@dataclass(frozen=True)
class Versions:
    """The counters as read at one moment."""

    resources: int
    access: int


def seed_rows() -> list[dict[str, object]]:
    """The rows a new database starts with (``migrating`` and the migration write them)."""
    return [{"name": family, "value": 0} for family in FAMILIES]


def bump(connection: Connection, family: str) -> None:
    """Raise ``family``'s counter inside the caller's writing transaction."""
    raised = connection.execute(
        update(_counters).where(_counters.c.name == family).values(value=_counters.c.value + 1)
    ).rowcount
    if not raised:  # a database whose rows were removed by hand: the row comes back, past any value seen
        connection.execute(insert(_counters).values(name=family, value=1))


# Built once: every API request runs it, and building a statement costs more than running it on SQLite.
_READ_ALL = select(_counters.c.name, _counters.c.value)


class VersionOperations(Operations):
    def change_versions(self) -> Versions:
        """Every change counter, in one read."""
        with self._read() as connection:
            values = {str(name): int(value) for name, value in connection.execute(_READ_ALL)}
        return Versions(resources=int(values.get(RESOURCES, 0)), access=int(values.get(ACCESS, 0)))
