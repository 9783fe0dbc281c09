"""How the service records what it does: each event goes to the event log (the database) and to the log, as
one line (text or JSON, as ``--log-format`` says) with its fields.

Events carry names, states, counts and manifest diagnostics, never a spec or a secret: the same rule as the
apply journal's events.
"""

from __future__ import annotations

import logging
from typing import Any

from nebctl.core.keys import ResourceKey
from nebctl.database.errors import DatabaseError
from nebctl.database.records import EventRecord, Severity
from nebctl.database.store import Store

log = logging.getLogger("nebctl.serve")

_LEVELS = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING, Severity.ERROR: logging.ERROR}


class EventSink:
    def __init__(self, store: Store) -> None:
        self.store = store

    def emit(
        self,
        type: str,
        message: str,
        *,
        severity: Severity = Severity.INFO,
        key: ResourceKey | None = None,
        stack: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        kind, namespace, name = key if key is not None else (None, None, None)
        record = EventRecord(
            type=type,
            message=message,
            severity=severity,
            kind=kind,
            namespace=namespace,
            name=name,
            stack=stack,
            data=data or {},
        )
        fields: dict[str, Any] = {"event": type}
        if stack:
            fields["stack"] = stack
        if key is not None:
            fields["resource"] = str(key)
        fields.update(data or {})
        log.log(_LEVELS.get(severity, logging.INFO), "%s: %s", type, message, extra={"fields": fields})
        try:
            self.store.add_event(record)
        except DatabaseError as error:
            # The log line above still tells; the next sync writes the status again.
            log.error("cannot record event %s: %s", type, error)
