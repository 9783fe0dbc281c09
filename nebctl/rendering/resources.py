"""Resources as ``nebctl get`` and ``nebctl describe`` show them: the record, and what was last observed beside it.

Pure functions of the store's records, the time and a time zone (handed in, so golden files can fix them): the
CLI reads the database and prints what these return. Three readers, three forms:

- ``record_view``: the machine form of ``get -o json|yaml``; exact values (byte counts as integers, aware UTC
  times in ISO 8601), secrets masked;
- ``status_cell``/``observed_cell``: the table of ``get``; the record's status, with the live state beside it
  when they differ (``running → stopped (drift, 3m ago)``);
- ``describe``: the page of ``describe``; YAML with quantities as a manifest writes them (``2Gi``), times in
  local time and UTC, the last observation and its drift.

An observation made before the record last changed (an apply changed the resource after probing it) no longer
tells the resource's state: it is shown with its time, but no drift is read from it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from ruamel.yaml import YAML

from nebctl.controller.observing import seen_as_recorded
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.quantities import format_duration, format_quantity
from nebctl.database.records import ActionRecord, EventRecord, ObservationRecord, ResourceRecord
from nebctl.reconcilers.identity import deposed_of
from nebctl.rendering.values import BYTE_FIELDS

SENSITIVE = "(sensitive)"
# Keys whose values are secrets wherever they appear in a spec: cloud-init data, a hook's environment.
SECRET_KEYS = frozenset({"cloudInit", "env"})
# Seconds that a manifest writes as durations (a hook's ``timeout: 10s``, a Marketplace's ``refresh: 1h``).
DURATION_FIELDS = frozenset({"timeout", "refresh"})
# The kinds monitoring probes one by one; the others' drift is found when an action on them fails.
OBSERVED_KINDS = frozenset({Kind.VIRTUAL_MACHINE, Kind.HOST})
# A host's observed state that agrees with its record.
_HOST_AGREES = "online"
_NOT_ANSWERING = frozenset({"unknown", "error"})


def masked(spec: Any) -> Any:
    """A spec fit to print: secrets replaced by ``(sensitive)``."""
    if isinstance(spec, dict):
        return {k: SENSITIVE if k in SECRET_KEYS and v else masked(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [masked(item) for item in spec]
    return spec


def readable(value: Any, key: str = "") -> Any:
    """A masked spec as a person reads it: byte counts as quantities (``2Gi``), whole seconds as durations
    (``10s``), unset (None) fields left out."""
    if isinstance(value, dict):
        shown = {k: readable(v, k) for k, v in value.items() if v is not None}
        return {k: v for k, v in shown.items() if not (isinstance(v, dict) and not v and value[k])}
    if isinstance(value, list):
        return [readable(item, key) for item in value]
    if type(value) is int and key in BYTE_FIELDS and value:  # bool is an int; floats are ratios
        spelled = format_quantity(value)
        return spelled if spelled != str(value) else value  # a byte count no unit divides stays a number
    if type(value) in (int, float) and key in DURATION_FIELDS and value >= 1 and float(value).is_integer():
        return format_duration(value)
    return value


def age(moment: datetime | None, now: datetime) -> str:
    """``42s``, ``3m``, ``5h``, ``2d``: how long ago ``moment`` was (``-`` for none)."""
    if moment is None:
        return "-"
    seconds = max(0, int((now - _aware(moment)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def timestamp(moment: datetime | None, tz: tzinfo) -> str:
    """``2026-12-03 05:27:04 CET (04:27:04 UTC)``: local time, then UTC (the UTC date only when it differs)."""
    if moment is None:
        return "-"
    utc = _aware(moment).astimezone(UTC)
    local = utc.astimezone(tz)
    if local.utcoffset() == utc.utcoffset():
        return f"{utc:%Y-%m-%d %H:%M:%S} UTC"
    zone = local.tzname() or local.strftime("%z")
    other = f"{utc:%H:%M:%S}" if utc.date() == local.date() else f"{utc:%Y-%m-%d %H:%M:%S}"
    return f"{local:%Y-%m-%d %H:%M:%S} {zone} ({other} UTC)"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- the observation judged against the record -----------------------------------------------------------------


def observation_for(
    record: ResourceRecord, observations: Mapping[ResourceKey, ObservationRecord]
) -> ObservationRecord | None:
    """The last observation of ``record``: its own, or for a VM without one (seen as recorded), its host's."""
    key = ResourceKey(record.kind, record.namespace, record.name)
    own = observations.get(key)
    if own is not None or record.kind is not Kind.VIRTUAL_MACHINE:
        return own
    host = record.host or (record.applied or {}).get("host")
    row = observations.get(ResourceKey(Kind.HOST, "default", str(host))) if host else None
    return seen_as_recorded(record, key, row) if row is not None else None


