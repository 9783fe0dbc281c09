"""``nebctl validate`` (placeholder until the loader lands; the loader issue replaces this module)."""

from __future__ import annotations

import click

commands: list[click.Command] = []
