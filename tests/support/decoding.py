"""Counting the records decoded from their rows (``database.record_rows``), for the tests that a path reads back
only the records it needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from nebctl.database import record_rows
from nebctl.database.records import ResourceRecord


def decoded_records(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the records decoded from now on, in order (each record still decoded as before)."""
    decoded: list[str] = []
    real = record_rows.record_of

    def counted(values: Sequence[Any]) -> ResourceRecord:
        decoded.append(values[2])
        return real(values)

    monkeypatch.setattr(record_rows, "record_of", counted)
    return decoded
