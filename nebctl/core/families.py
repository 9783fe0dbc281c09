"""The driver families: which kind of driver an action calls (virtualization, storage, network, ...).

A plan's actions name their family (``plans.Action.family``), the settings key timeouts by it, and the driver
registry files each driver under one. Shared by every layer, so it lives at the bottom.
"""

from __future__ import annotations

from enum import StrEnum


class Family(StrEnum):
    VIRTUALIZATION = "virtualization"
    STORAGE = "storage"
    NETWORK = "network"
    MONITORING = "monitoring"
    AUTHORIZATION = "authorization"
    MARKETPLACE = "marketplace"
    HOOKS = "hooks"
