"""nebctl's state database (docs/database.md): the ``Store``, its records and its errors.

Callers import from here: ``from nebctl.database import Store, ResourceRecord, ActionRecord``. The tables are
in ``models``, the migrations in ``migrations``, the lock protocol in ``locking``.
"""

from __future__ import annotations

from nebctl.database.errors import (
    DatabaseError,
    LockLost,
    LockNotObtained,
    NotFound,
    SchemaOutdated,
    SchemaTooNew,
)
from nebctl.database.locking import LockLease
from nebctl.database.records import (
    AccessRuleRecord,
    ActionRecord,
    ActionState,
    ApplyRecord,
    ApplyState,
    EventRecord,
    HistoryRecord,
    HookRunRecord,
    HostSampleRecord,
    LeaseRecord,
    LockRecord,
    ObservationRecord,
    QuotaRecord,
    ResourceRecord,
    Severity,
    ShowbackRow,
    TokenRecord,
    UserRecord,
    VMSampleRecord,
)
from nebctl.database.store import Batch, Store

__all__ = [
    "AccessRuleRecord",
    "ActionRecord",
    "ActionState",
    "ApplyRecord",
    "ApplyState",
    "Batch",
    "DatabaseError",
    "EventRecord",
    "HistoryRecord",
    "HookRunRecord",
    "HostSampleRecord",
    "LeaseRecord",
    "LockLease",
    "LockLost",
    "LockNotObtained",
    "LockRecord",
    "NotFound",
    "ObservationRecord",
    "QuotaRecord",
    "ResourceRecord",
    "SchemaOutdated",
    "SchemaTooNew",
    "Severity",
    "ShowbackRow",
    "Store",
    "TokenRecord",
    "UserRecord",
    "VMSampleRecord",
]
