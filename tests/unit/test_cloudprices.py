"""Prices per instance-hour from the config's pricing, as showback reads them (values worked out by hand)."""

from __future__ import annotations

import pytest

from nebctl.accounting.cloudprices import cost, instance_hour_price, region_of
from nebctl.core.settings import parse_settings

PRICING = parse_settings(
    {
        "pricing": {
            "vcpu_hour": 0.01,
            "instance_hour": {"t3.small": 0.0208, "eu-west-1.t3.small": 0.0228, "t3.large": 0.0832},
        }
    }
).pricing.instance_hour


@pytest.mark.parametrize(
    ("instance_type", "region", "price"),
    [
        ("t3.small", None, 0.0208),
        ("t3.small", "eu-west-1", 0.0228),  # the region's own price wins
        ("t3.small", "us-east-1", 0.0208),  # no price for that region: the general one
        ("t3.large", "eu-west-1", 0.0832),
        ("m5.large", None, None),  # not configured
    ],
)
def test_price_per_instance_hour(instance_type: str, region: str | None, price: float | None) -> None:
    assert instance_hour_price(PRICING, instance_type, region) == price


def test_cost_of_hours_and_the_region_of_a_cloud_uri() -> None:
    assert cost(PRICING, "t3.large", 10, region_of("ec2://eu-west-1")) == pytest.approx(0.832)
    assert cost(PRICING, "m5.large", 10) is None
    assert region_of("ec2://eu-west-1?endpoint=http://127.0.0.1:5000") == "eu-west-1"
    assert region_of("sim://kvm1") is None
