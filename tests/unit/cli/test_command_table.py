"""The lazy command table of ``nebctl`` agrees with the command modules: every listed command resolves, and
every command a module defines is listed (a command left out would silently not exist)."""

from __future__ import annotations

import gc
import importlib
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from nebctl.cli import COMMAND_MODULES, COMMANDS, main
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_listed_command_resolves(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert command is not None and command.name == name


def test_every_defined_command_is_listed() -> None:
    defined = {command.name for module in COMMAND_MODULES for command in importlib.import_module(module).commands}
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


def run_program(code: str) -> str:
    """Run ``code`` in a fresh interpreter (``nebctl`` as a program, not in-process) and return its stdout."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    return result.stdout.strip()


def test_help_imports_no_heavy_library() -> None:
    found = run_program(
        "import sys\n"
        "from nebctl.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'pydantic', 'sqlalchemy', 'networkx', 'rich', 'ruamel', 'yaml', 'alembic', 'libvirt'}\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & heavy))\n"
    )
    assert found.splitlines()[-1] == "[]"


def test_the_collector_is_tuned_only_for_a_program() -> None:
    """As a program, the collector is paused while the command's modules load, then they are frozen and it runs
    again; in-process (tests, CliRunner), it is left alone."""
    frozen = gc.get_freeze_count()
    result = CliRunner().invoke(main, ["validate", "-f", str(REPO_ROOT / "manifests" / "examples")])
    assert result.exit_code == 0, result.output
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    found = run_program(
        "import gc\n"
        "from nebctl.cli import main\n"
        "try:\n"
        "    main(['validate', '-f', 'manifests/examples'])\n"
        "except SystemExit as exit:\n"
        "    print(exit.code, gc.isenabled(), gc.get_freeze_count() > 1000)\n"
    )
    assert found.splitlines()[-1] == "0 True True"


def test_validate_diff_and_apply_import_no_networkx(tmp_path: Path) -> None:
    """networkx (about 0.08 s to import) is for --target/--exclude, --graph and reporting cycles only."""
    (tmp_path / "config.yaml").write_text(f"state_dir: {tmp_path}\n")
    found = run_program(
        "import sys\n"
        "from nebctl.cli import main\n"
        f"base = ['--db', 'sqlite:///{tmp_path / 'nebctl.db'}', '--config', '{tmp_path / 'config.yaml'}']\n"
        "codes = []\n"
        "for command in (['validate'], ['diff'], ['apply', '--yes']):\n"
        "    try:\n"
        "        main([*base, *command, '-f', 'manifests/examples'])\n"
        "    except SystemExit as exit:\n"
        "        codes.append(exit.code)\n"
        "print(codes, 'networkx' in sys.modules)\n"
    )
    assert found.splitlines()[-1] == "[0, 2, 0] False"


def test_diff_and_apply_as_a_program_pause_the_collector_and_give_the_same_results(tmp_path: Path) -> None:
    """As a program, ``diff`` and ``apply`` make their manifests, records, live view and plan with the collector
    paused, then freeze them (``AppContext.long_lived``): the collector runs again afterwards, more objects are
    frozen than the modules alone, and the exit codes and the diffs' output are those of the same commands run
    in-process, where nothing is paused."""
    (tmp_path / "config.yaml").write_text(f"state_dir: {tmp_path / 'program'}\n")
    found = run_program(  # a program's stdout is the file the commands write to: each is caught on its own
        "import contextlib, gc, io, json\n"
        "from nebctl.cli import main\n"
        f"base = ['--db', 'sqlite:///{tmp_path / 'program.db'}', '--config', '{tmp_path / 'config.yaml'}']\n"
        "runs = []\n"
        "stack = ['--stack', 'examples']\n"
        "for command in (['validate'], ['diff', *stack], ['apply', '--yes', *stack], ['diff', *stack]):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main([*base, *command, '-f', 'manifests/examples'])\n"
        "        except SystemExit as exit:\n"
        "            runs.append([exit.code, out.getvalue(), gc.isenabled(), gc.get_freeze_count()])\n"
        "print(json.dumps(runs))\n"
    )
    runs = json.loads(found.splitlines()[-1])
    assert [run[0] for run in runs] == [0, 2, 0, 0]
    assert all(run[2] for run in runs)  # the collector runs again after every command
    assert runs[1][3] > runs[0][3]  # the diff's objects were frozen beside the modules
    (tmp_path / "inproc.yaml").write_text(f"state_dir: {tmp_path / 'inproc'}\n")
    base = ["--db", f"sqlite:///{tmp_path / 'inproc.db'}", "--config", str(tmp_path / "inproc.yaml")]
    frozen = gc.get_freeze_count()
    for run, command in zip(runs[1:], (["diff"], ["apply", "--yes"], ["diff"]), strict=True):
        result = CliRunner().invoke(main, [*base, *command, "-f", "manifests/examples", "--stack", "examples"])
        assert result.exit_code == run[0], result.output
        if command == ["diff"]:  # an apply's report says how long its actions took
            assert result.stdout == run[1]
    assert gc.isenabled() and gc.get_freeze_count() == frozen  # in-process: left alone
