"""Store operations on the installation's identity (``installation``): one id per database, made once and kept.

Mixed into ``Store``. The CLI (``cli.database.installation_id``) reads it before an apply writes it on live
objects, and ``nebctl recover`` compares it with the one each live object carries.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

from sqlalchemy import insert, select

from nebctl.database.models import Installation
from nebctl.database.operating import Operations, table

_installation = table(Installation)


class InstallationOperations(Operations):
    def installation_id(self, suggested: str | None = None) -> str:
        """This database's installation id; a database without one takes ``suggested`` (the id kept beside
        the key file, which survives the database's loss), else a new random one, and keeps it."""
        with self._write() as connection:
            found = connection.execute(select(_installation.c.id).limit(1)).scalar()
            if found is not None:
                return str(found)
            identifier = suggested or str(uuid.uuid4())
            connection.execute(insert(_installation).values(id=identifier, created_at=self._now()))
            return identifier


def kept_installation_id(store: InstallationOperations, path: Path | None) -> str:
    """The store's installation id, kept in ``path`` too (beside the key file): a database made again after
    its loss takes the id back from there, so ``nebctl recover`` finds its own objects. A file that cannot be
    written costs only that; the id in the database is still this installation's."""
    suggested = None
    if path is not None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            suggested = path.read_text(encoding="ascii").strip() or None
    identifier = store.installation_id(suggested)
    if path is not None and suggested != identifier:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(identifier + "\n", encoding="ascii")
    return identifier
