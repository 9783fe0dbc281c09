"""The ``exec`` driver: drivers as external programs, the OpenNebula way (SPEC section 8). Placeholder."""

from __future__ import annotations

DRIVER_CLASSES: tuple[type[object], ...] = ()
