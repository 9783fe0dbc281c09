"""Another connection writing a new SQLite file, as a second process that makes the same file at once does."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def another_writer(path: Path, *, seconds: float = 0.3) -> Iterator[None]:
    """A connection that makes the new file ``path`` and writes to it (a table ``first_writer``, in rollback mode,
    holding the write lock) for ``seconds`` from the start of the block, then commits."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE first_writer (x)")
    released = threading.Timer(seconds, lambda: other.execute("COMMIT"))
    released.start()
    try:
        yield
    finally:
        released.join()
        other.close()
