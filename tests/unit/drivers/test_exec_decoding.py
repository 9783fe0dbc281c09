"""``exec.decoding``: an external program's integers are taken within the 64-bit range only, the range nebctl reads
back exactly from the JSON it keeps (``core.jsontext``); outside it, the result is refused, naming the field."""

from __future__ import annotations

import pytest

from nebctl.drivers.exec.decoding import from_payload
from nebctl.drivers.types import VolumeInfo

VOLUME = {"name": "v", "path": "/p/v", "capacity": 10, "allocation": 0, "format": "qcow2"}


def test_integers_at_the_ends_of_the_range_are_taken() -> None:
    volume = from_payload(VolumeInfo, {**VOLUME, "capacity": 2**64 - 1, "allocation": -(2**63)})
    assert (volume.capacity, volume.allocation) == (2**64 - 1, -(2**63))


@pytest.mark.parametrize("capacity", [2**64, -(2**63) - 1, 10**30])
def test_an_integer_outside_the_range_is_refused_naming_the_field(capacity: int) -> None:
    with pytest.raises(ValueError, match=rf"result\.capacity: {capacity} is outside the 64-bit range"):
        from_payload(VolumeInfo, {**VOLUME, "capacity": capacity})
