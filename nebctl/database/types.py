"""Column types that behave the same on SQLite, MariaDB/MySQL and PostgreSQL. Used by ``database.models``.

Times are stored as naive UTC with microseconds (MySQL's DATETIME would otherwise drop the fraction, and SQLite
has no time zones) and come back as aware UTC datetimes, so callers only ever see aware values. Row ids of the
large tables are BIGINT on the servers but INTEGER on SQLite, where only INTEGER PRIMARY KEY auto-increments.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

# A 64-bit id that still auto-increments on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# JSON documents: native JSON on MySQL/MariaDB (LONGTEXT with a check on MariaDB), PostgreSQL json, text on SQLite.
Json = JSON(none_as_null=True)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in Python; naive UTC (microsecond precision) in the database."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects import mysql  # loaded by the engine already, on MySQL/MariaDB only

            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive time is ambiguous; refusing it catches the bug where it is made, not in a report later.
            raise ValueError(f"naive datetime {value!r} given to the database; pass an aware (UTC) datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)
