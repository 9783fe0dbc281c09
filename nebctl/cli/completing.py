"""Shell completion: ``nebctl completion bash|zsh|fish`` prints the script, and the completers of arguments.

The scripts are click's: the shell calls ``nebctl`` back with ``_NEBCTL_COMPLETE`` set, and click answers with
the commands and options of the command line so far. Arguments that name resources complete from the database
(``get vm <TAB>``, ``describe vm/<TAB>``, ``--target``): the completers here open it read-only, only when it
exists (completion never creates a database) and stay silent on any error, since a completion that prints a
traceback breaks the user's shell line. Kinds complete from their short names.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import click
from click.shell_completion import CompletionItem, get_completion_class

from nebctl.core.keys import SHORT_NAMES, Kind, parse_kind

SHELLS = ("bash", "zsh", "fish")
PROGRAM = "nebctl"
COMPLETE_VAR = "_NEBCTL_COMPLETE"


def _db_url(ctx: click.Context) -> str:
    from nebctl.cli.app import default_db_url

    url = ctx.find_root().params.get("db_url")
    return str(url or os.environ.get("NEBCTL_DB") or default_db_url())


def _resources(ctx: click.Context, kind: Kind | None = None) -> list[tuple[Kind, str, str]]:
    """(kind, namespace, name) of the recorded resources; none when the database is absent or unreadable."""
    url = _db_url(ctx)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return []
    try:
        from nebctl.database import Store

        with Store.open(url) as store:
            return [(r.kind, r.namespace, r.name) for r in store.list_resources(kind=kind)]
    except Exception:  # completion stays silent (see the module docstring)
        return []


def _matching(candidates: Iterable[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(value) for value in sorted(set(candidates)) if value.startswith(incomplete)]


def complete_kind(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _matching(SHORT_NAMES.values(), incomplete.lower())


def complete_name(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The names of the resources of the kind given before (``get vm <TAB>``)."""
    text = ctx.params.get("kind_text")
    try:
        kind = parse_kind(str(text)) if text else None
    except ValueError:
        return []
    return _matching((name for _kind, _namespace, name in _resources(ctx, kind)), incomplete)


def _reference(kind: Kind, namespace: str, name: str) -> str:
    prefix = "" if namespace == "default" or kind.cluster_scoped else f"{namespace}/"
    return f"{prefix}{kind.short}/{name}"


def complete_reference(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """``KIND/NAME`` of the recorded resources; before any is recorded, the kinds followed by ``/``."""
    references = [_reference(*resource) for resource in _resources(ctx)]
    found = _matching(references, incomplete)
    if found or "/" in incomplete:
        return found
    return _matching((f"{short}/" for short in SHORT_NAMES.values()), incomplete.lower())


def completion_script(shell: str) -> str:
    from nebctl.cli import main

    completer = get_completion_class(shell)
    assert completer is not None, shell
    return completer(main, {}, PROGRAM, COMPLETE_VAR).source()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion_command(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    \b
    bash:  eval "$(nebctl completion bash)"        (in ~/.bashrc)
    zsh:   eval "$(nebctl completion zsh)"         (in ~/.zshrc)
    fish:  nebctl completion fish > ~/.config/fish/completions/nebctl.fish
    """
    click.echo(completion_script(shell), nl=False)


commands: list[click.Command] = [completion_command]
