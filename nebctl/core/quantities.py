"""Parsing and formatting of the manifest's scalar units: byte quantities and durations.

Pure functions used by the manifest models (``schemas.models``), the plan renderer and the CLI options.
Quantities follow the SPEC: ``Ki Mi Gi Ti`` are binary, ``K M G T`` decimal, a bare integer is bytes.
"""

from __future__ import annotations

import re

_BINARY = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5}
_DECIMAL = {"K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "P": 1000**5}
_QUANTITY = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[KMGTP]i?)?\s*$")
_DURATION = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# Upper bound on any quantity: 1 EiB. Larger numbers are typos, and bounding them keeps arithmetic exact.
MAX_QUANTITY = 1024**6


class QuantityError(ValueError):
    """A quantity or duration that cannot be parsed; the message says what is accepted."""


def parse_quantity(value: object) -> int:
    """Return the number of bytes that ``value`` (an int or a string like ``2Gi``) stands for."""
    if isinstance(value, bool):
        raise QuantityError("expected a quantity such as 512Mi, 2Gi or 10G, got a boolean")
    if isinstance(value, int):
        number: float = value
        multiplier = 1
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        if match is None:
            raise QuantityError(
                f"invalid quantity {value!r}: expected a number with an optional unit "
                "(Ki, Mi, Gi, Ti binary; K, M, G, T decimal), such as 512Mi or 10G"
            )
        unit = match["unit"] or ""
        multiplier = _BINARY.get(unit) or _DECIMAL.get(unit) or 1
        number = float(match["number"]) if "." in match["number"] else int(match["number"])
    else:
        raise QuantityError(f"expected a quantity such as 512Mi, 2Gi or 10G, got {type(value).__name__}")
    total = number * multiplier
    if total < 0:
        raise QuantityError(f"quantity {value!r} is negative")
    if total != int(total):
        raise QuantityError(f"quantity {value!r} is not a whole number of bytes")
    if total > MAX_QUANTITY:
        raise QuantityError(f"quantity {value!r} is larger than 1Ei")
    return int(total)


def format_quantity(size: int) -> str:
    """The shortest exact binary spelling of ``size`` bytes (``2147483648`` -> ``2Gi``)."""
    for unit in ("Pi", "Ti", "Gi", "Mi", "Ki"):
        factor = _BINARY[unit]
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def parse_duration(value: object) -> float:
    """Return the seconds that ``value`` (a number of seconds or a string like ``30s``, ``5m``) stands for."""
    if isinstance(value, bool):
        raise QuantityError("expected a duration such as 30s or 5m, got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise QuantityError(f"invalid duration {value!r}: expected a number with a unit (ms, s, m, h, d)")
        seconds = float(match["number"]) * _DURATION_UNITS[match["unit"] or "s"]
    else:
        raise QuantityError(f"expected a duration such as 30s or 5m, got {type(value).__name__}")
    if seconds < 0:
        raise QuantityError(f"duration {value!r} is negative")
    return seconds


def format_duration(seconds: float) -> str:
    """A short spelling of ``seconds`` for humans (``90`` -> ``1m30s``)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"