def is_current(record: ResourceRecord, observation: ObservationRecord | None) -> bool:
    """Whether ``observation`` still tells the state of ``record``: made at or after its last change."""
    if observation is None or observation.observed_at is None:
        return False
    if record.updated_at is None:
        return True
    return _aware(observation.observed_at) >= _aware(record.updated_at)


def _agrees(record: ResourceRecord, observation: ObservationRecord) -> bool:
    expected = _HOST_AGREES if record.kind is Kind.HOST else record.status
    return observation.state == expected and not observation.drift


def status_cell(record: ResourceRecord, observation: ObservationRecord | None, now: datetime) -> str:
    """The record's status, and the live state beside it when they differ: ``running → stopped (drift, 3m
    ago)``, ``running (drift, 3m ago)`` (moved or resized), ``running → unknown (host not answering, 1m ago)``."""
    if observation is None or not is_current(record, observation) or _agrees(record, observation):
        return record.status
    notes = []
    if observation.drift:
        notes.append("drift")
    if observation.state in _NOT_ANSWERING:
        notes.append("host not answering")
    notes.append(f"{age(observation.observed_at, now)} ago")
    shown = record.status
    if observation.state != record.status and not (record.kind is Kind.HOST and observation.state == _HOST_AGREES):
        shown = f"{record.status} → {observation.state}"
    return f"{shown} ({', '.join(notes)})"


def observed_cell(record: ResourceRecord, observation: ObservationRecord | None, now: datetime) -> str:
    """When the live state beside the record was seen: ``12s ago``, ``not yet``, ``-`` for unprobed kinds."""
    if observation is None:
        return "not yet" if record.kind in OBSERVED_KINDS else "-"
    when = f"{age(observation.observed_at, now)} ago"
    return when if is_current(record, observation) else f"{when}, before the last change"


