"""The small rules of the service's replicas: which writers' lock holder a new leader may take over, and the
lease timings the configuration accepts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from nebctl.controller.serving.service import superseded
from nebctl.core.service import ServeSettings
from nebctl.database.records import LockRecord


def _holder(text: str) -> LockRecord:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return LockRecord(name="writers", token="t", holder=text, host="h", pid=1, acquired_at=now, expires_at=now)


@pytest.mark.parametrize(
    ("holder", "expected"),
    [
        ("nebctl serve (stack site, replica a:1, term 3)", True),  # a former term of this stack: fenced anyway
        ("nebctl serve (stack site, replica a:1, term 4)", False),  # our own term (a sync of ours)
        ("nebctl serve (stack site, replica a:1, term 5)", False),  # a later term: we are the one superseded
        ("nebctl serve (stack other, replica a:1, term 1)", False),  # another stack's leader
        ("nebctl serve (stack site)", False),  # a service without replicas (an older nebctl)
        ("root@host:1234", False),  # a CLI apply: never taken over while it lives
    ],
)
def test_which_lock_holders_a_leader_of_term_4_takes_over(holder: str, expected: bool) -> None:
    assert superseded(_holder(holder), "site", 4) is expected


def test_lease_timings() -> None:
    defaults = ServeSettings()
    assert (defaults.lease, defaults.lease_renew, defaults.lease_retry) == (15.0, 5.0, 2.0)
    fast = ServeSettings.model_validate({"lease": "3s", "lease_renew": "1s", "lease_retry": "0.5s"})
    assert (fast.lease, fast.lease_renew, fast.lease_retry) == (3.0, 1.0, 0.5)
    with pytest.raises(ValidationError, match=r"serve.lease_renew \(5s\) must be at most half of serve.lease \(8s\)"):
        ServeSettings.model_validate({"lease": "8s"})
    with pytest.raises(ValidationError, match=r"serve.lease_retry \(20s\) must not exceed serve.lease \(15s\)"):
        ServeSettings.model_validate({"lease_retry": "20s"})
