"""Prices of cloud instances per hour, from the config file's ``pricing.instance_hour``, for showback.

A VM on a cloud host is billed by its instance type, not by its vCPUs and memory as a local VM is (``pricing``'s
``vcpu_hour``, ``memory_gib_hour``). The config gives a price per instance-hour by ``TYPE``, or by
``REGION.TYPE`` for one region (it wins over the first)::

    pricing:
      vcpu_hour: 0.01
      instance_hour:
        t3.small: 0.0208
        eu-west-1.t3.large: 0.0912

Pure: ``pricing`` (showback) calls ``instance_hour_price`` with the book's ``instance_hour`` (the config's
``pricing.instance_hour``), a placement record's instance type and its host's region (``region_of``).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

PREFIX = ""


def region_of(uri: str) -> str | None:
    """The region of a cloud host's URI (``ec2://eu-west-1`` -> ``eu-west-1``), None for other hosts."""
    parts = urlsplit(uri)
    return parts.netloc or None if parts.scheme == "ec2" else None


def instance_hour_price(pricing: Mapping[str, float], instance_type: str, region: str | None = None) -> float | None:
    """The price of one hour of ``instance_type`` (in ``region`` when given); None when the config has none."""
    if region is not None:
        regional = pricing.get(f"{PREFIX}{region}.{instance_type}")
        if regional is not None:
            return regional
    return pricing.get(f"{PREFIX}{instance_type}")


def cost(pricing: Mapping[str, float], instance_type: str, hours: float, region: str | None = None) -> float | None:
    """What ``hours`` of one instance of ``instance_type`` cost; None when its price is not configured."""
    price = instance_hour_price(pricing, instance_type, region)
    return None if price is None else price * hours
