"""Shared plumbing of the commands that plan and apply: the stack name, the driver registry, the controller.

Used by ``cli.reconciling`` (diff, apply, destroy) and ``cli.inspecting`` (get, describe, events).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import click

from nebctl.cli.app import AppContext, CliError
from nebctl.cli.database import installation_file, open_store
from nebctl.controller.applying import Controller
from nebctl.core.keys import ResourceKey, is_valid_name
from nebctl.drivers.registry import Registry, build_registry


def default_stack(paths: Sequence[str]) -> str:
    """The stack of a run: the name of the first ``-f`` path (a directory's name, a file's stem), made valid."""
    first = Path(paths[0]).resolve()
    name = first.stem if first.is_file() else first.name
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return cleaned or "default"


def check_stack(stack: str) -> str:
    if not is_valid_name(stack):
        raise CliError(f"invalid stack name {stack!r}: use lower-case letters, digits and '-'")
    return stack


def parse_keys(texts: Sequence[str], option: str) -> frozenset[ResourceKey]:
    keys = set()
    for text in texts:
        try:
            keys.add(ResourceKey.parse(text))
        except ValueError as error:
            raise CliError(f"{option} {text}: {error}") from None
    return frozenset(keys)


def open_registry(app: AppContext) -> Registry:
    def factory() -> Registry:
        registry = build_registry(app.settings)
        click.get_current_context().call_on_close(registry.close)
        return registry

    registry: Registry = app.resource("registry", factory)
    return registry


def open_controller(app: AppContext) -> Controller:
    return Controller(
        store=open_store(app),
        registry=open_registry(app),
        settings=app.settings,
        installation_file=installation_file(app),
    )
