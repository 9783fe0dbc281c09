"""The lazy command table of ``nebctl`` agrees with the command modules: every listed command resolves, and
every command a module defines is listed (a command left out would silently not exist)."""

from __future__ import annotations

import importlib

import click
import pytest
from click.testing import CliRunner

from nebctl.controller.cli import COMMAND_MODULES, COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_listed_command_resolves(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert command is not None and command.name == name


def test_every_defined_command_is_listed() -> None:
    defined = {
        command.name for module in COMMAND_MODULES for command in importlib.import_module(module).commands
    }
    assert defined == set(COMMANDS)


def test_help_lists_commands_and_every_command_has_help() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output
        sub = CliRunner().invoke(main, [name, "--help"])
        assert sub.exit_code == 0, sub.output
        assert "Usage: " in sub.output


def test_unknown_command_is_an_error() -> None:
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command" in result.output
