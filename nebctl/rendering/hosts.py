"""Hosts as ``nebctl hosts -o json`` and the API's ``GET /api/v1/hosts`` show them: state, capacity, reserved,
overcommit, allocation, usage, disk, labels and custom probe attributes, with times in ISO 8601."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nebctl.accounting.usage import iso
from nebctl.controller.metrics import HostView


def jsonable(value: Any) -> Any:
    """``value`` with its times in ISO 8601 (UTC), ready for ``json.dumps``."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def host_document(view: HostView) -> dict[str, Any]:
    def capacity(part: Any) -> dict[str, float]:
        return {
            "total": part.total,
            "reserved": part.reserved,
            "overcommit": part.overcommit,
            "schedulable": part.schedulable,
            "allocated": part.allocated,
            "free": part.free,
        }

    document: dict[str, Any] = jsonable(
        {
            "name": view.name,
            "state": view.state,
            "lastProbe": view.last_probe,
            "error": view.error,
            "vms": view.vms,
            "cpu": {**capacity(view.cpu), "load": view.cpu_load},
            "memory": {**capacity(view.memory), "used": view.memory_used},
            "disk": {
                "total": view.disk_total,
                "used": view.disk_used,
                "free": None if view.disk_total is None or view.disk_used is None else view.disk_total - view.disk_used,
            },
            "labels": dict(view.labels),
            "attributes": dict(view.attributes),
        }
    )
    return document
