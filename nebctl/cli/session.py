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
from nebctl.controller.kept_observations import ObservationKeeper
from nebctl.controller.kept_traces import KeptTraces
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


def cache_directory(app: AppContext) -> Path | None:
    """Where ``diff``, ``apply`` and ``import`` keep the checked manifest files (``schemas.caching``, in
    ``manifests/``), ``diff`` and ``apply`` their kept plans (in ``plans/``) and plan traces (in ``traces/``), and
    every plan its observation of the hosts (in ``observations/``): under the state directory, unless the
    configuration turns it off (``manifest_cache: false``)."""
    state_dir = app.settings.state_dir
    return state_dir / "cache" if state_dir is not None and app.settings.manifest_cache else None


def open_controller(app: AppContext) -> Controller:
    """The controller of a command that plans: its observation is kept for the next command, which reuses it
    while the drivers vouch that the hosts are as observed (``controller.kept_observations``), and so is the trace
    of its plan, from which the next plan redoes only what moved (``controller.kept_traces``)."""
    cache = cache_directory(app)
    kept = (
        ObservationKeeper(cache / "observations", database=app.db_url, max_age=app.settings.observation_max_age)
        if cache is not None
        else None
    )
    return Controller(
        store=open_store(app),
        registry=open_registry(app),
        settings=app.settings,
        installation_file=installation_file(app),
        observations=kept,
        traces=KeptTraces(cache / "traces", database=app.db_url) if cache is not None else None,
    )
