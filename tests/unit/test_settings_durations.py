"""Settings that are durations take a number of seconds or a duration such as ``2m``, and refuse a negative one."""

from __future__ import annotations

import pytest

from nebctl.core.quantities import QuantityError
from nebctl.core.settings import Settings, parse_settings


@pytest.mark.parametrize(("given", "seconds"), [("2m", 120.0), ("90s", 90.0), (15, 15.0), ("0s", 0.0)], ids=str)
def test_the_age_of_a_kept_observation_is_a_duration(given: object, seconds: float) -> None:
    assert parse_settings({"observation_max_age": given}).observation_max_age == seconds


def test_by_default_a_kept_observation_serves_a_minute() -> None:
    assert Settings().observation_max_age == 60.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"observation_max_age": -1}, "observation_max_age: duration -1 is negative"),
        ({"shutdown_timeout": "soon"}, "shutdown_timeout: invalid duration 'soon'"),
        ({"database": {"busy_timeout": "-2s"}}, "database.busy_timeout: invalid duration '-2s'"),
        ({"timeouts": {"virtualization.deploy": True}}, "timeouts.virtualization.deploy: expected a duration"),
    ],
)
def test_a_bad_duration_is_refused_by_its_settings_name(data: dict[str, object], message: str) -> None:
    with pytest.raises(QuantityError) as refused:
        parse_settings(data)
    assert str(refused.value).startswith(message)
