"""The plan as a stable JSON document for tools: ``nebctl diff -o json`` and the body of a saved plan file.

The shape is documented field by field in ``docs/plan-json.md`` (with a JSON Schema beside it,
``docs/plan-json.schema.json``); changing it means a new ``format_version``. Values are machine values (byte
counts as integers, not ``2Gi``). The values of sensitive fields are replaced by null and flagged, so the
document can be stored, sent to a CI log or attached to a review without leaking a secret. Pure function.
"""

from __future__ import annotations

from typing import Any

from nebctl.core.fields import FieldChange
from nebctl.core.plans import Action, DriftItem, Plan, ResourceChange
from nebctl.rendering.values import address, paused_gc, shown_fields

FORMAT_VERSION = "1"


def render_json(plan: Plan) -> dict[str, Any]:
    """The plan as plain JSON data (dicts, lists, strings, numbers, booleans and null), ready for json.dumps."""
    with paused_gc():
        return _document(plan)


def _document(plan: Plan) -> dict[str, Any]:
    needs = plan.dependencies()
    summary = plan.summary
    return {
        "format_version": FORMAT_VERSION,
        "stack": plan.stack,
        "fingerprint": plan.fingerprint,
        "has_changes": plan.has_changes,
        "summary": {"add": summary.add, "change": summary.change, "destroy": summary.destroy},
        "resource_changes": [_change(change) for change in plan.changes],
        "drift": [_drift(item) for item in plan.drift],
        "warnings": list(plan.warnings),
        "actions": [_action(action, needs.get(action.id, [])) for action in plan.actions],
    }


def _change(change: ResourceChange) -> dict[str, Any]:
    key = change.key
    return {
        "address": address(key),
        "kind": key.kind.value,
        "namespace": key.namespace,
        "name": key.name,
        "type": change.type.value,
        "restart": change.restart,
        "create_first": change.create_first,
        "host": change.host,
        "previous_host": change.previous_host,
        "reason": change.reason or None,
        "fields": [_field(field) for field in shown_fields(change.fields)],
        "unchanged": change.unchanged,
        "drift": [_drift(item) for item in change.drift],
    }


def _field(field: FieldChange) -> dict[str, Any]:
    return {
        "path": field.path,
        "before": None if field.sensitive else field.before,
        "after": None if field.sensitive else field.after,
        "effect": field.effect.value,
        "sensitive": field.sensitive,
        "why": field.why or None,
    }


def _drift(item: DriftItem) -> dict[str, Any]:
    return {"address": address(item.key), "message": item.message, "correction": item.correction}


def _action(action: Action, depends_on: list[str]) -> dict[str, Any]:
    return {
        "id": action.id,
        "resource": address(action.key),
        "family": action.family.value,
        "operation": action.operation,
        "host": action.host,
        "params": dict(action.params),
        "description": action.description,
        "depends_on": sorted(depends_on),
    }