def observation_view(observation: ObservationRecord | None) -> dict[str, Any] | None:
    """The machine form of an observation (``get -o json|yaml``): exact values, the time in ISO 8601 UTC."""
    if observation is None:
        return None
    moment = observation.observed_at
    return {
        "state": observation.state,
        "observedAt": _aware(moment).astimezone(UTC).isoformat() if moment else None,
        "drift": list(observation.drift),
        **{k: v for k, v in observation.details.items() if k != "drift"},
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, never cut (kubectl's plain style); ends with a
    newline. Widths count characters, which is right for the text nebctl prints (names are ASCII, ``→`` is one)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = []
    for row in [headers, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


# --- get -o json|yaml ------------------------------------------------------------------------------------------


def record_view(record: ResourceRecord, observation: ObservationRecord | None = None) -> dict[str, Any]:
    """One resource for scripts: the record as stored (exact numbers), secrets masked, and its observation."""
    # The applied document holds the resource's labels and annotations under ``metadata``: shown apart.
    applied = dict(record.applied) if record.applied is not None else None
    metadata = applied.pop("metadata", {}) if applied is not None else {}
    return {
        "kind": record.kind.value,
        "namespace": record.namespace,
        "name": record.name,
        "stack": record.stack,
        "labels": metadata.get("labels", {}),
        "annotations": metadata.get("annotations", {}),
        "status": record.status,
        "host": record.host,
        "generation": record.generation,
        "live": masked(record.live),
        "spec": masked(applied),
        "observed": observation_view(observation),
        "observationCurrent": is_current(record, observation),
        "createdAt": _aware(record.created_at).isoformat() if record.created_at else None,
        "updatedAt": _aware(record.updated_at).isoformat() if record.updated_at else None,
    }


# --- describe --------------------------------------------------------------------------------------------------


def describe(
    record: ResourceRecord,
    observation: ObservationRecord | None,
    *,
    actions: Sequence[ActionRecord],
    events: Sequence[EventRecord],
    now: datetime,
    tz: tzinfo,
) -> str:
    """The ``describe`` page of one resource, ending with a newline. ``actions``: its newest journalled actions
    (newest apply first); ``events``: its newest events, oldest first."""
    key = ResourceKey(record.kind, record.namespace, record.name)
    applied = dict(record.applied) if record.applied is not None else None
    metadata = applied.pop("metadata", {}) if applied is not None else {}
    lines = [
        _field("Name", str(key)),
        _field("Namespace", record.namespace),
        _field("Stack", record.stack),
        _field("Status", status_cell(record, observation, now)),
    ]
    lines += _observed(record, observation, now, tz)
    if record.kind is Kind.VIRTUAL_MACHINE or record.host:
        lines.append(_field("Host", record.host or "-"))
    lines += [
        _field("Generation", str(record.generation)),
        _field("Created", timestamp(record.created_at, tz)),
        _field("Updated", timestamp(record.updated_at, tz)),
        _field("Labels", _pairs(metadata.get("labels", {}))),
        _field("Annotations", _pairs(metadata.get("annotations", {}))),
    ]
    owner = deposed_of(key, record.live)
    if owner is not None:
        deposed = f"the old VM of {owner}, replaced create-first; deleted once its replacement runs"
        lines.append(_field("Deposed", deposed))
    lines.append("Spec (last applied):")
    lines += _yaml(readable(masked(applied)) if applied is not None else None, "not applied yet")
    lines.append("Live:")
    lines += _yaml(readable(masked(dict(record.live))), "nothing recorded")
    lines.append("Last actions:")
    lines += [_action_line(action) for action in actions] or ["  (none)"]
    lines.append("Events:")
    lines += [_event_line(event, tz) for event in events] or ["  (none)"]
    return "\n".join(lines) + "\n"


def _field(name: str, value: str) -> str:
    """``Name:        value``; an empty name continues the field above."""
    return f"{name + ':' if name else '':<13}{value}"


def _pairs(mapping: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(mapping.items())) or "-"


def _observed(record: ResourceRecord, observation: ObservationRecord | None, now: datetime, tz: tzinfo) -> list[str]:
    if record.kind not in OBSERVED_KINDS:
        noun = record.kind.value
        return [_field("Observed", f"not probed one by one (a {noun}'s drift shows when an action on it fails)")]
    if observation is None:
        return [_field("Observed", "nothing yet (diff, apply and the service record what they probe)")]
    details = observation.details
    seen = observation.state
    if record.kind is Kind.VIRTUAL_MACHINE and details.get("host"):
        preposition = "from" if observation.state in ("absent", "unknown") else "on"
        seen += f" {preposition} {details['host']}"
    if record.kind is Kind.VIRTUAL_MACHINE and details.get("vcpu"):
        seen += f", {details['vcpu']} vCPU, {format_quantity(int(details.get('memory') or 0))} memory"
    if record.kind is Kind.HOST and observation.state != "error":
        seen += (
            f", {details.get('cpus', 0)} CPUs, {format_quantity(int(details.get('memory') or 0))} memory, "
            f"load {float(details.get('load') or 0):.2f}"
        )
    if details.get("error"):
        seen += f": {details['error']}"
    when = f"{timestamp(observation.observed_at, tz)}, {age(observation.observed_at, now)} ago"
    lines = [_field("Observed", seen), _field("Observed at", when)]
    if not is_current(record, observation):
        lines.append(_field("", "before the record last changed: what was seen then may no longer hold"))
    elif observation.drift:
        lines += [_field("Drift" if index == 0 else "", item) for index, item in enumerate(observation.drift)]
    return lines


def _yaml(value: Any, empty: str) -> list[str]:
    """``value`` as block YAML, every line indented by two spaces (the whole text dumped once, then split)."""
    if value is None or value == {}:
        return [f"  ({empty})"]
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096  # long expressions and URIs stay on one line
    buffer = io.StringIO()
    yaml.dump(value, buffer)
    return [f"  {line}" if line else line for line in buffer.getvalue().splitlines()]


def _action_line(action: ActionRecord) -> str:
    why = f": {action.error}" if action.error else ""
    return f"  #{action.apply_id} {action.action_id} {action.state} (attempts {action.attempts}){why}"


def _event_line(event: EventRecord, tz: tzinfo) -> str:
    moment = _aware(event.time).astimezone(tz) if event.time else None
    when = f"{moment:%Y-%m-%d %H:%M:%S} {moment.tzname() or moment.strftime('%z')}" if moment else "-"
    return f"  {when}  {event.severity:<7} {event.type:<20} {event.message}"
