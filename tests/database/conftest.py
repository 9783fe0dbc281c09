"""Fixtures of the database tests: a controllable clock and a ``Store`` on each backend (see ``db_url``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from nebctl.database import Store


class FakeClock:
    """A clock the test moves by hand; the store reads it for every timestamp and lock expiry."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(db_url: str, clock: FakeClock) -> Iterator[Store]:
    opened = Store.open(db_url, clock=clock)
    try:
        yield opened
    finally:
        opened.close()
