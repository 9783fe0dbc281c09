"""Putting a SQLite file in WAL mode when another process may be making the same new file: used by the database's
engine (``database.engines``) and the sim fleet's store (``drivers.sim.store``), which may not import each other."""

from __future__ import annotations

import sqlite3
import time

# How often a switch refused because another process writes to the new file is tried again.
_RETRY = 0.01


def use_write_ahead_log(connection: sqlite3.Connection | sqlite3.Cursor, timeout: float) -> None:
    """Put the file of ``connection`` in WAL mode, waiting up to ``timeout`` seconds for another process writing to
    it. Switching a new file needs its exclusive lock; while another connection writes to it in rollback mode (a
    second process making the same file, switching it too), SQLite answers "database is locked" at once, past any
    busy timeout, since waiting could deadlock the two: so the switch is tried again until the other is done."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(_RETRY)
