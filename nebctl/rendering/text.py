"""The plan as people read it, in the style of Terraform's plan.

``nebctl diff`` and ``nebctl apply`` (before asking for confirmation) print ``render_text``. Colour is plain ANSI
escape codes, added only when the caller asks (the CLI asks on a terminal only); without it the text has no
escape code at all, so it can be piped, logged and compared with golden files. Sensitive fields print as
``(sensitive)``. Pure function; it builds one list of lines, because a 100,000-resource plan prints millions of
them and string concatenation per line would be quadratic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nebctl.core.fields import Effect, FieldChange
from nebctl.core.plans import ChangeType, DriftItem, Plan, ResourceChange
from nebctl.rendering.values import (
    SENSITIVE,
    VERBS,
    address,
    block_name,
    format_value,
    paused_gc,
    shown_fields,
)

HEADER = "nebctl will perform the following actions:"
NO_CHANGES = "No changes. Your infrastructure matches the configuration."
DRIFT_HEADER = "Changed outside nebctl:"
WARNINGS_HEADER = "Warnings:"

_FIELD_INDENT = "      "
_COMMENT_INDENT = "        "


@dataclass(frozen=True)
class _Palette:
    """ANSI codes, or empty strings: the text is built the same way with and without colour. The field-line
    marks are built once per rendering rather than once per line of a possibly huge plan."""

    green: str
    yellow: str
    red: str
    bold: str
    reset: str
    plus: str
    minus: str
    tilde: str
    forces: str


def _palette(green: str = "", yellow: str = "", red: str = "", bold: str = "", reset: str = "") -> _Palette:
    return _Palette(
        green=green,
        yellow=yellow,
        red=red,
        bold=bold,
        reset=reset,
        plus=f"{green}+{reset}",
        minus=f"{red}-{reset}",
        tilde=f"{yellow}~{reset}",
        forces=f" {red}# forces replacement{reset}",
    )


_PLAIN = _palette()
_ANSI = _palette(green="\x1b[32m", yellow="\x1b[33m", red="\x1b[31m", bold="\x1b[1m", reset="\x1b[0m")


def render_text(plan: Plan, *, color: bool, collapse_after: int | None = None) -> str:
    """The plan as text, ending with a newline (the CLI echoes it as it is).

    ``collapse_after``: when set, only the first that many creates of each kind are shown in full and the rest
    are counted in one line (for very large plans); by default every change is shown.
    """
    style = _ANSI if color else _PLAIN
    lines: list[str] = []
    changes = [change for change in plan.changes if change.is_change]
    if changes:
        lines += [HEADER, ""]
        with paused_gc():
            _changes(lines, changes, style, collapse_after)
    _drift(lines, plan, style)
    _warnings(lines, plan.warnings, style)
    if plan.has_changes:
        lines.append(f"{style.bold}Plan:{style.reset} {str(plan.summary).removeprefix('Plan: ')}")
    else:
        lines.append(f"{style.green}{style.bold}{NO_CHANGES}{style.reset}")
    lines.append("")
    return "\n".join(lines)


def _changes(lines: list[str], changes: Sequence[ResourceChange], style: _Palette, collapse_after: int | None) -> None:
    shown: dict[str, int] = {}
    hidden_kind, hidden = "", 0
    for change in changes:
        kind = change.key.kind.short
        if hidden and kind != hidden_kind:
            _hidden_line(lines, hidden, hidden_kind)
            hidden = 0
        if collapse_after is not None and change.type is ChangeType.CREATE:
            count = shown[kind] = shown.get(kind, 0) + 1
            if count > collapse_after:
                hidden_kind, hidden = kind, hidden + 1
                continue
        _block(lines, change, style)
    if hidden:
        _hidden_line(lines, hidden, hidden_kind)


def _hidden_line(lines: list[str], count: int, kind: str) -> None:
    lines += [f"  # ... and {count:,} more {kind} to be created, not shown", ""]


def _comment(change: ResourceChange) -> str:
    notes = []
    if change.type is ChangeType.UPDATE and change.restart:
        notes.append("restart required")
    if change.create_first:
        notes.append("the new VM is created before the old one is destroyed")
    if change.reason:
        notes.append(change.reason)
    suffix = f" ({'; '.join(notes)})" if notes else ""
    return f"  # {address(change.key)} {VERBS[change.type]}{suffix}"


def _symbol(change: ResourceChange, style: _Palette) -> str:
    if change.type is ChangeType.CREATE:
        return f"  {style.green}+{style.reset}"
    if change.type is ChangeType.UPDATE:
        return f"  {style.yellow}~{style.reset}"
    if change.type is ChangeType.REPLACE and change.create_first:  # Terraform's sign for the same order
        return f"{style.green}+{style.reset}/{style.red}-{style.reset}"
    if change.type is ChangeType.REPLACE:
        return f"{style.red}-{style.reset}/{style.green}+{style.reset}"
    return f"  {style.red}-{style.reset}"


def _placement(change: ResourceChange) -> str | None:
    if change.host is None:
        return None
    if change.previous_host and change.previous_host != change.host:
        return f"# moves from {change.previous_host} to {change.host}"
    if change.type in (ChangeType.CREATE, ChangeType.REPLACE):
        return f"# placed on host {change.host}"
    return f"# on host {change.host}"


def _block(lines: list[str], change: ResourceChange, style: _Palette) -> None:
    lines.append(f"{style.bold}{_comment(change)}{style.reset}")
    lines.append(f"{_symbol(change, style)} {change.key.kind.short} {block_name(change.key)} {{")
    placement = _placement(change)
    if placement is not None:
        lines.append(_COMMENT_INDENT + placement)
    fields = shown_fields(change.fields)
    if fields:
        # Terraform aligns the "=" of a block's attributes; so do we, within one block.
        width = max(len(field.path) for field in fields)
        for field in fields:
            lines.append(_field_line(field, change.type, width, style))
    if change.unchanged:
        noun = "attribute" if change.unchanged == 1 else "attributes"
        lines.append(f"{_COMMENT_INDENT}# ({change.unchanged} unchanged {noun} hidden)")
    lines += ["    }", ""]


def _field_line(field: FieldChange, kind: ChangeType, width: int, style: _Palette) -> str:
    path = field.path
    sensitive = field.sensitive
    if kind is ChangeType.CREATE or field.added:
        symbol = style.plus
        value = SENSITIVE if sensitive else format_value(path, field.after)
    elif kind is ChangeType.DELETE or field.removed:
        symbol = style.minus
        value = f"{SENSITIVE if sensitive else format_value(path, field.before)} -> null"
    else:
        symbol = style.tilde
        # For a secret, even "(sensitive) -> (sensitive)" would say nothing more.
        value = SENSITIVE if sensitive else f"{format_value(path, field.before)} -> {format_value(path, field.after)}"
    line = f"{_FIELD_INDENT}{symbol} {path.ljust(width)} = {value}"
    if kind is ChangeType.REPLACE and field.effect is Effect.REPLACE:
        line += style.forces
    return line


def _drift_line(item: DriftItem) -> str:
    if item.correction is None:
        return f"  # {address(item.key)}: {item.message}; nebctl leaves it alone"
    return f"  # {address(item.key)} {item.message}; {item.correction}"


def _drift(lines: list[str], plan: Plan, style: _Palette) -> None:
    items = [item for change in plan.changes for item in change.drift] + list(plan.drift)
    if not items:
        return
    lines.append(f"{style.bold}{DRIFT_HEADER}{style.reset}")
    lines += [_drift_line(item) for item in items]
    lines.append("")


def _warnings(lines: list[str], warnings: Sequence[str], style: _Palette) -> None:
    if not warnings:
        return
    lines.append(f"{style.yellow}{style.bold}{WARNINGS_HEADER}{style.reset}")
    lines += [f"  - {warning}" for warning in warnings]
    lines.append("")
